"""A platform's customer-service window, on the pipeline alone: a free-text reply after the
window closed is refused, the thread says why and offers the approved templates; a template
still goes out, and the customer's next message opens the window again."""

from __future__ import annotations

from datetime import timedelta

from bridge.errors import WindowClosed
from bridge.types import WHATSAPP, DeliveryStatus, Template
from tests.pipeline_kit import FakeConnector, rig_fixture

WA_ID = "4915112345678"
TEMPLATES = [
    Template(
        name="order_update",
        language="en_US",
        status="APPROVED",
        body="Hi {{1}}, your order {{2}} has shipped.",
    ),
    Template(name="welcome_back", language="en", status="APPROVED", body="Welcome back!"),
    Template(name="spammy_offer", language="en", status="REJECTED", body="Buy now"),
]


rig = rig_fixture(
    customer=lambda: FakeConnector(WHATSAPP, "pn1", window=timedelta(hours=24), templates=TEMPLATES)
)


async def test_reply_inside_the_window_goes_out_and_is_marked_sent(rig):
    thread = await rig.customer_with_thread(WA_ID, "Is the shop open on Sunday?")
    rig.advance(hours=23)
    ref = await rig.reply(thread, "Yes, 10 to 16 o'clock.")
    assert rig.customer.texts_to(WA_ID) == ["Yes, 10 to 16 o'clock."]
    assert rig.surface.marks_of(ref) == [DeliveryStatus.SENT]


async def test_reply_outside_the_window_is_refused_and_offers_approved_templates(rig):
    thread = await rig.customer_with_thread(WA_ID, "Hello?", name="Anna Schmidt")
    rig.advance(hours=30)
    ref = await rig.reply(thread, "Sorry for the late answer!")
    assert rig.surface.marks_of(ref) == [DeliveryStatus.FAILED]
    [notice] = [t for t in thread.notices() if t.startswith("Not sent")]
    assert "24-hour customer service window" in notice
    assert "order_update:en_US, 2 parameters" in notice and "welcome_back:en" in notice
    assert "!template send" in notice
    assert "spammy_offer" not in notice
    assert rig.customer.sent == []  # nothing went out as free text
    assert await rig.outgoing() == [("Sorry for the late answer!", "failed", "refused")]


async def test_template_from_the_thread_reaches_the_customer_outside_the_window(rig):
    thread = await rig.customer_with_thread(WA_ID, "Hello?")
    rig.advance(hours=30)
    reply = await rig.command('template send order_update "Anna S." A-1234', thread=thread)
    assert reply.ok, reply.text
    await rig.settle()
    [sent] = rig.customer.sent_to(WA_ID)
    assert sent.template is not None
    assert (sent.template.name, sent.template.language) == ("order_update", "en_US")
    assert sent.template.params == ("Anna S.", "A-1234")
    assert await rig.sql("select text, status from messages where direction = 'out'") == [
        ("Hi Anna S., your order A-1234 has shipped.", "sent")
    ]


async def test_the_customer_writing_again_opens_the_window(rig):
    thread = await rig.customer_with_thread(WA_ID, "Hello?")
    rig.advance(hours=30)
    await rig.customer.says(WA_ID, "Still there?")
    await rig.reply(thread, "Yes!")
    assert rig.customer.texts_to(WA_ID) == ["Yes!"]


async def test_platform_window_refusal_is_explained_with_templates(rig):
    # The bridge believed the window open; the platform did not.
    thread = await rig.customer_with_thread(WA_ID, "Hi")
    ref = await rig.reply_refused(
        thread, "Here is the answer", WindowClosed("131047", "more than 24 hours have passed")
    )
    assert rig.surface.marks_of(ref) == [DeliveryStatus.FAILED]
    [notice] = [t for t in thread.notices() if t.startswith("Not sent")]
    assert "more than 24 hours have passed" in notice and "order_update" in notice
    assert await rig.outgoing() == [("Here is the answer", "failed", "131047")]
