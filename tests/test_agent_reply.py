"""What an agent writes in a thread reaches the customer, and the thread shows what happened."""

from __future__ import annotations

import pytest

from tests.conftest import ALL_MODES
from tests.harness import eventually

pytestmark = pytest.mark.parametrize("world", ALL_MODES, indirect=True, ids=lambda p: "+".join(p))


async def test_agent_reply_reaches_the_customer_and_is_marked_sent(world):
    await world.says(111, "Where is my parcel?")
    root = await world.thread_of(111)
    ts = await world.slack.agent_says(root.channel, root.ts, "It ships today & arrives <soon>")
    await eventually(lambda: world.tg.messages_to(111), message="a Telegram message")
    assert [m.text for m in world.tg.messages_to(111)] == ["It ships today & arrives <soon>"]
    agent_msg = world.slack.find(root.channel, ts)
    await eventually(lambda: "white_check_mark" in agent_msg.reactions, message="the sent mark")
    assert await world.sql("select direction, status from messages where direction = 'out'") == [
        ("out", "sent")
    ]


async def test_internal_note_stays_in_slack(world):
    await world.says(111, "Hello")
    root = await world.thread_of(111)
    await world.slack.agent_says(root.channel, root.ts, "// customer sounds upset, be gentle")
    await world.slack.agent_says(root.channel, root.ts, "Sorry for the trouble!")
    await eventually(lambda: world.tg.messages_to(111), message="the reply")
    assert [m.text for m in world.tg.messages_to(111)] == ["Sorry for the trouble!"]
    assert await world.sql("select direction from messages order by id") == [
        ("in",),
        ("note",),
        ("out",),
    ]


async def test_reply_to_a_user_who_blocked_the_bot_says_why_in_the_thread(world):
    await world.says(111, "bye")
    root = await world.thread_of(111)
    world.tg.block(111)
    ts = await world.slack.agent_says(root.channel, root.ts, "Are you still there?")
    agent_msg = world.slack.find(root.channel, ts)
    await eventually(lambda: "x" in agent_msg.reactions, message="the failure mark")
    await eventually(
        lambda: any("not delivered: the user blocked the bot" in t for t in world.texts(root)),
        message="the failure explained",
    )
    assert await world.sql("select status, error_reason from messages where direction='out'") == [
        ("failed", "the user blocked the bot")
    ]
