"""Places, taps and stickers from WhatsApp and Messenger customers read well in the thread."""

from __future__ import annotations

import pytest

from tests.fakes.messenger import FakeMessenger
from tests.fakes.whatsapp import FakeWhatsApp
from tests.harness import eventually
from tests.world import start_world, stop_world

WA_ID = "4915112345678"
PSID = "6712345678901234"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(120))


@pytest.fixture
async def wa_world(tmp_path):
    w = await start_world(tmp_path, whatsapp=FakeWhatsApp())
    yield w
    await stop_world(w)


@pytest.fixture
async def fb_world(tmp_path):
    fb = FakeMessenger()
    fb.profiles[PSID] = ("Mia", "Wong")
    w = await start_world(tmp_path, messenger=fb)
    yield w
    await stop_world(w)


async def mirrored(world, chat_id: str) -> list[str]:
    """The customer messages of the customer's thread, once there is one."""
    root = await world.thread_of(chat_id)
    return await eventually(lambda: world.texts(root), message="the mirrored message")


async def test_whatsapp_place_shows_its_name_address_and_map_link(wa_world):
    status = await wa_world.wa.customer_shares_location(
        WA_ID, 52.5162746, 13.3777041, name="Brandenburger Tor", address="Pariser Platz, Berlin"
    )
    assert status == 200
    assert await mirrored(wa_world, WA_ID) == [
        "[location] Brandenburger Tor, Pariser Platz, Berlin · 52.5162746, 13.3777041"
        " https://www.google.com/maps?q=52.5162746,13.3777041"
    ]


async def test_whatsapp_pin_shows_its_map_link(wa_world):
    assert await wa_world.wa.customer_shares_location(WA_ID, -33.8567844, 151.2152967) == 200
    [text] = await mirrored(wa_world, WA_ID)
    assert "https://www.google.com/maps?q=-33.8567844,151.2152967" in text


async def test_whatsapp_tap_on_a_reply_button_shows_its_title(wa_world):
    await wa_world.wa.customer_says(WA_ID, "Where is my parcel?")
    root = await wa_world.thread_of(WA_ID)
    await wa_world.slack.agent_says(root.channel, root.ts, "Shall I send the tracking link?")
    await eventually(lambda: wa_world.wa.sent_to(WA_ID), message="the agent's reply")
    assert await wa_world.wa.customer_taps(WA_ID, "Yes, please", "track-yes") == 200
    # WhatsApp sends the tap with a `context` naming the agent's message: it is quoted above it.
    await eventually(
        lambda: any(text.endswith("Yes, please") for text in wa_world.texts(root)),
        message="the tap",
    )
    [tap] = [text for text in wa_world.texts(root) if text.endswith("Yes, please")]
    assert "Shall I send the tracking link?" in tap


async def test_messenger_quick_reply_shows_the_text_tapped(fb_world):
    assert await fb_world.fb.customer_taps_quick_reply(PSID, "Opening hours", "HOURS") == 200
    assert await mirrored(fb_world, PSID) == ["Opening hours"]


async def test_messenger_button_tap_shows_the_button_title(fb_world):
    assert await fb_world.fb.postback(PSID, "Talk to a person", "HUMAN") == 200
    assert await mirrored(fb_world, PSID) == ["Talk to a person"]


async def test_messenger_sticker_arrives_as_a_picture_with_a_word(fb_world):
    assert await fb_world.fb.customer_sends_sticker(PSID, PNG, 369239263222822) == 200
    root = await fb_world.thread_of(PSID)
    post = await fb_world.file_post(root)
    assert "(sent a sticker: 👍)" in post.text
    assert fb_world.slack.file_bytes(post.files[0]["id"]) == PNG
