"""SMS opt-out, on the pipeline alone: a STOP the platform reports (Twilio acts on it itself)
opts the customer out, the thread says so and refuses replies until START; a send the platform
refuses because the customer unsubscribed elsewhere opts them out too."""

from __future__ import annotations

from bridge.errors import OptedOut
from bridge.types import SMS, Consent, DeliveryStatus
from tests.pipeline_kit import FakeConnector, rig_fixture

CUSTOMER = "+14155550123"


rig = rig_fixture(customer=lambda: FakeConnector(SMS, "+15005550006"))


async def opted_out(rig) -> bool:
    [(out,)] = await rig.sql("select opted_out_at is not null from contacts")
    return bool(out)


async def test_stop_opts_the_customer_out_and_replies_are_refused_until_start(rig):
    thread = await rig.customer_with_thread(CUSTOMER, "hello")
    await rig.customer.says(CUSTOMER, "STOP", consent=Consent.STOP)
    await rig.settle()
    assert any("opted out (replied STOP)" in t for t in thread.notices())
    assert await opted_out(rig)
    assert thread.card.opted_out
    assert rig.customer.sent == []  # the carrier confirms a STOP; the bridge says nothing

    refused = await rig.reply(thread, "Sorry to see you go")
    assert rig.surface.marks_of(refused) == [DeliveryStatus.FAILED]
    assert any(t.startswith("Not sent: the customer opted out") for t in thread.notices())
    assert rig.customer.sent == []

    await rig.customer.says(CUSTOMER, "START", consent=Consent.START)
    await rig.settle()
    assert any("opted in again" in t for t in thread.notices())
    assert not await opted_out(rig)
    assert not thread.card.opted_out
    await rig.reply(thread, "Welcome back")
    assert rig.customer.texts_to(CUSTOMER) == ["Welcome back"]


async def test_send_refused_as_unsubscribed_marks_the_contact_opted_out(rig):
    # The customer opted out with the carrier or on a channel the bridge never saw.
    thread = await rig.customer_with_thread(CUSTOMER, "hello")
    refusal = OptedOut("21610", "the recipient unsubscribed (replied STOP)")
    ref = await rig.reply_refused(thread, "Are you there?", refusal)
    assert rig.surface.marks_of(ref) == [DeliveryStatus.FAILED]
    assert any("21610" in t or "STOP" in t for t in thread.notices())
    assert any("opted out (platform refusal)" in t for t in thread.notices())
    assert await opted_out(rig)
    assert await rig.outgoing() == [("Are you there?", "failed", "21610")]
