"""A customer's reaction shows in Slack on the message it is on: the agent's message a WhatsApp
customer reacted to gets the same emoji as a reaction, and loses it when the customer takes it
back; an emoji Slack has no name for is told in a line of the thread. Telegram customers'
reactions arrive once the bot asks for them; Messenger's react and unreact show too."""

from __future__ import annotations

import pytest

from tests.fakes.messenger import FakeMessenger
from tests.fakes.whatsapp import FakeWhatsApp
from tests.harness import eventually
from tests.world import start_world, stop_world

WA_ID = "4915112345678"
TG_CHAT = 5550001
PSID = "6712345678909999"


@pytest.fixture
async def world(tmp_path):
    w = await start_world(tmp_path, whatsapp=FakeWhatsApp())
    yield w
    await stop_world(w)


async def _agent_answers(world, text: str):
    """The customer writes, an agent answers; the agent's Slack message and its wamid."""
    await world.wa.customer_says(WA_ID, "Is my order on its way?", name="Anna")
    root = await world.thread_of(WA_ID)
    ts = await world.slack.agent_says(root.channel, root.ts, text)
    await eventually(lambda: world.wa.sent_to(WA_ID), message="the WhatsApp send")
    agent_msg = world.slack.find(root.channel, ts)
    await eventually(lambda: "white_check_mark" in agent_msg.reactions, message="sent mark")
    return root, agent_msg, world.wa.sent_to(WA_ID)[0]["_id"]


async def test_a_thumbs_up_on_the_agents_message_is_a_plus_one_there_until_taken_back(world):
    _, agent_msg, wamid = await _agent_answers(world, "Yes, it ships today.")
    assert await world.wa.customer_reacts(WA_ID, wamid, "👍") == 200
    await eventually(lambda: "+1" in agent_msg.reactions, message="the +1 reaction")
    assert await world.wa.customer_reacts(WA_ID, wamid, None) == 200
    await eventually(lambda: "+1" not in agent_msg.reactions, message="the reaction removed")
    # The delivery mark stays: only the customer's reaction was taken back.
    assert "white_check_mark" in agent_msg.reactions


async def test_a_changed_reaction_replaces_the_one_before(world):
    _, agent_msg, wamid = await _agent_answers(world, "Yes, it ships today.")
    await world.wa.customer_reacts(WA_ID, wamid, "👍")
    await eventually(lambda: "+1" in agent_msg.reactions, message="the +1 reaction")
    await world.wa.customer_reacts(WA_ID, wamid, "❤️")
    await eventually(lambda: "heart" in agent_msg.reactions, message="the heart")
    assert "+1" not in agent_msg.reactions


async def test_an_emoji_slack_has_no_reaction_for_is_a_line_in_the_thread(world):
    root, agent_msg, wamid = await _agent_answers(world, "Yes, it ships today.")
    # The delivery marks use 👀 for "read": the customer's 👀 must not pass for one.
    await world.wa.customer_reacts(WA_ID, wamid, "👀")
    [line] = await world.notices(root, "reacted", message="the reaction line")
    assert line == "_reacted 👀 on “Yes, it ships today.”_"
    assert "eyes" not in agent_msg.reactions
    assert world.replies(root)[-1].username == "Anna"


async def test_a_reaction_line_posted_before_its_row_completed_is_not_posted_again(world):
    root, _, wamid = await _agent_answers(world, "Yes, it ships today.")
    # The line goes out but the bridge never hears back: the row is carried out again.
    world.slack.lose_answer_next("chat.postMessage")
    await world.wa.customer_reacts(WA_ID, wamid, "👀")
    # The thread's rows go in order: the next message shows once the reaction's row is done.
    await world.wa.customer_says(WA_ID, "Thanks!", name="Anna")
    await world.notices(root, "Thanks!", message="the next message")
    assert world.texts(root).count("_reacted 👀 on “Yes, it ships today.”_") == 1


async def test_a_reaction_on_their_own_message_shows_on_its_mirror(world):
    await world.wa.customer_says(WA_ID, "Here is my label", name="Anna")
    root = await world.thread_of(WA_ID)
    await eventually(lambda: world.texts(root), message="the mirrored message")
    [mirror] = world.replies(root)
    wamid = world.wa.last_inbound_id
    await world.wa.customer_reacts(WA_ID, wamid, "🙏")
    await eventually(lambda: "pray" in mirror.reactions, message="the pray reaction")


async def test_a_telegram_customers_reaction_arrives_and_shows(tmp_path):
    world = await start_world(tmp_path, telegram_mode="polling")
    try:
        await world.says(TG_CHAT, "Hello?")
        root = await world.thread_of(TG_CHAT)
        ts = await world.slack.agent_says(root.channel, root.ts, "How can we help?")
        await eventually(lambda: world.tg.messages_to(TG_CHAT), message="the Telegram send")
        [sent] = world.tg.messages_to(TG_CHAT)
        assert "message_reaction" in (world.tg.allowed_updates or [])
        await world.customer(world.tg.reaction_update(TG_CHAT, sent.message_id, ["🔥"]))
        agent_msg = world.slack.find(root.channel, ts)
        await eventually(lambda: "fire" in agent_msg.reactions, message="the fire reaction")
    finally:
        await stop_world(world)


async def test_a_messenger_customers_reaction_shows_and_goes(tmp_path):
    fb = FakeMessenger()
    world = await start_world(tmp_path, messenger=fb)
    try:
        assert await fb.customer_says(PSID, "Do you deliver on Saturday?") == 200
        root = await world.thread_of(PSID)
        ts = await world.slack.agent_says(root.channel, root.ts, "Yes, until noon.")
        await eventually(lambda: fb.messages_to(PSID), message="the Messenger send")
        mid = fb.messages_to(PSID)[0]["_mid"]
        agent_msg = world.slack.find(root.channel, ts)
        assert await fb.react(PSID, mid, "😮") == 200
        await eventually(lambda: "open_mouth" in agent_msg.reactions, message="the reaction")
        assert await fb.react(PSID, mid, None) == 200
        await eventually(lambda: "open_mouth" not in agent_msg.reactions, message="taken back")
    finally:
        await stop_world(world)
