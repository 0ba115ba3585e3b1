"""WhatsApp customers get a Slack thread; agents answer them within WhatsApp's rules."""

from __future__ import annotations

import json

import pytest

from tests.fakes.whatsapp import FakeWhatsApp
from tests.harness import eventually
from tests.world import start_world, stop_world

WA_ID = "4915112345678"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(200))


@pytest.fixture
async def world(tmp_path):
    w = await start_world(tmp_path, whatsapp=FakeWhatsApp())
    yield w
    await stop_world(w)


async def test_customer_message_opens_a_thread_with_number_and_profile_name(world):
    assert await world.wa.customer_says(WA_ID, "Is the shop open on Sunday?", name="Anna") == 200
    root = await world.thread_of(WA_ID)
    assert "Anna" in root.text and "whatsapp" in root.text
    assert f"+{WA_ID}" in json.dumps(root.blocks)
    await eventually(lambda: world.texts(root), message="the mirrored message")
    assert world.texts(root) == ["Is the shop open on Sunday?"]


async def test_agent_reply_goes_out_as_whatsapp_text_and_is_marked(world):
    await world.wa.customer_says(WA_ID, "Hi")
    root = await world.thread_of(WA_ID)
    ts = await world.slack.agent_says(root.channel, root.ts, "Yes, 10 to 16 o'clock.")
    await eventually(lambda: world.wa.sent_to(WA_ID), message="a WhatsApp message")
    [sent] = world.wa.sent_to(WA_ID)
    assert sent["type"] == "text" and sent["text"]["body"] == "Yes, 10 to 16 o'clock."
    agent_msg = world.slack.find(root.channel, ts)
    await eventually(lambda: "white_check_mark" in agent_msg.reactions, message="sent mark")
    assert await world.sql("select external_id, status from messages where direction='out'") == [
        (sent["_id"], "sent")
    ]


async def test_delivered_and_read_statuses_show_on_the_agent_message(world):
    await world.wa.customer_says(WA_ID, "Hi")
    root = await world.thread_of(WA_ID)
    ts = await world.slack.agent_says(root.channel, root.ts, "Hello!")
    await eventually(lambda: world.wa.sent_to(WA_ID), message="the send")
    wamid = world.wa.sent_to(WA_ID)[0]["_id"]
    agent_msg = world.slack.find(root.channel, ts)
    await eventually(lambda: "white_check_mark" in agent_msg.reactions, message="sent mark")
    assert await world.wa.status(wamid, "delivered") == 200
    assert await world.wa.status(wamid, "read") == 200
    await eventually(lambda: "eyes" in agent_msg.reactions, message="the read mark")
    assert "ballot_box_with_check" in agent_msg.reactions
    # A late `delivered` after `read` does not move the status back.
    assert await world.wa.status(wamid, "delivered") == 200
    assert await world.sql("select status from messages where direction='out'") == [("read",)]


async def test_failed_status_is_explained_with_the_platform_code(world):
    await world.wa.customer_says(WA_ID, "Hi")
    root = await world.thread_of(WA_ID)
    ts = await world.slack.agent_says(root.channel, root.ts, "Your invoice is ready.")
    await eventually(lambda: world.wa.sent_to(WA_ID), message="the send")
    wamid = world.wa.sent_to(WA_ID)[0]["_id"]
    errors = [{"code": 131026, "title": "Message undeliverable", "message": "undeliverable"}]
    assert await world.wa.status(wamid, "failed", errors=errors) == 200
    agent_msg = world.slack.find(root.channel, ts)
    await eventually(lambda: "x" in agent_msg.reactions, message="the failure mark")
    notice = await world.notices(root, "not delivered", message="the notice")
    assert "131026" in notice[0]
    assert await world.sql("select status, error_code from messages where direction='out'") == [
        ("failed", "131026")
    ]


async def test_reply_outside_24h_window_offers_approved_templates(world):
    assert await world.wa.customer_wrote_ago(WA_ID, 30, name="Anna Schmidt") == 200
    root = await world.thread_of(WA_ID)
    ts = await world.slack.agent_says(root.channel, root.ts, "Sorry for the late answer!")
    agent_msg = world.slack.find(root.channel, ts)
    await eventually(lambda: "x" in agent_msg.reactions, message="the refusal mark")
    [notice] = await world.notices(root, "Not sent", message="the refusal")
    assert "24 hours" in notice
    assert "order_update:en_US" in notice and "welcome_back:en" in notice
    assert "!template send" in notice
    rejected = [t["name"] for t in world.wa.templates if t["status"] != "APPROVED"]
    assert rejected and all(name not in notice for name in rejected)
    assert world.wa.sent_to(WA_ID) == []  # nothing went out as free text
    assert await world.sql("select status, error_code from messages where direction='out'") == [
        ("failed", "refused")
    ]


