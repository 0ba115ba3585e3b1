"""Customers' reactions and replies, on the pipeline alone: a reaction shows on the post of the
message it is on (the agent's message, or the customer's own), a changed or taken-back one
changes it there (and erasing the customer erases what it kept); a reply shows a quote of the
message it answers."""

from __future__ import annotations

from datetime import UTC, datetime

from bridge.services import Services
from bridge.services.contacts import forget_contact
from bridge.types import ContactId
from tests.pipeline_kit import rig_fixture

ANN = "111"
BOB = "222"

rig = rig_fixture()


async def test_a_reaction_on_the_agents_message_shows_on_it_and_goes_when_taken_back(rig):
    thread = await rig.customer_with_thread(ANN, "Where is my parcel?")
    agent = await rig.reply(thread, "It left the depot today.")
    [sent] = rig.customer.sent_to(ANN)
    await rig.customer.reacts(ANN, "out-1", "👍")
    await rig.settle()
    assert rig.surface.reactions[agent] == ["👍"]
    await rig.customer.reacts(ANN, "out-1")
    await rig.settle()
    assert rig.surface.reactions[agent] == []
    assert sent.text == "It left the depot today."


async def test_a_reaction_on_their_own_message_shows_on_its_post(rig):
    message = await rig.customer.says(ANN, "Here is the label")
    await rig.settle()
    [post] = rig.surface.thread_of(ANN).shown
    await rig.customer.reacts(ANN, message.external_id, "🙏")
    await rig.settle()
    assert rig.surface.reactions[post.ref] == ["🙏"]


async def test_a_new_reaction_replaces_the_one_before(rig):
    thread = await rig.customer_with_thread(ANN, "Hi")
    agent = await rig.reply(thread, "Hello!")
    await rig.customer.reacts(ANN, "out-1", "👍")
    await rig.settle()
    await rig.customer.reacts(ANN, "out-1", "❤️")
    await rig.settle()
    assert rig.surface.reactions[agent] == ["❤️"]


async def test_the_same_reaction_twice_is_shown_once(rig):
    thread = await rig.customer_with_thread(ANN, "Hi")
    agent = await rig.reply(thread, "Hello!")
    await rig.customer.reacts(ANN, "out-1", "👍")
    await rig.customer.reacts(ANN, "out-1", "👍")
    await rig.settle()
    assert rig.surface.reactions[agent] == ["👍"]
    assert await rig.sql("select count(*) from outbox where kind = 'staff.react'") == [(1,)]


async def test_a_reaction_on_another_customers_message_changes_nothing(rig):
    await rig.customer_with_thread(ANN, "Hi")
    bob_message = await rig.customer.says(BOB, "Mine")
    await rig.settle()
    await rig.customer.reacts(ANN, bob_message.external_id, "😡")
    await rig.customer.reacts(ANN, "no-such-message", "😡")
    await rig.settle()
    assert rig.surface.reactions == {}


async def test_a_reply_shows_a_quote_of_the_stored_message_it_answers(rig):
    thread = await rig.customer_with_thread(ANN, "Where is my parcel?")
    await rig.reply(thread, "Which order number?")
    await rig.customer.says(ANN, "QX-5521", reply_to="out-1", quoted="(the platform's copy)")
    await rig.settle()
    reply = thread.shown[-1]
    assert (reply.text, reply.quote) == ("QX-5521", "Which order number?")


async def test_a_reply_to_a_message_the_bridge_never_saw_quotes_what_the_platform_gives(rig):
    await rig.customer.says(ANN, "As I said:", reply_to="older", quoted="My address is new")
    await rig.customer.says(ANN, "and this", reply_to="older-still")
    await rig.settle()
    first, second = rig.surface.thread_of(ANN).shown
    assert (first.text, first.quote) == ("As I said:", "My address is new")
    assert (second.text, second.quote) == ("and this", None)


async def test_a_reply_is_not_joined_with_the_messages_around_it(rig):
    thread = await rig.customer_with_thread(ANN, "one")
    await rig.reply(thread, "Which one?")
    await rig.customer.says(ANN, "two")
    await rig.customer.says(ANN, "this", reply_to="out-1")
    await rig.customer.says(ANN, "three")
    await rig.settle()
    showing = [s for s in thread.shown if "this" in s.text.split("\n")]
    assert [(s.text, s.quote) for s in showing] == [("this", "Which one?")]


async def test_erasing_the_contact_erases_what_their_reactions_left(rig):
    thread = await rig.customer_with_thread(ANN, "Hi")
    await rig.reply(thread, "Hello!")
    await rig.customer.reacts(ANN, "out-1", "👍")
    await rig.settle()
    kept = "select count(*) from kv where key like 'reaction:%'"
    assert await rig.sql(kept) == [(1,)]
    [(contact,)] = await rig.sql("select id from contacts")
    services = Services(rig.settings, rig.db, rig.writer, rig.pipeline)
    await forget_contact(services, ContactId(contact), "Ada", datetime.now(UTC))
    assert await rig.sql(kept) == [(0,)]
