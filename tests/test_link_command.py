"""/link shows click-to-chat links of every account; `/link qr` posts a printable QR code."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import PIL.Image
import pytest
import zxingcpp

from bridge.types import MediaKind
from tests.commands_kit import AGENT, command, services_of
from tests.fakes.whatsapp import FakeWhatsApp
from tests.world import start_world, stop_world


@pytest.fixture
async def both(tmp_path):
    """Telegram (bot @test_bot) and one WhatsApp number (+4915100000000)."""
    w = await start_world(tmp_path, whatsapp=FakeWhatsApp())
    yield w
    await stop_world(w)


def decoded(png: bytes) -> list[str]:
    """What a QR reader sees in the image."""
    return [result.text for result in zxingcpp.read_barcodes(PIL.Image.open(io.BytesIO(png)))]


async def news_channel(world, keyword: str = "JOIN_NEWS") -> None:
    def write(tx):
        channel = tx.subscriptions.create_channel("news", "UADMIN", datetime.now(UTC))
        tx.subscriptions.update_channel(channel.id, join_keyword=keyword)

    await services_of(world).write(write)


async def test_link_lists_every_configured_account(both):
    reply = await command(both, "link", user=AGENT)
    assert reply.ok and reply.title == "Click-to-chat links"
    assert "*Telegram* `123456`: https://t.me/test_bot" in reply.lines
    assert "*WhatsApp* `1001`: https://wa.me/4915100000000" in reply.lines


async def test_link_with_a_payload_prefills_it_per_platform(both):
    reply = await command(both, "link Hello shop", user=AGENT)
    assert reply.title == "Click-to-chat links with Hello shop"
    assert "*WhatsApp* `1001`: https://wa.me/4915100000000?text=Hello%20shop" in reply.lines
    [telegram] = [line for line in reply.lines if line.startswith("*Telegram*")]
    assert "no link; a Telegram start payload is 1-64 characters" in telegram


async def test_a_channel_name_stands_for_its_join_keyword(world):
    await news_channel(world)
    reply = await command(world, "link telegram news", user=AGENT)
    assert reply.ok
    assert reply.title == "Click-to-chat links with JOIN_NEWS (joins channel news)"
    assert "*Telegram* `123456`: https://t.me/test_bot?start=JOIN_NEWS" in reply.lines


async def test_telegram_keyword_with_other_characters_is_explained(world):
    await news_channel(world, keyword="JOIN NEWS")
    reply = await command(world, "link telegram news", user=AGENT)
    assert not reply.ok
    assert reply.title.startswith(
        "A Telegram start payload is 1-64 characters of A-Z, a-z, 0-9, _ and -, and JOIN NEWS"
    )
    assert "Usage: `/link [platform] [payload…]`" in reply.lines


async def test_link_for_a_platform_without_an_account_says_so(world):
    reply = await command(world, "link whatsapp", user=AGENT)
    assert not reply.ok and reply.title == "No WhatsApp account is configured"


async def test_qr_is_a_png_that_decodes_to_the_link(world):
    reply = await command(world, "link qr telegram JOIN_NEWS", user=AGENT)
    assert reply.ok and reply.public
    assert reply.title == "https://t.me/test_bot?start=JOIN_NEWS"
    file = reply.file
    assert file is not None
    assert (file.kind, file.filename, file.mime_type) == (
        MediaKind.IMAGE,
        "qr-telegram.png",
        "image/png",
    )
    assert file.data.startswith(b"\x89PNG\r\n\x1a\n")
    assert decoded(file.data) == ["https://t.me/test_bot?start=JOIN_NEWS"]


async def test_qr_of_a_named_account_with_prefilled_text(both):
    reply = await command(both, "link qr whatsapp 1001 Hallo, ich möchte bestellen", user=AGENT)
    assert reply.ok
    link = "https://wa.me/4915100000000?text=Hallo%2C%20ich%20m%C3%B6chte%20bestellen"
    assert reply.title == link
    assert reply.file is not None and decoded(reply.file.data) == [link]


async def test_qr_needs_a_platform_it_knows(world):
    reply = await command(world, "link qr fax", user=AGENT)
    assert not reply.ok
    assert reply.title == "Not a platform: fax; choose one of telegram, whatsapp, messenger, sms"
    assert "Example: `/link qr whatsapp Hello, I would like to order`" in reply.lines
    missing = await command(world, "link qr messenger", user=AGENT)
    assert not missing.ok and missing.title == "No Messenger account is configured"
