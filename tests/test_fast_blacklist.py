"""The blacklist, on the pipeline alone: an inbound block keeps a contact's messages out of the
thread (they are still stored); an outbound block refuses agents' replies with the reason shown
in the thread, until the block expires by the pipeline's clock."""

from __future__ import annotations

from bridge.types import DeliveryStatus
from tests.pipeline_kit import AGENT, Rig, rig_fixture

ANN = "111"


rig = rig_fixture()


async def block(rig: Rig, line: str) -> str:
    """Run a blacklist command as the admin; return its answer's title."""
    reply = await rig.command(line)
    assert reply.ok, reply.text
    await rig.settle()
    return reply.title


async def test_inbound_block_stores_messages_but_does_not_mirror_them(rig):
    thread = await rig.customer_with_thread(ANN, "Hello", name="Ann")
    title = await block(rig, f"blacklist add {ANN} in flooding the chat")
    assert title == (
        "#1 Ann (telegram) blocked inbound (stored, not shown to staff), permanently by"
        " UADMIN. Reason: flooding the chat."
    )
    assert any("blocked inbound" in t for t in thread.texts())
    await rig.customer.says(ANN, "BUY CHEAP WATCHES")
    await rig.settle()
    assert await rig.sql("select text from messages where text = 'BUY CHEAP WATCHES'")
    assert not any("WATCHES" in t for t in thread.texts())
    assert await rig.sql(
        "select count(*) from staff_refs r join messages m on m.id = r.message_id"
        " where m.text = 'BUY CHEAP WATCHES'"
    ) == [(0,)]


async def test_a_blocked_contact_gets_no_answer_to_a_keyword(rig):
    assert (await rig.command("channel create news --join JOIN-NEWS")).ok
    await rig.customer_with_thread(ANN)
    await block(rig, f"blacklist add {ANN} in")
    await rig.customer.says(ANN, "JOIN-NEWS")
    await rig.settle()
    assert rig.customer.texts_to(ANN) == []
    assert await rig.sql("select count(*) from channel_members") == [(0,)]


async def test_outbound_block_refuses_the_agent_reply_with_the_reason(rig):
    thread = await rig.customer_with_thread(ANN)
    await block(rig, "blacklist add #1 out abusive")
    ref = await rig.reply(thread, "Please calm down.", user=AGENT)
    assert rig.surface.marks_of(ref) == [DeliveryStatus.FAILED]
    assert any(
        "Not sent: the contact is blacklisted for outgoing messages (abusive)" in t
        for t in thread.texts()
    )
    assert rig.customer.sent == []
    assert await rig.outgoing() == [("Please calm down.", "failed", "refused")]


async def test_temporary_block_expires_by_the_pipeline_clock(rig):
    thread = await rig.customer_with_thread(ANN)
    assert " until " in await block(rig, "blacklist add #1 out for 2h cooling off")
    first = await rig.reply(thread, "First try")
    assert rig.surface.marks_of(first) == [DeliveryStatus.FAILED]
    assert rig.customer.sent == []

    rig.advance(hours=3)
    second = await rig.reply(thread, "Second try")
    assert rig.customer.texts_to(ANN) == ["Second try"]
    assert rig.surface.marks_of(second) == [DeliveryStatus.SENT]
    listed = await rig.command("blacklist list", user=AGENT)
    assert listed.title == "The blacklist is empty."


async def test_removing_the_block_lets_replies_through_again(rig):
    thread = await rig.customer_with_thread(ANN)
    await block(rig, "blacklist add #1 out")
    await block(rig, f"blacklist remove {ANN}")
    await rig.reply(thread, "Welcome back")
    assert rig.customer.texts_to(ANN) == ["Welcome back"]
