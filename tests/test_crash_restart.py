"""kill -9 in the middle of a flood: after a restart every message is in Slack exactly once,
in per-chat order, and every agent reply the bridge acknowledged reaches Telegram."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from pathlib import Path

import aiohttp
import pytest

from tests.fakes.slack import FakeSlack
from tests.fakes.telegram import FakeTelegram
from tests.harness import eventually
from tests.process_kit import Bridge, children
from tests.world import CHANNEL, free_port

CHATS = 50
PER_CHAT = 40

pytestmark = pytest.mark.slow


def config(tmp_path: Path, tg: FakeTelegram, slack: FakeSlack, port: int, dispatch: str) -> Path:
    path = tmp_path / "bridge.toml"
    path.write_text(
        f"""
[bridge]
database = "sqlite+aiosqlite:///{tmp_path / 'bridge.db'}"
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"
card_refresh_s = 1.0
log_level = "WARNING"
dispatch = "{dispatch}"

[telegram]
token = "{tg.token}"
api_base = "{tg.base_url}"
mode = "webhook"
webhook_secret = "crash-secret-0123456789"
rate_per_chat = 50
rate_global = 500

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


def posted_texts(slack: FakeSlack, root_ts: str) -> list[str]:
    lines: list[str] = []
    for m in slack.replies(CHANNEL, root_ts):
        if m.username:  # customer mirrors carry the customer's name; notices do not
            lines.extend(m.text.split("\n"))
    return lines


@pytest.mark.parametrize("dispatch", ["inline", "process"])
async def test_kill_minus_nine_mid_flood_loses_and_duplicates_nothing(tmp_path, capsys, dispatch):
    tg, slack = FakeTelegram(), FakeSlack()
    await tg.start()
    await slack.start()
    slack.set_rate_limit("chat.postMessage", per_channel=40, burst=40)
    port = free_port()
    slack.events_url = f"http://127.0.0.1:{port}/slack/events"
    bridge = Bridge(config(tmp_path, tg, slack, port, dispatch), port, tmp_path / "bridge.log")
    await bridge.start()
    senders: list[asyncio.Task[None]] = []
    try:
        updates = {
            c: [
                tg.text_update(1000 + c, f"c{c}-m{n}", first_name=f"Chat{c}")
                for n in range(PER_CHAT)
            ]
            for c in range(CHATS)
        }
        acked = 0
        down = asyncio.Event()
        up = asyncio.Event()
        up.set()

        async def deliver_in_order(chat: int) -> None:
            nonlocal acked
            for update in updates[chat]:
                while True:  # like Telegram: retry until the webhook answers 200
                    await up.wait()
                    status = 0
                    with contextlib.suppress(aiohttp.ClientError, OSError):
                        status = await tg.deliver(update)
                    if status == 200:
                        acked += 1
                        # Like real customers, not all at once: the kill must land mid-flood.
                        await asyncio.sleep(0.1)
                        break
                    await asyncio.sleep(0.2)

        senders.extend(asyncio.create_task(deliver_in_order(c)) for c in range(CHATS))

        # Agents answer in the first ten threads while the flood runs.
        replies_acked: list[tuple[int, str]] = []
        for c in range(10):
            root = await eventually(
                lambda c=c: next(
                    (m for m in slack.roots(CHANNEL) if f"`{1000 + c}`" in str(m.blocks)), None
                ),
                timeout=30,
                message=f"thread of chat {c}",
            )
            text = f"reply to chat {c}"
            before = len(slack.deliveries)
            await slack.agent_says(CHANNEL, root.ts, text)
            if slack.deliveries[before:] and slack.deliveries[-1][2] == 200:
                replies_acked.append((1000 + c, text))

        await eventually(
            lambda: acked >= CHATS * PER_CHAT // 2, timeout=60, message="half the flood"
        )
        up.clear()
        spawned = children(bridge.proc.pid)
        bridge.kill()
        await bridge.wait()
        # The dispatcher process dies with the bridge: nothing from before the kill keeps sending.
        await eventually(lambda: not any(Path(f"/proc/{c}").exists() for c in spawned), timeout=5)
        killed_at = acked
        down.set()
        await bridge.start()
        up.set()
        # Bounded, so that a bridge that never comes back fails the test instead of hanging it.
        await asyncio.wait_for(asyncio.gather(*senders), 120)

        def all_mirrored() -> bool:
            roots = {
                c: [m for m in slack.roots(CHANNEL) if f"`{1000 + c}`" in str(m.blocks)]
                for c in range(CHATS)
            }
            return all(
                len(rs) == 1 and len(posted_texts(slack, rs[0].ts)) >= PER_CHAT
                for rs in roots.values()
            )

        started = time.monotonic()
        await eventually(all_mirrored, timeout=180, interval=0.5, message="every message in Slack")
        drained = time.monotonic() - started
        slack_duplicates = 0
        for c in range(CHATS):
            [root] = [m for m in slack.roots(CHANNEL) if f"`{1000 + c}`" in str(m.blocks)]
            texts = posted_texts(slack, root.ts)
            slack_duplicates += len(texts) - len(set(texts))
            assert sorted(set(texts), key=lambda t: int(t.split("-m")[1])) == [
                f"c{c}-m{n}" for n in range(PER_CHAT)
            ]
            assert texts == sorted(texts, key=lambda t: int(t.split("-m")[1])), f"order of chat {c}"

        for chat, text in replies_acked:
            await eventually(
                lambda chat=chat, text=text: any(m.text == text for m in tg.messages_to(chat)),
                timeout=30,
                message=f"agent reply to {chat}",
            )
        telegram_duplicates = sum(
            n - 1 for n in Counter((m.chat_id, m.text) for m in tg.sent if m.text).values() if n > 1
        )
        with capsys.disabled():
            print(
                f"\ncrash test ({dispatch} dispatch): killed after {killed_at} of {CHATS * PER_CHAT} acknowledged; "
                f"drained in {drained:.1f}s; duplicates in Slack: {slack_duplicates}, "
                f"on Telegram: {telegram_duplicates}; agent replies acknowledged before the kill: "
                f"{len(replies_acked)}; Slack posts: {slack.count('chat.postMessage')}; "
                f"429s: {slack.rate_limited_count}"
            )
        assert slack_duplicates == 0
    except BaseException:
        for task in senders:
            task.cancel()
        with capsys.disabled():
            print(f"\nbridge log:\n{bridge.log.read_text(errors='replace')[-4000:]}")
        raise
    finally:
        await bridge.terminate()
        await slack.stop()
        await tg.stop()
