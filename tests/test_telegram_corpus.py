"""What staff read of each Telegram update in tests/corpus/telegram, through parse_update."""

from __future__ import annotations

import re

import pytest

from bridge.types import TELEGRAM, AccountId, InboundEdit, InboundMessage, MediaKind
from connectors.telegram import parse_update
from connectors.telegram_text import plain_text
from tests.fakes.telegram import CORPUS, load_sample

ACCOUNT = AccountId("123456")
MAP = "https://www.google.com/maps?q=3.14,3.14"

# Sample → the text staff read, and the kind and MIME type of each file they get.
READ: dict[str, tuple[str, list[tuple[MediaKind, str]]]] = {
    "text": ("/start", []),
    "reply": ("/start", []),
    "entities_bold_italic": ("Bold and italics", []),
    "entities_formatting": (
        "Bold italic underline strike spoiler code\nprint('hi')\nQuoted line",
        [],
    ),
    "entities_detected": (
        "@username #hashtag $USD /start@jobs_bot https://telegram.org "
        "do-not-reply@telegram.org +1-212-555-0123",
        [],
    ),
    "entities_text_link": ("Please read the docs (https://aiogram.dev) first", []),
    "entities_text_mention": ("Ask Test about it", []),
    "entities_custom_emoji": ("Thanks 👍 great", []),
    "emoji_before_text_link": ("👋🏾 Hi! Tracking: here (https://telegram.org/faq)", []),
    "emoji_inside_bold": ("test te👍🏿st test", []),
    "audio": ("", [(MediaKind.AUDIO, "audio/mpeg")]),
    "voice": ("", [(MediaKind.AUDIO, "audio/ogg")]),
    "document": ("", [(MediaKind.DOCUMENT, "application/pdf")]),
    "location": (f"[location] 3.14, 3.14 {MAP}", []),
    "venue": (
        "[location] Cupboard Under the Stairs, Under the stairs, 4 Privet Drive, Little "
        f"Whinging, Surrey, England, Great Britain: 3.14, 3.14 {MAP}",
        [],
    ),
    "contact": ("[contact] 911: 911", []),
    "contact_vcard": ("[contact] Ann Lee: +12125550123", []),
    "sticker": ("[sticker]", [(MediaKind.IMAGE, "image/webp")]),
    "sticker_emoji": ("[sticker] 😀", [(MediaKind.IMAGE, "image/webp")]),
    "sticker_animated": ("[sticker] 🎉", []),
    "photo_caption": (
        "The broken part, order details (https://example.com/orders/4711)",
        [(MediaKind.IMAGE, "image/jpeg")],
    ),
}
EDITED = {
    "edited_message": "Edited text",
    "edited_bold": "Order 4321, not 1234",
    "edited_text_link": "Fixed: see the changelog (https://core.telegram.org/bots/api-changelog)",
}
SAMPLES = sorted(path.stem for path in CORPUS.glob("*.json"))
# Read in tests/test_reply_reaction_samples.py, with the other messengers' replies and reactions.
REPLIES_AND_REACTIONS = {
    "message_reaction_added",
    "message_reaction_custom_emoji",
    "message_reaction_removed",
    "message_reply",
}


def test_every_sample_is_read_here_and_named_in_the_readme():
    assert sorted([*READ, *EDITED, *REPLIES_AND_REACTIONS]) == SAMPLES
    readme = (CORPUS / "README.md").read_text(encoding="utf-8")
    assert sorted(re.findall(r"^\| `([a-z_]+)\.json` \|", readme, re.MULTILINE)) == SAMPLES


@pytest.mark.parametrize("name", sorted(READ))
def test_staff_read_each_customer_message_sample(name):
    update = load_sample(name)
    event = parse_update(update, ACCOUNT)
    assert isinstance(event, InboundMessage)
    message = update["message"]
    assert event.platform == TELEGRAM and event.account == ACCOUNT
    assert event.chat_id == str(message["chat"]["id"])
    assert event.external_id == f"{message['chat']['id']}:{message['message_id']}"
    text, files = READ[name]
    assert event.text == text
    assert [(a.kind, a.mime_type) for a in event.attachments] == files


