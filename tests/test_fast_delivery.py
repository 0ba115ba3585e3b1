"""An agent's reply on its way to the customer, on the pipeline alone: it goes out and is
marked sent; a rate limit is waited out and the reply goes out once; a permanent refusal is
marked and explained in the thread; a reply of someone without the agent role is refused and
told to them alone."""

from __future__ import annotations

from bridge.errors import PermanentError, RateLimited
from bridge.types import DeliveryStatus
from tests.pipeline_kit import rig_fixture

ANN = "111"


rig = rig_fixture()


async def test_agent_reply_goes_out_and_is_marked_sent(rig):
    thread = await rig.customer_with_thread(ANN, "Is my table booked?")
    ref = await rig.reply(thread, "Yes, 7 pm tonight.")
    [sent] = rig.customer.sent_to(ANN)
    assert sent.text == "Yes, 7 pm tonight." and sent.account == rig.customer.account
    assert rig.surface.marks_of(ref) == [DeliveryStatus.SENT]
    assert await rig.sql("select external_id, status from messages where direction = 'out'") == [
        ("out-1", "sent")
    ]


async def test_rate_limited_send_is_retried_and_goes_out_once(rig):
    thread = await rig.customer_with_thread(ANN, "hello")
    ref = await rig.reply_refused(thread, "One moment", RateLimited(0.05))
    assert rig.customer.texts_to(ANN) == ["One moment"]
    assert rig.surface.marks_of(ref) == [DeliveryStatus.SENT]


async def test_permanent_refusal_is_marked_and_explained_in_the_thread(rig):
    thread = await rig.customer_with_thread(ANN, "hello")
    ref = await rig.reply_refused(
        thread, "Are you there?", PermanentError("403", "the bot was blocked by the user")
    )
    assert rig.customer.sent == []
    assert rig.surface.marks_of(ref) == [DeliveryStatus.FAILED]
    assert "not delivered: the bot was blocked by the user" in thread.notices()
    assert await rig.outgoing() == [("Are you there?", "failed", "403")]


closed = rig_fixture(name="closed", bridge={"default_role": "none"})


async def test_reply_without_the_agent_role_is_refused_and_told_to_its_author_alone(closed):
    thread = await closed.customer_with_thread(ANN, "hello")
    ref = await closed.reply(thread, "I am just looking", user="UGUEST")
    assert closed.customer.sent == []
    assert closed.surface.marks_of(ref) == [DeliveryStatus.FAILED]
    [(user, told)] = thread.told
    assert user == "UGUEST"
    assert told.startswith("Not sent to the customer: replying to customers needs the agent role")
    assert "/user role UGUEST agent" in told
    assert thread.notices() == []  # nobody else reads it
    assert await closed.outgoing() == []
