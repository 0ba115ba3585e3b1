"""A Telegram update delivered twice, or a Slack event retried, produces one message."""

from __future__ import annotations

import asyncio

from tests.harness import eventually


async def test_telegram_update_delivered_twice_is_mirrored_once(world):
    update = world.tg.text_update(111, "only once please")
    await world.customer(update)
    await world.customer(update)
    root = await world.thread_of(111)
    await eventually(lambda: world.texts(root))
    await asyncio.sleep(0.5)
    assert world.texts(root) == ["only once please"]
    assert await world.sql("select count(*) from messages") == [(1,)]


async def test_slack_event_retry_sends_one_message_to_the_customer(world):
    await world.says(111, "hi")
    root = await world.thread_of(111)
    ts = await world.slack.agent_says(root.channel, root.ts, "one reply")
    message = world.slack.find(root.channel, ts)
    event = world.slack.event_callback(
        world.slack.message_dict(message) | {"channel": root.channel}
    )
    status, _ = await world.slack.deliver(event, retry_num=1, retry_reason="http_timeout")
    assert status == 200
    await eventually(lambda: world.tg.messages_to(111))
    await asyncio.sleep(0.5)
    assert [m.text for m in world.tg.messages_to(111)] == ["one reply"]


async def test_bridge_ignores_its_own_messages_echoed_by_slack(world):
    world.slack.echo_bot_messages = True
    await world.says(111, "echo test")
    root = await world.thread_of(111)
    await eventually(lambda: world.texts(root))
    await asyncio.sleep(0.5)
    assert world.tg.messages_to(111) == []
    assert await world.sql("select direction from messages") == [("in",)]