@pytest.mark.parametrize("name", sorted(EDITED))
def test_staff_read_each_edit_sample(name):
    event = parse_update(load_sample(name), ACCOUNT)
    assert isinstance(event, InboundEdit)
    assert event.text == EDITED[name]


def test_the_largest_photo_size_is_the_file_staff_get():
    update = load_sample("photo_caption")
    event = parse_update(update, ACCOUNT)
    assert isinstance(event, InboundMessage)
    [photo] = event.attachments
    assert photo.ref == "file id" and photo.size == 120000


def test_a_voice_note_is_its_file():
    update = load_sample("voice")
    event = parse_update(update, ACCOUNT)
    assert isinstance(event, InboundMessage)
    [voice] = event.attachments
    assert voice.ref == update["message"]["voice"]["file_id"] and voice.size == 23000


def test_text_link_offsets_count_utf16_code_units_not_characters():
    # "👋🏾" is two characters but four UTF-16 code units: the link starts two characters
    # earlier than its offset says.
    text = "👋🏾 Hi! Tracking: here"
    entities = [{"type": "text_link", "offset": 19, "length": 4, "url": "https://t.me/x"}]
    assert len(text[: text.index("here")]) == 17
    assert plain_text(text, entities) == "👋🏾 Hi! Tracking: here (https://t.me/x)"


@pytest.mark.parametrize(
    ("text", "entity", "shown"),
    [
        # A label that is the URL itself is not repeated.
        ("https://telegram.org", {"offset": 0, "length": 20}, "https://telegram.org"),
        ("telegram.org/", {"offset": 0, "length": 13}, "telegram.org/"),
        # A label that says another address shows the real one beside it.
        ("https://bank.example", {"offset": 0, "length": 20}, "https://bank.example (X)"),
        # The URL goes after the words, not after the line break the link ends with.
        ("see here\nthanks", {"offset": 4, "length": 5}, "see here (X)\nthanks"),
        # Ends inside the surrogate pair of an emoji, outside the text, or negative: not a span.
        ("ok 😀", {"offset": 3, "length": 1}, "ok 😀"),
        ("short", {"offset": 2, "length": 10}, "short"),
        ("short", {"offset": -1, "length": 2}, "short"),
        ("short", {"offset": 0, "length": 0}, "short"),
        ("short", {"offset": "0", "length": 5}, "short"),
    ],
)
def test_text_link_edge_cases(text, entity, shown):
    url = "https://telegram.org" if "telegram.org" in text else "X"
    entities = [{"type": "text_link", "url": url, **entity}]
    assert plain_text(text, entities) == shown


def test_overlapping_text_links_keep_the_first_and_the_text():
    entities = [
        {"type": "text_link", "offset": 0, "length": 4, "url": "A"},
        {"type": "text_link", "offset": 2, "length": 4, "url": "B"},
        {"type": "text_link", "offset": 0, "length": 2},  # no url
        {"type": "bold", "offset": 0, "length": 6, "url": "C"},
    ]
    assert plain_text("abcdef", entities) == "abcd (A)ef"


def test_a_location_out_of_range_or_without_longitude_is_no_location():
    update = load_sample("location")
    update["message"]["location"] = {"latitude": 91.0, "longitude": 3.0}
    assert parse_update(update, ACCOUNT) is None
    update["message"]["location"] = {"latitude": 3.0}
    assert parse_update(update, ACCOUNT) is None


def test_coordinates_are_decimals_without_exponents():
    update = load_sample("location")
    update["message"]["location"] = {"latitude": -0.00001, "longitude": 1e-7}
    event = parse_update(update, ACCOUNT)
    assert isinstance(event, InboundMessage)
    assert event.text.startswith("[location] -0.00001, 0 https://www.google.com/maps?q=-0.00001,0")
    assert "e-" not in event.text
