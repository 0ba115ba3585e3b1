"""Slack answers 429 to everything for 30 seconds; afterwards every message arrives, once."""

from __future__ import annotations

import asyncio

import pytest

from tests.harness import eventually

pytestmark = pytest.mark.slow


async def test_thirty_second_429_storm_loses_nothing(world):
    await world.says(111, "before the storm")
    root = await world.thread_of(111)
    await eventually(lambda: world.texts(root) == ["before the storm"])
    world.slack.storm(30)
    for n in range(20):
        await world.says(111, f"during {n}")
    for chat in (222, 333):
        await world.says(chat, f"new customer {chat} during the storm")
    ts = await world.slack.agent_says(root.channel, root.ts, "reply during the storm")
    await asyncio.sleep(30)
    assert world.slack.rate_limited_count > 0

    def lines():
        return "\n".join(world.texts(root)).split("\n")

    await eventually(lambda: len([x for x in lines() if x.startswith("during")]) == 20, timeout=60)
    assert [x for x in lines() if x.startswith("during")] == [f"during {n}" for n in range(20)]
    for chat in (222, 333):
        other = await world.thread_of(chat, timeout=30)
        await eventually(lambda other=other: world.texts(other), timeout=30)
        assert world.texts(other) == [f"new customer {chat} during the storm"]
    assert [m.text for m in world.tg.messages_to(111)] == ["reply during the storm"]
    await eventually(lambda: world.slack.find(root.channel, ts).reactions, timeout=30)
