"""A customer's thread, on the pipeline alone: the first message opens it under a contact card,
later ones are mirrored into it and refresh the card; after the conversation is closed, the
next message opens a new thread that links to the old one."""

from __future__ import annotations

from bridge.types import ConversationStatus
from tests.pipeline_kit import rig_fixture

ANN = "111"

rig = rig_fixture()


async def test_first_message_opens_a_thread_under_the_contact_card(rig):
    thread = await rig.customer_with_thread(
        ANN, "/start flyer-2026", name="Ann", payload="flyer-2026"
    )
    card = thread.card
    assert (card.display_name, card.platform, card.chat_id) == ("Ann", "telegram", ANN)
    assert card.opt_in_source == "deep link: flyer-2026"
    assert card.status is ConversationStatus.OPEN
    assert thread.posts() == ["/start flyer-2026"]
    assert rig.customer.sent == []


async def test_later_messages_are_mirrored_and_refresh_the_card(rig):
    thread = await rig.customer_with_thread(ANN, "Hello")
    await rig.customer.says(ANN, "Are you there?")
    await rig.settle()
    assert "\n".join(thread.posts()) == "Hello\nAre you there?"
    assert thread.card.message_count == 2
    assert len(rig.surface.threads) == 1


async def test_after_close_the_next_message_opens_a_new_thread_linked_to_the_old(rig):
    old = await rig.customer_with_thread(ANN, "first problem")
    [(conversation,)] = await rig.sql("select id from conversations")
    assert await rig.pipeline.close(conversation)
    new = await rig.customer_with_thread(ANN, "second problem")
    assert new.ref != old.ref
    assert new.posts() == ["second problem"]
    assert new.card.previous_thread_url == f"https://staff.example/{old.ref}"
