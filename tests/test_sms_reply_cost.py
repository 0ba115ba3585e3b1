"""An agent's reply to an SMS customer: what it cost shows in the thread, look-alikes go GSM-7."""

from __future__ import annotations

import pytest

from tests.fakes.twilio import FakeTwilio
from tests.harness import eventually
from tests.world import start_world, stop_world

CUSTOMER = "+14155550123"


async def _thread(world):
    assert await world.sms.customer_texts(CUSTOMER, "Is my order on its way?") == 200
    root = await world.thread_of(CUSTOMER)
    await eventually(lambda: world.texts(root), message="the mirror")
    return root


async def _reply(world, root, text):
    """The agent answers in the thread; the SMS Twilio accepted, once the agent sees it sent."""
    before = len(world.sms.messages_to(CUSTOMER))
    ts = await world.slack.agent_says(root.channel, root.ts, text)
    sent = await eventually(lambda: world.sms.messages_to(CUSTOMER)[before:], message="the SMS")
    agent_msg = world.slack.find(root.channel, ts)
    await eventually(lambda: "white_check_mark" in agent_msg.reactions, message="the sent mark")
    return sent[0]


def _notes(world, root):
    return [t for t in world.texts(root) if "SMS segment" in t]


@pytest.fixture
async def world(tmp_path):
    w = await start_world(tmp_path, sms=FakeTwilio())
    yield w
    await stop_world(w)


@pytest.fixture
async def lookalike_world(tmp_path):
    w = await start_world(tmp_path, sms=FakeTwilio(), sections={"sms": {"gsm_lookalikes": True}})
    yield w
    await stop_world(w)


async def test_with_gsm_lookalikes_a_curly_quote_reaches_the_customer_straight(lookalike_world):
    world = lookalike_world
    root = await _thread(world)
    sent = await _reply(world, root, "It’s on its way — “tomorrow”…")
    assert sent["Body"] == 'It\'s on its way - "tomorrow"...'
    # One plain GSM-7 segment: nothing to tell the agent. A later reply's mark comes after
    # anything the bridge had to say about the first in the thread.
    await _reply(world, root, "Thanks")
    assert _notes(world, root) == []


async def test_without_the_setting_the_reply_goes_as_written_and_its_cost_is_shown(world):
    root = await _thread(world)
    sent = await _reply(world, root, "It’s on its way")
    assert sent["Body"] == "It’s on its way"
    [note] = await world.notices(root, "SMS segment", message="the cost note")
    assert "Sent as 1 SMS segment in UCS-2" in note and "’" in note


async def test_a_long_ucs2_reply_shows_its_segment_count(world):
    root = await _thread(world)
    # 125 characters: one GSM-7 segment, but the apostrophe makes it two in UCS-2.
    text = ("Your parcel left our warehouse today and it’s due on Thursday. " * 2).strip()
    sent = await _reply(world, root, text)
    assert sent["Body"] == text
    [note] = await world.notices(root, "SMS segment", message="the cost note")
    assert "Sent as 2 SMS segments in UCS-2 (67 characters each" in note and "’" in note


async def test_a_short_plain_reply_adds_nothing_to_the_thread(world):
    root = await _thread(world)
    await _reply(world, root, "Yes, tomorrow before noon.")
    await _reply(world, root, "Anything else?")
    assert _notes(world, root) == []
