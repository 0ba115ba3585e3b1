"""Messenger customers get a Slack thread; replies follow Messenger's 24-hour and 7-day rules."""

from __future__ import annotations

import json
import time

import pytest

from tests.fakes.messenger import FakeMessenger
from tests.harness import eventually
from tests.world import start_world, stop_world

PSID = "6712345678901234"
PAGE = "3003"


@pytest.fixture
async def world(tmp_path):
    fb = FakeMessenger()
    fb.profiles[PSID] = ("Mia", "Wong")
    w = await start_world(tmp_path, messenger=fb)
    yield w
    await stop_world(w)


async def wrote_days_ago(world, days: float, text: str = "Anyone there?") -> None:
    """The customer's last message is `days` old."""
    at = time.time() - days * 86400
    world.fb.last_user_message[PSID] = at
    event = {
        "sender": {"id": PSID},
        "recipient": {"id": PAGE},
        "timestamp": int(at * 1000),
        "message": {"mid": f"m_old{int(at)}", "text": text},
    }
    assert await world.fb.deliver(world.fb.webhook_body(PAGE, event)) == 200


async def test_customer_message_opens_a_thread_with_profile_name(world):
    assert await world.fb.customer_says(PSID, "Do you deliver cakes?") == 200
    root = await world.thread_of(PSID)
    assert "Mia Wong" in root.text and "messenger" in root.text
    await eventually(lambda: world.texts(root), message="the mirror")
    assert world.texts(root) == ["Do you deliver cakes?"]


async def test_reply_within_24h_is_a_response(world):
    await world.fb.customer_says(PSID, "Hi")
    root = await world.thread_of(PSID)
    ts = await world.slack.agent_says(root.channel, root.ts, "Yes we do!")
    [sent] = await eventually(lambda: world.fb.messages_to(PSID), message="the send")
    assert sent["messaging_type"] == "RESPONSE" and "tag" not in sent
    assert sent["message"]["text"] == "Yes we do!"
    agent_msg = world.slack.find(root.channel, ts)
    await eventually(lambda: "white_check_mark" in agent_msg.reactions, message="sent mark")


async def test_reply_after_24h_goes_out_with_the_human_agent_tag(world):
    await wrote_days_ago(world, 3)
    root = await world.thread_of(PSID)
    await world.slack.agent_says(root.channel, root.ts, "Sorry, we were closed over the weekend.")
    [sent] = await eventually(lambda: world.fb.messages_to(PSID), message="the tagged send")
    assert sent["messaging_type"] == "MESSAGE_TAG" and sent["tag"] == "HUMAN_AGENT"


async def test_reply_after_7_days_is_refused_with_the_reason(world):
    await wrote_days_ago(world, 8)
    root = await world.thread_of(PSID)
    ts = await world.slack.agent_says(root.channel, root.ts, "Still interested?")
    agent_msg = world.slack.find(root.channel, ts)
    await eventually(lambda: "x" in agent_msg.reactions, message="the refusal mark")
    [notice] = await world.notices(root, "Not sent", message="the reason")
    assert "7 days" in notice
    assert world.fb.messages_to(PSID) == []


async def test_delivery_and_read_watermarks_mark_every_earlier_reply(world):
    await world.fb.customer_says(PSID, "Hi")
    root = await world.thread_of(PSID)
    first = await world.slack.agent_says(root.channel, root.ts, "One")
    second = await world.slack.agent_says(root.channel, root.ts, "Two")
    await eventually(lambda: len(world.fb.messages_to(PSID)) == 2, message="both sends")
    await eventually(
        lambda: "white_check_mark" in world.slack.find(root.channel, second).reactions,
        message="sent marks",
    )
    now_ms = int(time.time() * 1000) + 1000
    assert await world.fb.delivery(PSID, now_ms) == 200
    assert await world.fb.read(PSID, now_ms) == 200
    for ts in (first, second):
        msg = world.slack.find(root.channel, ts)
        await eventually(lambda m=msg: "eyes" in m.reactions, message="the read marks")
        assert "ballot_box_with_check" in msg.reactions
    assert await world.sql("select status from messages where direction='out'") == [
        ("read",),
        ("read",),
    ]


async def test_page_echoes_are_not_mirrored_as_customer_messages(world):
    await world.fb.customer_says(PSID, "Hi")
    root = await world.thread_of(PSID)
    await world.slack.agent_says(root.channel, root.ts, "Hello from the team")
    await eventually(lambda: world.fb.messages_to(PSID), message="the send")
    assert await world.fb.echo(PSID, "Hello from the team") == 200
    assert await world.fb.customer_says(PSID, "thanks") == 200
    await eventually(lambda: "thanks" in world.texts(root), message="the next message")
    assert await world.sql("select direction, text from messages order by id") == [
        ("in", "Hi"),
        ("out", "Hello from the team"),
        ("in", "thanks"),
    ]


async def test_m_me_ref_is_recorded_as_the_opt_in_source(world):
    assert await world.fb.referral(PSID, "flyer-2026") == 200
    root = await world.thread_of(PSID)
    assert "flyer-2026" in json.dumps(root.blocks)
    assert await world.sql("select opt_in_source from contacts") == [("deep link: flyer-2026",)]


async def test_customer_photo_and_agent_file_cross_both_ways(world):
    png = b"\x89PNG\r\n\x1a\n" + bytes(100)
    await world.fb.customer_sends_media(PSID, "image", png, "image/png")
    root = await world.thread_of(PSID)
    post = await world.file_post(root)
    assert world.slack.file_bytes(post.files[0]["id"]) == png
    await world.slack.agent_says(
        root.channel, root.ts, "", files=[("menu.pdf", b"%PDF menu", "application/pdf")]
    )
    [sent] = await eventually(lambda: world.fb.messages_to(PSID), message="the attachment")
    assert sent["message"]["attachment"]["type"] == "file"
    assert sent["filedata"]["data"] == b"%PDF menu"
    assert sent["filedata"]["filename"] == "menu.pdf"
