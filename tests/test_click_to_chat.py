"""Click-to-chat links: one function builds them for every platform."""

from __future__ import annotations

import pytest

from bridge.types import MESSENGER, SMS, TELEGRAM, WHATSAPP
from connectors.chatlinks import chat_link


def test_whatsapp_link_has_digits_only_and_prefilled_text():
    link = chat_link(WHATSAPP, "+49 151-123 4567", "Hallo, ich möchte bestellen & mehr")
    assert link == (
        "https://wa.me/491511234567?text=Hallo%2C%20ich%20m%C3%B6chte%20bestellen%20%26%20mehr"
    )


def test_messenger_link_carries_ref():
    assert chat_link(MESSENGER, "examplebakery", "flyer-2026") == (
        "https://m.me/examplebakery?ref=flyer-2026"
    )


def test_telegram_link_carries_start_payload():
    assert chat_link(TELEGRAM, "@support_bot", "promo_tag") == (
        "https://t.me/support_bot?start=promo_tag"
    )


def test_telegram_payload_outside_its_alphabet_is_refused():
    with pytest.raises(ValueError, match="1-64 characters"):
        chat_link(TELEGRAM, "support_bot", "has spaces")


def test_sms_link_prefills_body():
    assert chat_link(SMS, "+1 415 555 0100", "JOIN news") == "sms:+14155550100?body=JOIN%20news"


def test_links_without_payload_are_plain():
    assert chat_link(WHATSAPP, "4915112345678") == "https://wa.me/4915112345678"
    assert chat_link(SMS, "+14155550100") == "sms:+14155550100"


def test_unknown_platform_is_an_error():
    with pytest.raises(ValueError, match="no click-to-chat link"):
        chat_link("fax", "123")  # type: ignore[arg-type]
