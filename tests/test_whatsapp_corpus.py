"""Every WhatsApp sample of what Meta sends reads as staff should see it in the thread."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import pytest

from bridge.types import DeliveryStatus, InboundMessage, MediaKind, StatusUpdate
from connectors.whatsapp_events import parse_webhook
from tests.fakes.meta import CORPUS, corpus_sample

# The phone number ids of the samples: Meta's reference pages and the template page.
NUMBERS = {"106540352242922", "1234567890"}

# What staff read for each sample: for a message, who wrote it, its text and its files
# (kind, media id, file name, MIME type); for a status, the status, code and reason.
# Read in tests/test_reply_reaction_samples.py, with the other messengers' replies and reactions.
REPLIES_AND_REACTIONS = {"reaction_added", "reaction_removed", "text_reply_context"}

EXPECTED: dict[str, Any] = {
    "text": ("Sheena Nelson", "Does it come in another color?", []),
    "text_click_to_whatsapp_ad": ("Sheena Nelson", "Can I get more info about this?", []),
    "location": (
        "Sheena Nelson",
        "[location] Philz Coffee, 101 Forest Ave, Palo Alto, CA 94301"
        " · 37.442215, -122.1616592 https://www.google.com/maps?q=37.442215,-122.1616592"
        " · https://philzcoffee.com/",
        [],
    ),
    "contacts": ("Sheena Nelson", "[contact] Barbara J. Johnson: +1 (415) 555-0829", []),
    "interactive_button_reply": ("Sheena Nelson", "Cancel", []),
    "interactive_list_reply": ("Sheena Nelson", "Priority Mail Express", []),
    "button_template_quick_reply": ("John", "I didn't request a code", []),
    "image": (
        "Sheena Nelson",
        "Taj Mahal",
        [(MediaKind.IMAGE, "1003383421387256", None, "image/jpeg")],
    ),
    "document": (
        "Sheena Nelson",
        "my receipt",
        [(MediaKind.DOCUMENT, "622684793477189", "receipt.pdf", "application/pdf")],
    ),
    "audio_voice": (
        "Sheena Nelson",
        "",
        [(MediaKind.AUDIO, "1908647269898587", None, "audio/ogg; codecs=opus")],
    ),
    "video": (
        "Sheena Nelson",
        "A succulent eclipse!",
        [(MediaKind.VIDEO, "1166846181421424", None, "video/mp4")],
    ),
    "sticker": (
        "Sheena Nelson",
        "[sticker]",
        [(MediaKind.IMAGE, "1908647269898587", None, "image/webp")],
    ),
    "status_sent": (DeliveryStatus.SENT, None, None),
    "status_delivered": (DeliveryStatus.DELIVERED, None, None),
    "status_read": (DeliveryStatus.READ, None, None),
    "status_failed": (
        DeliveryStatus.FAILED,
        "131049",
        "Meta did not deliver this marketing message to keep engagement healthy",
    ),
    # Staff learn the customer wrote something they cannot see.
    "unsupported": (
        "Sheena Nelson",
        "[unsupported message (edit): WhatsApp does not support this message type]",
        [],
    ),
    # A system error about the number: no conversation's event, a line in the log.
    "errors_rate_limit": None,
}


def staff_view(event: Any) -> Any:
    """What a thread shows of an event."""
    if isinstance(event, InboundMessage):
        files = [(a.kind, a.ref, a.filename, a.mime_type) for a in event.attachments]
        return (event.profile.display_name, event.text, files)
    assert isinstance(event, StatusUpdate)
    return (event.status, event.code, event.reason)


def test_every_sample_in_the_corpus_has_an_expectation():
    names = {path.stem for path in (CORPUS / "whatsapp").glob("*.json")}
    assert names == set(EXPECTED) | REPLIES_AND_REACTIONS


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sample_reads_as_staff_see_it(name):
    events = parse_webhook(corpus_sample("whatsapp", name), NUMBERS)
    expected = EXPECTED[name]
    assert [staff_view(event) for event in events] == ([] if expected is None else [expected])


@pytest.mark.parametrize("name", sorted(n for n, e in EXPECTED.items() if e is not None))
def test_sample_keeps_its_ids_and_time(name):
    payload = corpus_sample("whatsapp", name)
    value = payload["entry"][0]["changes"][0]["value"]
    [raw] = value.get("messages") or value["statuses"]
    [event] = parse_webhook(payload, NUMBERS)
    assert event.external_id == raw["id"]
    assert event.account == value["metadata"]["phone_number_id"]
    moment = event.sent_at if isinstance(event, InboundMessage) else event.at
    assert moment == datetime.fromtimestamp(int(raw["timestamp"]), tz=UTC)
    if isinstance(event, InboundMessage):
        assert event.chat_id == raw["from"]


def test_error_notification_is_logged_with_its_code_and_words(caplog):
    with caplog.at_level(logging.WARNING, logger="connectors.whatsapp_events"):
        assert parse_webhook(corpus_sample("whatsapp", "errors_rate_limit"), NUMBERS) == []
    [record] = caplog.records
    assert "106540352242922" in record.getMessage()
    assert "130429" in record.getMessage()
    assert "throughput limit" in record.getMessage()


def test_a_pin_without_a_name_reads_as_its_point_and_map_link():
    payload = corpus_sample("whatsapp", "location")
    location = payload["entry"][0]["changes"][0]["value"]["messages"][0]["location"]
    for key in ("name", "address", "url"):
        del location[key]
    [event] = parse_webhook(payload, NUMBERS)
    assert event.text == (
        "[location] 37.442215, -122.1616592 https://www.google.com/maps?q=37.442215,-122.1616592"
    )


def test_a_shared_contact_without_formatted_name_or_written_number_is_still_named():
    payload = corpus_sample("whatsapp", "contacts")
    [card] = payload["entry"][0]["changes"][0]["value"]["messages"][0]["contacts"]
    del card["name"]["formatted_name"], card["phones"][0]["phone"]
    [event] = parse_webhook(payload, NUMBERS)
    assert event.text == "[contact] Barbara Johnson: +14125550829"
