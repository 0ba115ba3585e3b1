"""What an agent formats in Slack arrives formatted where the messenger can show it, and as
clean words where it cannot."""

from __future__ import annotations

import pytest

from tests.fakes.messenger import FakeMessenger
from tests.fakes.twilio import FakeTwilio
from tests.harness import eventually
from tests.world import start_world, stop_world

WRITTEN = "*Your order* has _shipped_: `AB-12`"
SHOWN = "Your order has shipped: AB-12"
PSID = "6712345678901234"
SMS_CUSTOMER = "+14155550123"


async def test_telegram_shows_the_agents_bold_italic_and_code(world):
    await world.says(111, "Where is my order?")
    root = await world.thread_of(111)
    await world.slack.agent_says(root.channel, root.ts, WRITTEN)
    [sent] = await eventually(lambda: world.tg.messages_to(111), message="a Telegram message")
    assert sent.parse_mode == "HTML"
    assert sent.text == SHOWN
    assert [(e["type"], e["offset"], e["length"]) for e in sent.entities] == [
        ("bold", 0, 10),
        ("italic", 15, 7),
        ("code", 24, 5),
    ]


async def test_an_agents_lone_asterisks_and_angle_brackets_reach_telegram_as_typed(world):
    await world.says(111, "How much for two?")
    root = await world.thread_of(111)
    typed = "2 * 5 € = 10 €, that is <cheap> & fair; see snake_case_ref"
    await world.slack.agent_says(root.channel, root.ts, typed)
    [sent] = await eventually(lambda: world.tg.messages_to(111), message="a Telegram message")
    assert sent.text == typed and sent.entities == []


@pytest.fixture
async def messenger_world(tmp_path):
    fb = FakeMessenger()
    fb.profiles[PSID] = ("Mia", "Wong")
    w = await start_world(tmp_path, messenger=fb)
    yield w
    await stop_world(w)


async def test_messenger_gets_the_words_without_the_markers(messenger_world):
    world = messenger_world
    await world.fb.customer_says(PSID, "Where is my order?")
    root = await world.thread_of(PSID)
    await world.slack.agent_says(root.channel, root.ts, WRITTEN)
    [sent] = await eventually(lambda: world.fb.messages_to(PSID), message="the send")
    assert sent["message"]["text"] == SHOWN


@pytest.fixture
async def sms_world(tmp_path):
    w = await start_world(tmp_path, sms=FakeTwilio())
    yield w
    await stop_world(w)


async def test_an_sms_gets_the_words_without_the_markers(sms_world):
    world = sms_world
    assert await world.sms.customer_texts(SMS_CUSTOMER, "Where is my order?") == 200
    root = await world.thread_of(SMS_CUSTOMER)
    await world.slack.agent_says(root.channel, root.ts, WRITTEN)
    [sent] = await eventually(lambda: world.sms.messages_to(SMS_CUSTOMER), message="the SMS")
    assert sent["Body"] == SHOWN
