"""Three bridge processes on one PostgreSQL database share the work: Telegram webhooks hit any
of them, and one is killed (kill -9) in the middle of a flood and a broadcast. Afterwards every
customer message is in its Slack thread exactly once and in order, and every subscriber has
the newsletter once (but for sends cut off by the kill, which are counted, never repeated)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import text

from storage.db import Database
from storage.tables import channels, contacts, members
from tests.fakes.slack import FakeSlack
from tests.fakes.telegram import FakeTelegram
from tests.harness import eventually
from tests.process_kit import Bridge
from tests.world import CHANNEL, free_port

pytestmark = pytest.mark.slow

PROCESSES = 3
CHATS = 30
PER_CHAT = 20
RECIPIENTS = 600
SUBSCRIBER_BASE = 800_000
ADMIN = "UADMIN"
SECRET = "scale-secret-0123456789"
_names = itertools.count()


def config(tmp_path: Path, i: int, url: str, tg: FakeTelegram, slack: FakeSlack, port: int):
    path = tmp_path / f"bridge{i}.toml"
    path.write_text(
        f"""
[bridge]
database = "{url}"
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"
log_level = "WARNING"
admins = ["{ADMIN}"]

[telegram]
token = "{tg.token}"
api_base = "{tg.base_url}"
mode = "webhook"
webhook_secret = "{SECRET}"
rate_per_chat = 50
rate_global = 300

