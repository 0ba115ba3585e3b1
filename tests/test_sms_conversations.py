"""SMS customers (Twilio) get a Slack thread; replies, MMS, delivery reports and STOP work."""

from __future__ import annotations

import pytest

from tests.fakes.twilio import FakeTwilio
from tests.harness import eventually
from tests.world import start_world, stop_world

CUSTOMER = "+14155550123"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(120))


@pytest.fixture
async def world(tmp_path):
    w = await start_world(tmp_path, sms=FakeTwilio())
    yield w
    await stop_world(w)


async def test_customer_sms_opens_a_thread_and_the_reply_goes_back_by_sms(world):
    assert await world.sms.customer_texts(CUSTOMER, "Is my table for 4 booked?") == 200
    root = await world.thread_of(CUSTOMER)
    await eventually(lambda: world.texts(root), message="the mirror")
    assert world.texts(root) == ["Is my table for 4 booked?"]
    ts = await world.slack.agent_says(root.channel, root.ts, "Yes, 7 pm tonight.")
    [sent] = await eventually(lambda: world.sms.messages_to(CUSTOMER), message="the SMS")
    assert sent["Body"] == "Yes, 7 pm tonight."
    assert sent["From"] == world.sms.numbers[0]
    assert sent["StatusCallback"] == world.sms.status_url
    agent_msg = world.slack.find(root.channel, ts)
    await eventually(lambda: "white_check_mark" in agent_msg.reactions, message="sent mark")
    assert await world.sms.status(sent["_sid"], "delivered") == 200
    await eventually(
        lambda: "ballot_box_with_check" in agent_msg.reactions, message="the delivered mark"
    )


async def test_undelivered_report_is_explained_in_words(world):
    await world.sms.customer_texts(CUSTOMER, "hi")
    root = await world.thread_of(CUSTOMER)
    await world.slack.agent_says(root.channel, root.ts, "Click here for 50% off")
    [sent] = await eventually(lambda: world.sms.messages_to(CUSTOMER), message="the SMS")
    assert await world.sms.status(sent["_sid"], "undelivered", error_code=30007) == 200
    [notice] = await world.notices(root, "not delivered", message="the notice")
    assert "30007" in notice and "spam" in notice.lower()


async def test_mms_from_the_customer_becomes_a_slack_file(world):
    await world.sms.customer_texts(CUSTOMER, "my receipt", media=[(PNG, "image/png")])
    root = await world.thread_of(CUSTOMER)
    post = await world.file_post(root)
    assert "my receipt" in post.text
    assert world.slack.file_bytes(post.files[0]["id"]) == PNG


async def test_agent_file_is_sent_as_mms_from_a_signed_bridge_url(world):
    await world.sms.customer_texts(CUSTOMER, "send the menu")
    root = await world.thread_of(CUSTOMER)
    await world.slack.agent_says(
        root.channel, root.ts, "Our menu", files=[("menu.png", PNG, "image/png")]
    )
    [sent] = await eventually(lambda: world.sms.messages_to(CUSTOMER), message="the MMS")
    [url] = sent["MediaUrl"]
    assert url.startswith(f"{world.bridge.settings.bridge.public_url}/media/")
    assert sent["_media"] == [(PNG, "image/png")]


async def test_stop_opts_the_customer_out_and_replies_are_refused_until_start(world):
    await world.sms.customer_texts(CUSTOMER, "hello")
    root = await world.thread_of(CUSTOMER)
    await world.sms.customer_texts(CUSTOMER, "STOP")
    await eventually(
        lambda: any("opted out" in t for t in world.texts(root)), message="the opt-out notice"
    )
    [(opted_out,)] = await world.sql("select opted_out_at is not null from contacts")
    assert opted_out
    ts = await world.slack.agent_says(root.channel, root.ts, "Sorry to see you go")
    agent_msg = world.slack.find(root.channel, ts)
    await eventually(lambda: "x" in agent_msg.reactions, message="the refusal mark")
    assert world.sms.messages_to(CUSTOMER) == []
    await world.sms.customer_texts(CUSTOMER, "START")
    await eventually(
        lambda: any("opted in again" in t for t in world.texts(root)), message="the opt-in"
    )
    await world.slack.agent_says(root.channel, root.ts, "Welcome back")
    [sent] = await eventually(lambda: world.sms.messages_to(CUSTOMER), message="the SMS")
    assert sent["Body"] == "Welcome back"


async def test_twilio_21610_marks_the_contact_unsubscribed(world):
    await world.sms.customer_texts(CUSTOMER, "hello")
    root = await world.thread_of(CUSTOMER)
    # The customer opted out with the carrier or on another channel the bridge never saw.
    world.sms.opted_out.add(CUSTOMER)
    await world.slack.agent_says(root.channel, root.ts, "Are you there?")
    await eventually(
        lambda: any("21610" in t or "STOP" in t for t in world.texts(root)),
        message="the failure explained",
    )
    await eventually(
        lambda: any("opted out" in t for t in world.texts(root)), message="the opt-out notice"
    )
    [(opted_out,)] = await world.sql("select opted_out_at is not null from contacts")
    assert opted_out