async def test_template_sent_from_the_thread_reaches_the_customer_outside_the_window(world):
    assert await world.wa.customer_wrote_ago(WA_ID, 30, name="Anna Schmidt") == 200
    root = await world.thread_of(WA_ID)
    await world.slack.agent_says(
        root.channel, root.ts, '!template send order_update "Anna S." A-1234'
    )
    await eventually(lambda: world.wa.sent_to(WA_ID), message="the template message")
    [sent] = world.wa.sent_to(WA_ID)
    assert sent["type"] == "template"
    template = sent["template"]
    assert template["name"] == "order_update" and template["language"] == {"code": "en_US"}
    params = [p["text"] for p in template["components"][0]["parameters"]]
    assert params == ["Anna S.", "A-1234"]


async def test_template_command_without_a_name_answers_its_usage(world):
    await world.wa.customer_says(WA_ID, "Hi")
    root = await world.thread_of(WA_ID)
    await world.slack.agent_says(root.channel, root.ts, "!template send")
    await eventually(
        lambda: any("Usage:" in t and "!template send" in t for t in world.texts(root)),
        message="usage",
    )
    assert world.wa.sent_to(WA_ID) == []


async def test_platform_window_refusal_is_explained_with_templates(world):
    # The bridge believed the window open, WhatsApp did not (131047).
    await world.wa.customer_says(WA_ID, "Hi")
    root = await world.thread_of(WA_ID)
    world.wa.fail_next(131047)
    await world.slack.agent_says(root.channel, root.ts, "Here is the answer")
    [notice] = await world.notices(root, "Not sent", message="the explanation")
    assert "order_update" in notice


async def test_customer_photo_becomes_a_slack_file(world):
    await world.wa.customer_sends_media(WA_ID, "image", PNG, "image/png", caption="broken lid")
    root = await world.thread_of(WA_ID)
    post = await world.file_post(root)
    assert "broken lid" in post.text
    assert world.slack.file_bytes(post.files[0]["id"]) == PNG


async def test_agent_file_goes_out_as_whatsapp_media(world):
    await world.wa.customer_says(WA_ID, "Send me the manual")
    root = await world.thread_of(WA_ID)
    await world.slack.agent_says(
        root.channel,
        root.ts,
        "Here it is",
        files=[("manual.pdf", b"%PDF-1.7 manual", "application/pdf")],
    )
    [sent] = await eventually(lambda: world.wa.sent_to(WA_ID), message="the document message")
    assert sent["type"] == "document"
    assert sent["document"]["filename"] == "manual.pdf"
    assert sent["document"]["caption"] == "Here it is"
    data, mime, _ = world.wa.media[sent["document"]["id"]]
    assert data == b"%PDF-1.7 manual" and mime == "application/pdf"


async def test_webhook_retried_for_days_is_mirrored_once(world):
    message = world.wa.text_message(WA_ID, "only once please")
    payload = world.wa.build_payload(messages=[message], contacts=[world.wa.contact(WA_ID)])
    for _ in range(3):
        assert await world.wa.deliver(payload) == 200
    root = await world.thread_of(WA_ID)
    await eventually(lambda: world.texts(root), message="the mirror")
    assert await world.sql("select count(*) from messages") == [(1,)]
    assert world.texts(root) == ["only once please"]


async def test_status_that_overtakes_the_send_answer_is_not_lost(world):
    await world.wa.customer_says(WA_ID, "Hi")
    root = await world.thread_of(WA_ID)
    # WhatsApp reports `delivered` for the wamid before the bridge has recorded it.
    world.wa.report_before_answer = ["delivered"]
    ts = await world.slack.agent_says(root.channel, root.ts, "Fast answer")
    agent_msg = world.slack.find(root.channel, ts)
    await eventually(
        lambda: "ballot_box_with_check" in agent_msg.reactions, message="the delivered mark"
    )
    assert await world.sql("select status from messages where direction='out'") == [("delivered",)]


async def test_throughput_limit_is_waited_out_and_replies_arrive_once_in_order(world):
    await world.wa.customer_says(WA_ID, "Hi")
    root = await world.thread_of(WA_ID)
    world.wa.fail_next(130429, times=2)  # "Rate limit hit": the number's throughput is reached
    for text in ("one", "two", "three"):
        await world.slack.agent_says(root.channel, root.ts, text)
    await eventually(lambda: len(world.wa.sent_to(WA_ID)) >= 3, timeout=20, message="3 sends")
    assert [m["text"]["body"] for m in world.wa.sent_to(WA_ID)] == ["one", "two", "three"]
    assert await world.sql("select status from messages where direction='out'") == [
        ("sent",),
        ("sent",),
        ("sent",),
    ]
