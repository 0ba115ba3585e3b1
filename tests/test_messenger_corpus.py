"""Every Messenger sample of what Meta sends reads as staff should see it in the thread."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from bridge.types import (
    DeliveryStatus,
    InboundEdit,
    InboundMessage,
    MediaKind,
    WatermarkUpdate,
)
from connectors.messenger_events import parse_webhook
from tests.fakes.meta import CORPUS, corpus_sample

# The page of Meta's examples and the page of the captured location payload.
PAGES = {"682498302938465", "228020030589534"}
STICKER = "https://scontent.xx.fbcdn.net/v/t39.1997-6/like_sticker.png?_nc_cat=1&oh=ab&oe=cd"
PIN = "-13.536134, -71.953647 https://www.google.com/maps?q=-13.536134,-71.953647"

# What staff read for each sample: for a message, its text, its files (kind, URL) and the ref
# the person came with; for a delivery or read, the status and its watermark in milliseconds.
# Read in tests/test_reply_reaction_samples.py, with the other messengers' replies and reactions.
REPLIES_AND_REACTIONS = {"reaction_react", "reaction_unreact", "text_reply_to"}

EXPECTED: dict[str, Any] = {
    "text_quick_reply": ("hello, world!", [], None),
    "text_commands": ("find flights from SFO to LAX next Thursday", [], None),
    "attachment_image": (
        "",
        [
            (
                MediaKind.IMAGE,
                "https://scontent.xx.fbcdn.net/v/t1.15752-9/photo_n.jpg?_nc_cat=1&oh=ab&oe=cd",
            )
        ],
        None,
    ),
    "attachment_file": (
        "",
        [
            (
                MediaKind.DOCUMENT,
                "https://cdn.fbsbx.com/v/t59.2708-21/invoice.pdf/invoice.pdf?_nc_cat=1&oh=ab&oe=cd",
            )
        ],
        None,
    ),
    "attachment_sticker": ("(sent a sticker: 👍)", [(MediaKind.IMAGE, STICKER)], None),
    # While Meta sent stickers both ways, one sticker is still one picture.
    "attachment_sticker_transition": ("(sent a sticker: 👍)", [(MediaKind.IMAGE, STICKER)], None),
    "attachment_fallback": (
        "This is where I want to go: https://youtu.be/bbo_fZAjIhg\n"
        "(shared a link: TAHITI - Heaven on Earth https://youtu.be/bbo_fZAjIhg)",
        [],
        None,
    ),
    "attachment_post": (
        "(shared a Facebook post: Our spring collection is here"
        " https://www.facebook.com/682498302938465/posts/1234567890123456)",
        [],
        None,
    ),
    "attachment_location": (f"(shared a location: Pinned Location, {PIN})", [], None),
    "postback": ("TITLE-FOR-THE-CTA", [], "USER-DEFINED-REFERRAL-PARAM"),
    "referral_shortlink": (
        "(opened the chat from the link m.me/…?ref=spring-sale)",
        [],
        "spring-sale",
    ),
    "message_edit": ("edit", "mid.1457764197618:41d102a3e1ae206a38", "hello, world! (edited)"),
    "echo_text": None,  # the page's own message: in the thread already
    "delivery": (DeliveryStatus.DELIVERED, 1458668856253),
    "read": (DeliveryStatus.READ, 1458668856253),
}


def staff_view(event: Any) -> Any:
    """What a thread shows of an event."""
    if isinstance(event, InboundMessage):
        files = [(a.kind, a.ref) for a in event.attachments]
        return (event.text, files, event.start_payload)
    if isinstance(event, InboundEdit):
        return ("edit", event.external_id, event.text)
    assert isinstance(event, WatermarkUpdate)
    return (event.status, round(event.watermark.timestamp() * 1000))


def test_every_sample_in_the_corpus_has_an_expectation():
    names = {path.stem for path in (CORPUS / "messenger").glob("*.json")}
    assert names == set(EXPECTED) | REPLIES_AND_REACTIONS


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sample_reads_as_staff_see_it(name):
    events = parse_webhook(corpus_sample("messenger", name), PAGES)
    expected = EXPECTED[name]
    assert [staff_view(event) for event in events] == ([] if expected is None else [expected])


@pytest.mark.parametrize(
    "name",
    sorted(n for n, e in EXPECTED.items() if e is not None and n not in ("delivery", "read")),
)
def test_sample_keeps_its_sender_page_and_time(name):
    payload = corpus_sample("messenger", name)
    [entry] = payload["entry"]
    [raw] = entry["messaging"]
    [event] = parse_webhook(payload, PAGES)
    assert (event.account, event.chat_id) == (entry["id"], raw["sender"]["id"])
    moment = event.edited_at if isinstance(event, InboundEdit) else event.sent_at
    assert moment == datetime.fromtimestamp(raw["timestamp"] / 1000, tz=UTC)
    content = raw.get("message") or raw.get("postback") or raw.get("message_edit") or {}
    mid = content.get("mid")
    if mid is not None:
        assert event.external_id == mid


def test_a_sample_for_another_page_is_not_read():
    assert parse_webhook(corpus_sample("messenger", "text_quick_reply"), {"1"}) == []


def test_a_shared_reel_reads_as_its_link():
    payload = corpus_sample("messenger", "attachment_post")
    [attachment] = payload["entry"][0]["messaging"][0]["message"]["attachments"]
    attachment.update({"type": "ig_reel", "payload": {"url": "https://www.instagram.com/reel/C1"}})
    [message] = parse_webhook(payload, PAGES)
    assert message.text == "(shared an Instagram reel: https://www.instagram.com/reel/C1)"