[slack]
bot_token = "{slack.bot_token}"
signing_secret = "{slack.signing_secret}"
channel = "{CHANNEL}"
api_base = "{slack.base_url}"
rate_per_channel = 40
burst_per_channel = 40
rate_updates = 50
rate_reactions = 50
"""
    )
    return path


async def subscribers(url: str, account: str) -> None:
    """RECIPIENTS Telegram contacts in the channel `news` (besides the flood's customers)."""
    db = Database(url)
    now = datetime.now(UTC)

    def seed(conn) -> None:
        ids = conn.execute(
            contacts.insert().returning(contacts.c.id),
            [
                {
                    "platform": "telegram",
                    "account": account,
                    "chat_id": str(SUBSCRIBER_BASE + n),
                    "display_name": f"Reader{n}",
                    "first_seen": now,
                    "last_seen": now,
                    "message_count": 1,
                    "opt_in_source": "test",
                    "opt_in_at": now,
                }
                for n in range(RECIPIENTS)
            ],
        ).scalars()
        channel = conn.execute(
            channels.insert().values(name="news", created_by=ADMIN, created_at=now)
        ).inserted_primary_key[0]
        conn.execute(
            members.insert(),
            [
                {"channel_id": channel, "contact_id": i, "joined_at": now, "source": "test"}
                for i in ids
            ],
        )

    try:
        await db.run_write(seed)
    finally:
        await db.close()


async def query(url: str, sql: str) -> list[tuple]:
    db = Database(url)
    try:
        async with db.read() as conn:
            return [tuple(r) for r in await conn.execute(text(sql))]
    finally:
        await db.close()


def posted_texts(slack: FakeSlack, root_ts: str) -> list[str]:
    lines: list[str] = []
    for m in slack.replies(CHANNEL, root_ts):
        if m.username:  # customer mirrors carry the customer's name; notices do not
            lines.extend(m.text.split("\n"))
    return lines


async def test_three_processes_share_the_work_and_survive_a_kill(tmp_path, pg_cluster, capsys):
    url = str(pg_cluster.create_database(f"scale{next(_names)}"))
    tg, slack = FakeTelegram(), FakeSlack()
    await tg.start()
    await slack.start()
    slack.set_rate_limit("chat.postMessage", per_channel=40, burst=40)
    ports = [free_port() for _ in range(PROCESSES)]
    bridges = [
        Bridge(config(tmp_path, i, url, tg, slack, ports[i]), ports[i], tmp_path / f"b{i}.log")
        for i in range(PROCESSES)
    ]
    slack.events_url = f"http://127.0.0.1:{ports[0]}/slack/events"
    senders: list[asyncio.Task[None]] = []
    try:
        await bridges[0].start()  # the first one migrates the database
        await asyncio.gather(*(b.start() for b in bridges[1:]))
        await subscribers(url, tg.token.partition(":")[0])
        alive = set(range(PROCESSES))
        acked = 0

        async def customer(chat: int) -> None:
            nonlocal acked
            for n in range(PER_CHAT):
                update = tg.text_update(1000 + chat, f"c{chat}-m{n}", first_name=f"Chat{chat}")
                target = (chat + n) % PROCESSES
                while True:  # like Telegram: retry until a webhook answers 200
                    if target in alive:
                        status = 0
                        with contextlib.suppress(aiohttp.ClientError, OSError):
                            status = await tg.deliver(
                                update,
                                secret=SECRET,
                                url=f"http://127.0.0.1:{ports[target]}/webhooks/telegram",
                            )
                        if status == 200:
                            acked += 1
                            await asyncio.sleep(0.05)
                            break
                    target = (target + 1) % PROCESSES
                    await asyncio.sleep(0.05)

        senders.extend(asyncio.create_task(customer(c)) for c in range(CHATS))
        await eventually(lambda: acked >= CHATS * PER_CHAT // 4, timeout=60, message="a quarter")

        status, _ = await slack.slash_command(
            "/broadcast", 'new news "Scale news for {FIRSTNAME}"', user_id=ADMIN
        )
        assert status == 200
        [(number,)] = await eventually(
            lambda: query(url, "select id from broadcasts"), message="the draft"
        )
        status, _ = await slack.slash_command("/broadcast", f"confirm {number}", user_id=ADMIN)
        assert status == 200

        def newsletters() -> Counter[str]:
            return Counter(
                m.chat_id for m in tg.sent if m.text and m.text.startswith("Scale news for ")
            )

        await eventually(
            lambda: acked >= CHATS * PER_CHAT // 2 and sum(newsletters().values()) >= 50,
            timeout=60,
            message="half the flood and part of the broadcast",
        )
        alive.discard(1)
        bridges[1].kill()
        await bridges[1].wait()
        killed_at = acked

        await asyncio.wait_for(asyncio.gather(*senders), 120)

        def all_mirrored() -> bool:
            for c in range(CHATS):
                roots = [m for m in slack.roots(CHANNEL) if f"`{1000 + c}`" in str(m.blocks)]
                if len(roots) != 1 or len(posted_texts(slack, roots[0].ts)) < PER_CHAT:
                    return False
            return True

        # The killed process's rows wait for its leases to lapse (15 s), then go out.
        await eventually(all_mirrored, timeout=120, interval=0.5, message="every message in Slack")
        await eventually(
            lambda: query(url, f"select 1 from broadcasts where id = {number} and state = 'done'"),
            timeout=120,
            interval=0.5,
            message="the broadcast to finish",
        )
        duplicates = 0
        for c in range(CHATS):
            [root] = [m for m in slack.roots(CHANNEL) if f"`{1000 + c}`" in str(m.blocks)]
            texts = posted_texts(slack, root.ts)
            duplicates += len(texts) - len(set(texts))
            assert texts == [f"c{c}-m{n}" for n in range(PER_CHAT)], f"chat {c}: {texts}"
        received = newsletters()
        outcomes = dict(
            await query(
                url, f"select contact_id, state from broadcast_sends where broadcast_id = {number}"
            )
        )
        states = Counter(outcomes.values())
        interrupted = states.get("interrupted", 0)
        per_process = await query(
            url, "select owner, count(*) from outbox where state = 'done' group by owner"
        )
        with capsys.disabled():
            print(
                f"\nscale-out test: {PROCESSES} processes, killed one after {killed_at} of"
                f" {CHATS * PER_CHAT} acknowledged; newsletters {sum(received.values())} to"
                f" {len(received)} of {RECIPIENTS}, interrupted {interrupted}; rows done per"
                f" process: {sorted(n for _, n in per_process)}"
            )
        assert duplicates == 0
        assert max(received.values()) == 1
        assert len(outcomes) == RECIPIENTS
        assert states["sent"] + interrupted == RECIPIENTS
        assert RECIPIENTS - len(received) <= interrupted <= 100
        # The work was shared: more than one process carried rows out.
        assert len([n for _, n in per_process if n > 20]) >= 2
    except BaseException:
        for task in senders:
            task.cancel()
        with capsys.disabled():
            for i, b in enumerate(bridges):
                print(f"\nbridge {i} log:\n{b.log.read_text(errors='replace')[-3000:]}")
        raise
    finally:
        for b in bridges:
            await b.terminate()
        await slack.stop()
        await tg.stop()
