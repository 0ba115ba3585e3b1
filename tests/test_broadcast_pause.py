"""Pausing a broadcast holds what is not sent without counting attempts or backing off, so a
resume carries on at once; after a restart, a send whose answer never came is not repeated,
while one the platform refused (429) is sent as usual."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.broadcast_kit import new, newsletters, subscribers
from tests.commands_kit import MANAGER, command
from tests.harness import eventually, start_bridge
from tests.world import start_world, stop_world


@pytest.fixture
async def rig(tmp_path):
    world = await start_world(tmp_path)
    assert (await command(world, f"user role {MANAGER} manager")).ok
    assert (await command(world, "channel create news --join JOIN-NEWS --leave LEAVE-NEWS")).ok
    yield world
    await stop_world(world)


def sent(world, chats) -> int:
    return sum(len(newsletters(world, c)) for c in chats)


async def restart(world) -> None:
    settings, url = world.bridge.settings, world.bridge.url
    await world.bridge.stop()
    world.bridge = await start_bridge(settings, port=int(url.rsplit(":", 1)[1]))


async def test_pause_holds_the_rest_and_resume_carries_on_at_once(rig):
    world = rig
    chats = await subscribers(world, 16)
    world.tg.set_rate_limits(None, 4)  # about 4 messages a second
    number = await new(world, 'news "Sale, paused"')
    assert (await command(world, f"broadcast confirm {number}", user=MANAGER)).ok
    await eventually(lambda: sent(world, chats) >= 3, timeout=20, message="a few sent")
    paused = await command(world, f"broadcast pause {number}", user=MANAGER)
    assert paused.ok and "paused" in paused.title
    await asyncio.sleep(1.5)  # what was under way at the pause arrives
    held_at = sent(world, chats)
    await asyncio.sleep(4.0)
    assert sent(world, chats) == held_at < len(chats)
    # Held rows wait without a counted attempt or a growing backoff.
    rows = await world.sql(
        "select attempts, last_error from outbox where kind = 'broadcast.send' and state = 'pending'"
    )
    assert rows and all(attempts == 0 for attempts, _ in rows)
    status = await command(world, f"broadcast status {number}")
    assert "paused" in status.title

    resumed_at = time.monotonic()
    assert (await command(world, f"broadcast resume {number}", user=MANAGER)).ok
    await eventually(lambda: sent(world, chats) > held_at, timeout=10, message="the next one")
    assert time.monotonic() - resumed_at < 3.0  # no retry backoff to sit out
    await eventually(lambda: sent(world, chats) == len(chats), timeout=30, message="the rest")
    assert all(len(newsletters(world, c)) == 1 for c in chats)


async def test_a_send_without_an_answer_before_a_restart_is_not_repeated(rig):
    world = rig
    chats = await subscribers(world, 3)
    # Telegram fails the sends with 500: did the message go out? The bridge cannot know.
    world.tg.fail_next("sendMessage", 500, "Internal Server Error", times=3)
    number = await new(world, 'news "Sale, once"')
    assert (await command(world, f"broadcast confirm {number}", user=MANAGER)).ok
    await eventually(
        lambda: world.sql(
            "select count(*) from outbox where kind = 'broadcast.send' and attempts = 1"
            " having count(*) = 3"
        ),
        message="three attempts without an answer",
    )
    await restart(world)

    def summary():
        posted = [m for m in world.slack.roots("C0001") if f"Broadcast #{number}" in m.text]
        return posted and "is done" in posted[-1].text and posted[-1]

    done = await eventually(summary, timeout=20, message="the summary")
    assert "3 were being sent when the bridge stopped: not sent again" in done.text
    assert sent(world, chats) == 0
    states = await world.sql(f"select state from broadcast_sends where broadcast_id = {number}")
    assert sorted(s for (s,) in states) == ["interrupted"] * 3


async def test_a_send_refused_with_429_before_a_restart_is_sent_after_it(rig):
    world = rig
    chats = await subscribers(world, 3)
    world.tg.storm(6.0)  # every send answers 429: nothing went out
    joins = world.tg.count("sendMessage")
    number = await new(world, 'news "Sale, later"')
    assert (await command(world, f"broadcast confirm {number}", user=MANAGER)).ok
    # All three refused once and waiting out the 429 (none in flight at the restart, which
    # would make it a send without an answer).
    await eventually(lambda: world.tg.count("sendMessage") >= joins + 3, message="refused sends")
    await eventually(
        lambda: world.sql(
            "select count(*) from outbox where kind = 'broadcast.send' and state = 'pending'"
            " and attempts = 0 having count(*) = 3"
        ),
        message="the refused sends' attempts taken back",
    )
    await restart(world)
    await eventually(lambda: sent(world, chats) == 3, timeout=30, message="all three")
    assert all(len(newsletters(world, c)) == 1 for c in chats)
    states = await world.sql(f"select state from broadcast_sends where broadcast_id = {number}")
    assert sorted(s for (s,) in states) == ["sent"] * 3


async def test_rows_first_reached_while_paused_are_sent_after_the_resume(tmp_path):
    # The bridge paces Telegram at 2 a second, so most rows first come up while the broadcast
    # is paused: being held is not an attempt, and a resume must send them, not skip them as
    # "interrupted".
    world = await start_world(tmp_path, sections={"telegram": {"rate_global": 2}})
    try:
        assert (await command(world, f"user role {MANAGER} manager")).ok
        assert (await command(world, "channel create news --join JOIN-NEWS")).ok
        chats = await subscribers(world, 8)
        number = await new(world, 'news "Sale, held early"')
        assert (await command(world, f"broadcast confirm {number}", user=MANAGER)).ok
        await eventually(lambda: sent(world, chats) >= 1, timeout=20, message="the first one")
        assert (await command(world, f"broadcast pause {number}", user=MANAGER)).ok
        await asyncio.sleep(3.0)  # the rest come up one by one and are held
        assert sent(world, chats) < len(chats)
        assert (await command(world, f"broadcast resume {number}", user=MANAGER)).ok
        await eventually(lambda: sent(world, chats) == len(chats), timeout=30, message="all")
        states = await world.sql(f"select state from broadcast_sends where broadcast_id = {number}")
        assert sorted(s for (s,) in states) == ["sent"] * len(chats)
    finally:
        await stop_world(world)
