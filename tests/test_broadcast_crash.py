"""kill -9 in the middle of a 5,000-recipient broadcast: after a restart the broadcast finishes,
nobody has the newsletter twice, everyone has it once except the few whose send was under way
at the kill (no messenger lets the bridge ask whether such a message arrived), and those are
counted in the summary instead of being sent again."""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter
from pathlib import Path

import pytest

from bench.broadcast import prepare
from tests.fakes.slack import FakeSlack
from tests.fakes.telegram import FakeTelegram
from tests.harness import eventually
from tests.process_kit import Bridge, children
from tests.world import CHANNEL, free_port

pytestmark = pytest.mark.slow

RECIPIENTS = 5000
RATE = 400  # the fake's and the bridge's sends a second: the broadcast takes some 12 s
ADMIN = "UADMIN"
CHAT_BASE = 700_000


def config(tmp_path: Path, tg: FakeTelegram, slack: FakeSlack, port: int, dispatch: str) -> Path:
    path = tmp_path / "bridge.toml"
    path.write_text(
        f"""
[bridge]
database = "sqlite+aiosqlite:///{tmp_path / "bridge.db"}"
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"
log_level = "WARNING"
dispatch = "{dispatch}"
admins = ["{ADMIN}"]

[telegram]
token = "{tg.token}"
api_base = "{tg.base_url}"
mode = "webhook"
webhook_secret = "crash-secret-0123456789"
rate_global = {RATE}

[slack]
bot_token = "{slack.bot_token}"
signing_secret = "{slack.signing_secret}"
channel = "{CHANNEL}"
api_base = "{slack.base_url}"
"""
    )
    return path


def query(db_path: Path, sql: str) -> list[tuple]:
    conn = sqlite3.connect(db_path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


@pytest.mark.parametrize("dispatch", ["inline", "process"])
async def test_kill_minus_nine_mid_broadcast_sends_nobody_the_newsletter_twice(
    tmp_path, capsys, dispatch
):
    tg, slack = FakeTelegram(), FakeSlack()
    tg.set_rate_limits(per_chat=None, global_=RATE)
    await tg.start()
    await slack.start()
    port = free_port()
    slack.events_url = f"http://127.0.0.1:{port}/slack/events"
    db_path = tmp_path / "bridge.db"
    await prepare(db_path, RECIPIENTS, account=tg.token.partition(":")[0], chat_base=CHAT_BASE)
    bridge = Bridge(config(tmp_path, tg, slack, port, dispatch), port, tmp_path / "bridge.log")
    await bridge.start()
    try:

        def newsletters() -> Counter[str]:
            return Counter(
                m.chat_id for m in tg.sent if m.text and m.text.startswith("Weekly news for ")
            )

        status, _ = await slack.slash_command(
            "/broadcast", 'new news "Weekly news for {FIRSTNAME}"', user_id=ADMIN
        )
        assert status == 200
        [(number,)] = await eventually(
            lambda: query(db_path, "select id from broadcasts"), message="the draft"
        )
        status, _ = await slack.slash_command("/broadcast", f"confirm {number}", user_id=ADMIN)
        assert status == 200
        await eventually(
            lambda: sum(newsletters().values()) >= RECIPIENTS * 2 // 5,
            timeout=60,
            message="two fifths of the newsletters out",
        )
        spawned = children(bridge.proc.pid)
        bridge.kill()
        await bridge.wait()
        await eventually(lambda: not any(Path(f"/proc/{c}").exists() for c in spawned), timeout=5)
        at_kill = sum(newsletters().values())
        await asyncio.sleep(0.5)
        assert sum(newsletters().values()) == at_kill  # nothing sends while the bridge is down

        await bridge.start()
        await eventually(
            lambda: query(
                db_path, f"select 1 from broadcasts where id = {number} and state = 'done'"
            ),
            timeout=120,
            interval=0.5,
            message="the broadcast to finish after the restart",
        )
        received = newsletters()
        outcomes = dict(
            query(
                db_path,
                f"select contact_id, state from broadcast_sends where broadcast_id = {number}",
            )
        )
        interrupted = {CHAT_BASE + c for c, state in outcomes.items() if state == "interrupted"}
        with capsys.disabled():
            print(
                f"\nbroadcast crash test ({dispatch} dispatch): killed after {at_kill} of"
                f" {RECIPIENTS} sent; after the restart {sum(received.values())} newsletters to"
                f" {len(received)} chats; interrupted (not sent again): {len(interrupted)}"
            )

        assert max(received.values()) == 1, "somebody has the newsletter twice"
        assert len(outcomes) == RECIPIENTS
        assert Counter(outcomes.values()) == Counter(
            sent=RECIPIENTS - len(interrupted), interrupted=len(interrupted)
        )
        missing = {CHAT_BASE + n for n in range(1, RECIPIENTS + 1)} - {int(c) for c in received}
        # Whoever did not get it is one of those counted as interrupted, and only the sends
        # under way at the kill can be: at most the dispatcher's sends in flight.
        assert missing <= interrupted
        assert len(interrupted) <= 300
        # The manager reads it in the summary.
        summary = await eventually(
            lambda: next(
                (m for m in slack.roots(CHANNEL) if f"Broadcast #{number} is done" in m.text),
                None,
            ),
            message="the summary in Slack",
        )
        if interrupted:
            assert f"{len(interrupted)} were being sent when the bridge stopped" in summary.text
    except BaseException:
        with capsys.disabled():
            print(f"\nbridge log:\n{bridge.log.read_text(errors='replace')[-4000:]}")
        raise
    finally:
        await bridge.terminate()
        await slack.stop()
        await tg.stop()
