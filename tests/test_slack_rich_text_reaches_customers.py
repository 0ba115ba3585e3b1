"""What an agent writes in Slack reaches the customer as the message's rich_text block tells it:
each emoji's code points, a custom emoji by its name, a link's label and URL, a list; a channel
mentioned without its name by the name Slack tells for it."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fakes.messenger import FakeMessenger
from tests.fakes.twilio import FakeTwilio
from tests.fakes.whatsapp import FakeWhatsApp
from tests.harness import eventually
from tests.world import start_world, stop_world

WA_ID = "4915112345678"
PSID = "6712345678901234"
SMS_CUSTOMER = "+14155550123"


def section(*elements: dict[str, Any]) -> dict[str, Any]:
    return {"type": "rich_text_section", "elements": list(elements)}


# Shaped as the corpus samples (event_message_rich_text.json, event_message_with_*.json): a
# custom emoji (no `unicode`), an emoji Slack names its own way, a link with a label, a list.
RICH = {
    "type": "rich_text",
    "block_id": "r1",
    "elements": [
        section(
            {"type": "text", "text": "Thanks! "},
            {"type": "emoji", "name": "partyparrot"},
            {"type": "text", "text": " "},
            {
                "type": "emoji",
                "name": "man-woman-girl-boy",
                "unicode": "1f468-200d-1f469-200d-1f467-200d-1f466",
            },
            {"type": "text", "text": "\nRead "},
            {"type": "link", "url": "https://example.com/faq", "text": "our FAQ"},
            {"type": "text", "text": ":"},
        ),
        {
            "type": "rich_text_list",
            "style": "bullet",
            "indent": 0,
            "border": 0,
            "elements": [
                section(
                    {"type": "text", "text": "Track", "style": {"bold": True}},
                    {"type": "text", "text": " your order"},
                ),
                section({"type": "text", "text": "Call us"}),
            ],
        },
    ],
}
FIRST = "Thanks! :partyparrot: 👨‍👩‍👧‍👦\nRead our FAQ (https://example.com/faq):"
WRITTEN = f"{FIRST}\n• *Track* your order\n• Call us"
PLAIN = f"{FIRST}\n• Track your order\n• Call us"


async def test_telegram_gets_the_rich_text_in_html_with_the_link_and_the_list(world):
    await world.says(111, "Where is my order?")
    root = await world.thread_of(111)
    await world.slack.agent_says(root.channel, root.ts, "", rich=RICH)
    [sent] = await eventually(lambda: world.tg.messages_to(111), message="a Telegram message")
    assert sent.parse_mode == "HTML"
    assert sent.text == PLAIN
    assert [e["type"] for e in sent.entities] == ["bold"]


@pytest.fixture
async def wa_world(tmp_path):
    w = await start_world(tmp_path, whatsapp=FakeWhatsApp())
    yield w
    await stop_world(w)


async def test_whatsapp_gets_the_rich_text_with_its_own_markers(wa_world):
    world = wa_world
    await world.wa.customer_says(WA_ID, "Hi")
    root = await world.thread_of(WA_ID)
    await world.slack.agent_says(root.channel, root.ts, "", rich=RICH)
    [sent] = await eventually(lambda: world.wa.sent_to(WA_ID), message="a WhatsApp message")
    assert sent["text"]["body"] == WRITTEN


@pytest.fixture
async def plain_world(tmp_path):
    fb = FakeMessenger()
    fb.profiles[PSID] = ("Mia", "Wong")
    w = await start_world(tmp_path, messenger=fb, sms=FakeTwilio())
    yield w
    await stop_world(w)


async def test_messenger_and_sms_get_the_rich_text_as_plain_words(plain_world):
    world = plain_world
    await world.fb.customer_says(PSID, "Where is my order?")
    assert await world.sms.customer_texts(SMS_CUSTOMER, "Where is my order?") == 200
    for customer in (PSID, SMS_CUSTOMER):
        root = await world.thread_of(customer)
        await world.slack.agent_says(root.channel, root.ts, "", rich=RICH)
    [sent] = await eventually(lambda: world.fb.messages_to(PSID), message="the send")
    assert sent["message"]["text"] == PLAIN
    [sms] = await eventually(lambda: world.sms.messages_to(SMS_CUSTOMER), message="the SMS")
    assert sms["Body"] == PLAIN


async def test_an_edit_reaches_the_customer_from_its_rich_text(world):
    await world.says(111, "Where is my order?")
    root = await world.thread_of(111)
    ts = await world.slack.agent_says(root.channel, root.ts, "Thanks!")
    await eventually(lambda: world.tg.messages_to(111), message="the reply")
    await world.slack.agent_edits(root.channel, ts, "", rich=RICH)
    [sent] = world.tg.messages_to(111)
    await eventually(lambda: sent.edited_texts, message="the edit")
    assert sent.edited_texts == [PLAIN]


async def test_a_channel_mentioned_without_its_name_reaches_the_customer_by_name(world):
    world.slack.add_channel("C0SALES", "sales")
    await world.says(111, "Who sells gift cards?")
    root = await world.thread_of(111)
    before = world.slack.count("conversations.info")
    await world.slack.agent_says(root.channel, root.ts, "Please ask in <#C0SALES>")
    await world.slack.agent_says(root.channel, root.ts, "<#C0SALES> opens at 9")
    sent = await eventually(
        lambda: (m := world.tg.messages_to(111)) and len(m) == 2 and m, message="both replies"
    )
    assert [m.text for m in sent] == ["Please ask in #sales", "#sales opens at 9"]
    # Asked once, then remembered.
    assert world.slack.count("conversations.info") == before + 1


async def test_a_channel_slack_tells_no_name_for_reads_as_channel(world):
    world.slack.fail_next("conversations.info", "channel_not_found")
    await world.says(111, "Who sells gift cards?")
    root = await world.thread_of(111)
    await world.slack.agent_says(root.channel, root.ts, "Please ask in <#C0GONE>")
    [sent] = await eventually(lambda: world.tg.messages_to(111), message="the reply")
    assert sent.text == "Please ask in #channel"
