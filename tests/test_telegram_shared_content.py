"""What Telegram customers send beyond plain text reaches the Slack thread readable: a
text link's URL, a location's map link, a contact's number, a sticker's emoji, a voice note's
file. The updates are corpus samples (tests/corpus/telegram) made this customer's."""

from __future__ import annotations

import pytest

from tests.harness import eventually

pytestmark = pytest.mark.parametrize(
    "world", [("webhook", "http")], indirect=True, ids=["webhook+http"]
)


async def thread_texts(world, sample: str, chat_id: int) -> list[str]:
    """The customer sends a sample; the texts of their thread once it shows the message."""
    await world.customer(world.tg.sample_update(sample, chat_id, first_name="Ann"))
    root = await world.thread_of(chat_id)
    texts: list[str] = await eventually(lambda: world.texts(root), message="the message")
    return texts


async def test_a_text_link_shows_its_url_in_the_thread(world):
    texts = await thread_texts(world, "entities_text_link", 501)
    assert texts == ["Please read the docs (https://aiogram.dev) first"]


async def test_a_text_link_after_an_emoji_keeps_its_label_whole(world):
    texts = await thread_texts(world, "emoji_before_text_link", 502)
    assert texts == ["*👋🏾 Hi!* Tracking: here (https://telegram.org/faq)"]


async def test_a_location_shows_a_map_link(world):
    [text] = await thread_texts(world, "location", 503)
    assert text == "[location] 3.14, 3.14 https://www.google.com/maps?q=3.14,3.14"


async def test_a_shared_contact_shows_name_and_number(world):
    texts = await thread_texts(world, "contact_vcard", 504)
    assert texts == ["[contact] Ann Lee: +12125550123"]


async def test_a_sticker_shows_its_emoji_and_its_image(world):
    webp = b"RIFF\x10\x00\x00\x00WEBPVP8 sticker"
    await world.customer(world.tg.sample_update("sticker_emoji", 505, data=webp))
    post = await world.file_post(await world.thread_of(505))
    assert "[sticker] 😀" in post.text
    assert world.slack.file_bytes(post.files[0]["id"]) == webp


async def test_a_voice_note_arrives_as_its_file(world):
    ogg = b"OggS\x00\x02voice"
    await world.customer(world.tg.sample_update("voice", 506, data=ogg))
    post = await world.file_post(await world.thread_of(506))
    assert world.slack.file_bytes(post.files[0]["id"]) == ogg
    assert post.files[0]["name"].endswith(".ogg")
