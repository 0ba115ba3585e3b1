"""Two bridge processes on one PostgreSQL database send within one rate: while one sends a
broadcast as fast as the bot's limit allows, customers join another channel through the other,
which confirms each one. Telegram, enforcing the limit both processes are set to, never answers
429; every subscriber gets the newsletter once and every customer the confirmation."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

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

PROCESSES = 2
RATE = 20  # Telegram's limit for the bot, and each process's setting
SUBSCRIBERS = 300
JOINING = 40  # customers who join `deals` through the other process during the broadcast
JOINED = "You have joined deals. Send STOP to leave."
ADMIN = "UADMIN"
SECRET = "shared-rate-secret-0123456789"
_names = itertools.count()


async def subscribers(url: str, account: str) -> None:
    """SUBSCRIBERS Telegram contacts of the bot in the channel `news`; a channel `deals`."""
    db = Database(url)
    now = datetime.now(UTC)

    def seed(conn) -> None:
        ids = conn.execute(
            contacts.insert().returning(contacts.c.id),
            [
                {
                    "platform": "telegram",
                    "account": account,
                    "chat_id": str(500_000 + n),
                    "display_name": f"Reader{n}",
                    "first_seen": now,
                    "last_seen": now,
                    "message_count": 1,
                    "opt_in_source": "test",
                    "opt_in_at": now,
                }
                for n in range(SUBSCRIBERS)
            ],
        ).scalars()
        channel = conn.execute(
            channels.insert().values(name="news", created_by=ADMIN, created_at=now)
        ).inserted_primary_key[0]
        conn.execute(
            channels.insert().values(
                name="deals", join_keyword="DEALS", created_by=ADMIN, created_at=now
            )
        )
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
rate_global = {RATE}

[slack]
bot_token = "{slack.bot_token}"
signing_secret = "{slack.signing_secret}"
channel = "{CHANNEL}"
api_base = "{slack.base_url}"
"""
    )
    return path


async def start_broadcast(url: str, tg: FakeTelegram, slack: FakeSlack) -> int:
    """The newsletter to `news`, as an admin starts it in Slack; its number once it sends."""
    status, _ = await slack.slash_command(
        "/broadcast", 'new news "Shared news for {FIRSTNAME}"', user_id=ADMIN
    )
    assert status == 200
    [(number,)] = await eventually(
        lambda: query(url, "select id from broadcasts"), message="the draft"
    )
    status, _ = await slack.slash_command("/broadcast", f"confirm {number}", user_id=ADMIN)
    assert status == 200
    await eventually(
        lambda: any(m.text.startswith("Shared news for ") for m in tg.sent if m.text),
        message="the broadcast to start",
    )
    return int(number)


async def customers_join(tg: FakeTelegram, webhook: str) -> None:
    """JOINING customers send the join keyword of `deals`, one after another."""
    for k in range(JOINING):
        update = tg.text_update(900_000 + k, "DEALS", first_name=f"Joiner{k}")
        assert await tg.deliver(update, secret=SECRET, url=webhook) == 200
        await asyncio.sleep(0.1)


async def test_two_processes_send_a_broadcast_within_the_platforms_rate(
    tmp_path, pg_cluster, capsys
):
    url = str(pg_cluster.create_database(f"sharedrate{next(_names)}"))
    tg, slack = FakeTelegram(), FakeSlack()
    await tg.start()
    await slack.start()
    # Telegram's bucket for the bot: RATE sends a second, one second's worth at once.
    tg.set_rate_limits(None, RATE)
    ports = [free_port() for _ in range(PROCESSES)]
    bridges = [
        Bridge(config(tmp_path, i, url, tg, slack, ports[i]), ports[i], tmp_path / f"b{i}.log")
        for i in range(PROCESSES)
    ]
    slack.events_url = f"http://127.0.0.1:{ports[0]}/slack/events"
    try:
        await bridges[0].start()  # the first one migrates the database
        await asyncio.gather(*(b.start() for b in bridges[1:]))
        await subscribers(url, tg.token.partition(":")[0])
        number = await start_broadcast(url, tg, slack)
        # The customers write to the process that is not sending the broadcast.
        [(owner,)] = await query(
            url, "select distinct owner from outbox where bulk and state = 'pending' limit 1"
        )
        [other] = [i for i, b in enumerate(bridges) if f":{b.proc.pid}:" not in owner]
        await customers_join(tg, f"http://127.0.0.1:{ports[other]}/webhooks/telegram")
        await eventually(
            lambda: query(url, f"select 1 from broadcasts where id = {number} and state = 'done'"),
            timeout=120,
            interval=0.5,
            message="the broadcast to finish",
        )

        def confirmations() -> list[str]:
            return [m.chat_id for m in tg.sent if m.text == JOINED]

        await eventually(
            lambda: len(confirmations()) >= JOINING, timeout=60, message="every confirmation"
        )
        confirmed = confirmations()
        received = Counter(
            m.chat_id for m in tg.sent if m.text and m.text.startswith("Shared news for ")
        )
        per_process = await query(
            url,
            "select owner, count(*) from outbox where state = 'done'"
            " and kind in ('customer.send', 'broadcast.send') group by owner",
        )
        with capsys.disabled():
            print(
                f"\nshared rate: {PROCESSES} processes, {sum(received.values())} newsletters,"
                f" {len(confirmed)} confirmations, {tg.rate_limited_count} answered 429;"
                f" Telegram sends per process: {sorted(n for _, n in per_process)}"
            )
        assert tg.rate_limited_count == 0
        assert len(received) == SUBSCRIBERS and max(received.values()) == 1
        assert sorted(confirmed) == sorted(str(900_000 + k) for k in range(JOINING))
        # Both processes sent to Telegram.
        assert len([n for _, n in per_process if n >= JOINING // 2]) == PROCESSES
    except BaseException:
        with capsys.disabled():
            texts = Counter((m.text or "")[:14] for m in tg.sent)
            print(f"\nTelegram got {texts.most_common(4)}, answered 429 {tg.rate_limited_count}")
            for i, b in enumerate(bridges):
                print(f"\nbridge {i} log:\n{b.log.read_text(errors='replace')[-3000:]}")
        raise
    finally:
        for b in bridges:
            await b.terminate()
        await slack.stop()
        await tg.stop()
