"""A customer's reply to an earlier message shows in the Slack thread below a quote of that
message: the agent's answer they replied to, their own earlier message, or, for a message the
bridge never saw, the text Telegram sends along. What a customer wrote stays plain text in the
quote too."""

from __future__ import annotations

import pytest

from tests.fakes.messenger import FakeMessenger
from tests.fakes.whatsapp import FakeWhatsApp
from tests.harness import eventually
from tests.world import start_world, stop_world

CHAT = 5550002
WA_ID = "4915112345679"
PSID = "6712345678908888"


@pytest.fixture
async def world(tmp_path):
    w = await start_world(tmp_path, whatsapp=FakeWhatsApp())
    yield w
    await stop_world(w)


async def test_a_telegram_reply_to_the_agent_shows_the_agents_words_as_a_quote(world):
    await world.says(CHAT, "Where is my parcel?")
    root = await world.thread_of(CHAT)
    await world.slack.agent_says(root.channel, root.ts, "Which order number?")
    await eventually(lambda: world.tg.messages_to(CHAT), message="the Telegram send")
    [sent] = world.tg.messages_to(CHAT)
    await world.customer(world.tg.reply_update(CHAT, "QX-5521", to=sent.message_id))
    shown = await world.notices(root, "QX-5521", message="the reply")
    assert shown == [">Which order number?\nQX-5521"]


async def test_a_quoted_customer_text_stays_plain(world):
    first = await world.says(CHAT, "<!channel> *urgent* <https://evil.example|bank>")
    root = await world.thread_of(CHAT)
    message_id = first["message"]["message_id"]
    await world.customer(world.tg.reply_update(CHAT, "see above", to=message_id))
    [shown] = await world.notices(root, "see above", message="the reply")
    assert shown == (">&lt;!channel&gt; *urgent* &lt;https://evil.example|bank&gt;\nsee above")


async def test_a_reply_to_a_message_the_bridge_never_saw_quotes_telegrams_copy(world):
    update = world.tg.text_update(CHAT, "Still waiting", message_id=50)
    update["message"]["reply_to_message"] = {
        "message_id": 7,
        "from": {"id": CHAT, "is_bot": False, "first_name": "Ann"},
        "chat": update["message"]["chat"],
        "date": update["message"]["date"] - 86400,
        "text": "Order placed yesterday",
    }
    await world.customer(update)
    root = await world.thread_of(CHAT)
    await eventually(lambda: world.texts(root), message="the reply")
    assert world.texts(root) == [">Order placed yesterday\nStill waiting"]


async def test_a_whatsapp_reply_to_the_agent_shows_the_quote(world):
    await world.wa.customer_says(WA_ID, "Do you ship to Austria?")
    root = await world.thread_of(WA_ID)
    await world.slack.agent_says(root.channel, root.ts, "Yes, in 3 days.")
    await eventually(lambda: world.wa.sent_to(WA_ID), message="the WhatsApp send")
    wamid = world.wa.sent_to(WA_ID)[0]["_id"]
    assert await world.wa.customer_replies(WA_ID, "Great, thanks", wamid) == 200
    shown = await world.notices(root, "Great", message="the reply")
    assert shown == [">Yes, in 3 days.\nGreat, thanks"]


async def test_a_messenger_reply_to_the_agent_shows_the_quote(tmp_path):
    fb = FakeMessenger()
    world = await start_world(tmp_path, messenger=fb)
    try:
        await fb.customer_says(PSID, "Is the blue one in stock?")
        root = await world.thread_of(PSID)
        await world.slack.agent_says(root.channel, root.ts, "Two are left.")
        await eventually(lambda: fb.messages_to(PSID), message="the Messenger send")
        assert await fb.reply(PSID, "I'll take one", fb.messages_to(PSID)[0]["_mid"]) == 200
        shown = await world.notices(root, "take one", message="the reply")
        assert shown == [">Two are left.\nI'll take one"]
    finally:
        await stop_world(world)


async def test_an_edited_reply_keeps_its_quote(world):
    await world.says(CHAT, "Where is my parcel?")
    root = await world.thread_of(CHAT)
    await world.slack.agent_says(root.channel, root.ts, "Which order number?")
    [sent] = await eventually(lambda: world.tg.messages_to(CHAT), message="the Telegram send")
    update = world.tg.reply_update(CHAT, "QX-5521", to=sent.message_id)
    await world.customer(update)
    await world.notices(root, "QX-5521", message="the reply")
    message_id = update["message"]["message_id"]
    await world.customer(world.tg.edit_update(CHAT, message_id, "QX-5522"))
    shown = await world.notices(root, "QX-5522", message="the edit")
    assert shown == [">Which order number?\nQX-5522 _(edited)_"]
