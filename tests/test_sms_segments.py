"""SMS segments are counted as carriers count them, and look-alikes become GSM-7 characters."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from bridge.config import SmsAccount
from bridge.types import SMS, AccountId, ChatId, FileData, MediaKind, OutboundMessage
from connectors.sms import SmsConnector
from connectors.sms_text import (
    GSM_BASIC,
    GSM_EXTENSION,
    LOOKALIKES,
    cost_note,
    gsm_lookalikes,
    sms_cost,
)

EMOJI = "\U0001f61c"  # 😜, outside the Basic Multilingual Plane: a surrogate pair in UTF-16


@pytest.mark.parametrize(
    ("body", "encoding", "units", "segments"),
    [
        ("", "GSM-7", 0, 0),
        ("a" * 160, "GSM-7", 160, 1),
        ("a" * 161, "GSM-7", 161, 2),
        ("a" * 306, "GSM-7", 306, 2),
        ("a" * 307, "GSM-7", 307, 3),
        # The figures of Twilio's own segment calculator (TwilioDevEd/message-segment-calculator,
        # tests/index.test.js): an escape character counts two septets.
        ("{" + "2345678901" * 15 + "23456789", "GSM-7", 160, 1),
        ("{" + "2345678901" * 15 + "234567890", "GSM-7", 161, 2),
        ("€" * 80, "GSM-7", 160, 1),
        ("€" * 81, "GSM-7", 162, 2),
        # …and an emoji two UCS-2 code units.
        (EMOJI + "2345678901" * 6 + "23456789", "UCS-2", 70, 1),
        (EMOJI + "2345678901" * 6 + "234567890", "UCS-2", 71, 2),
        ("ж" * 70, "UCS-2", 70, 1),
        ("ж" * 71, "UCS-2", 71, 2),
        ("ж" * 134, "UCS-2", 134, 2),
        ("ж" * 135, "UCS-2", 135, 3),
    ],
)
def test_known_figures(body, encoding, units, segments):
    cost = sms_cost(body)
    assert (cost.encoding, cost.units, cost.segments) == (encoding, units, segments)


def test_an_escape_pair_is_not_cut_between_two_parts():
    # 152 septets, then € (escape + e) would straddle the 153rd: it opens the second part.
    body = "a" * 152 + "€" + "a" * 152
    assert sms_cost(body).units == 306  # two parts of 153 by the count alone
    assert sms_cost(body).segments == 3


def test_a_surrogate_pair_is_not_cut_between_two_parts():
    body = "ж" * 66 + EMOJI + "ж" * 66
    assert sms_cost(body).units == 134
    assert sms_cost(body).segments == 3


def test_one_curly_apostrophe_turns_the_whole_message_into_ucs2():
    body = "It’s ready. " + "a" * 100
    cost = sms_cost(body)
    assert (cost.encoding, cost.segments, cost.unicode_chars) == ("UCS-2", 2, ("’",))
    assert sms_cost(gsm_lookalikes(body)) == sms_cost("It's ready. " + "a" * 100)
    assert sms_cost(gsm_lookalikes(body)).segments == 1


def test_the_gsm_alphabet_has_its_127_characters_and_10_extensions():
    # 128 code points, one of them (0x1B) the escape to the extension table.
    assert len(GSM_BASIC) == 127
    assert len(GSM_EXTENSION) == 10
    assert not GSM_BASIC & GSM_EXTENSION
    assert all(sms_cost(char).encoding == "GSM-7" for char in "@£$¥èéùìòÇØøÅåΔ_ÆæßÉ¤¡§¿à")
    # Lower-case ç, ê and the like are not in the alphabet.
    assert sms_cost("ç").encoding == "UCS-2"


def test_lookalikes_become_gsm_characters():
    written = "“Hello” – it’s here… 10\u00a0am — ‘ok’"
    assert gsm_lookalikes(written) == "\"Hello\" - it's here... 10 am - 'ok'"
    assert sms_cost(gsm_lookalikes(written)).encoding == "GSM-7"
    # Every replacement is GSM-7 itself, and nothing else is touched.
    assert all(sms_cost(value).encoding == "GSM-7" for value in LOOKALIKES.values())
    assert gsm_lookalikes("Grüße 😀 ж") == "Grüße 😀 ж"


def test_one_plain_segment_needs_no_note():
    assert cost_note([sms_cost("See you at 7 pm.")]) is None
    assert cost_note([]) is None


def test_the_note_names_the_segments_and_what_forced_ucs2():
    assert (
        cost_note([sms_cost("a" * 200)]) == "Sent as 2 SMS segments (GSM-7, 153 characters each)."
    )
    single = cost_note([sms_cost("It’s ready")])
    assert single == "Sent as 1 SMS segment in UCS-2 (70 characters instead of 160), because of ’."
    several = cost_note([sms_cost("It’s ready 🎉 " + "a" * 80)])
    assert several is not None
    assert several.startswith("Sent as 2 SMS segments in UCS-2 (67 characters each instead of 153)")
    assert several.endswith("because of ’ 🎉.")


def test_invisible_characters_are_named_by_code_point():
    note = cost_note([sms_cost("a\u200bb")])
    assert note is not None and "U+200B" in note


def test_the_note_adds_up_the_messages_of_a_long_reply():
    note = cost_note([sms_cost("a" * 1600), sms_cost("a" * 10)])
    assert note == "Sent as 12 SMS segments in 2 messages (GSM-7, 153 characters each)."


def _connector(*, lookalikes: bool) -> SmsConnector:
    account = SmsAccount(
        account_sid="AC" + "0" * 32, auth_token=SecretStr("t" * 16), from_number="+15005550006"
    )
    # send_cost reads only the text: no HTTP session, sink or media host is used.
    return SmsConnector(
        account,
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        public_url="https://bridge.example.com",
        webhook=None,
        lookalikes=lookalikes,
    )


def _reply(text: str, *files: FileData) -> OutboundMessage:
    return OutboundMessage(
        platform=SMS,
        account=AccountId("+15005550006"),
        chat_id=ChatId("+1"),
        text=text,
        files=files,
    )


def test_the_connector_counts_what_it_sends():
    assert _connector(lookalikes=False).send_cost(_reply("It’s ready")) is not None
    assert _connector(lookalikes=True).send_cost(_reply("It’s ready")) is None
    # Over Twilio's 1,600 characters the reply goes as two messages, each counted on its own.
    long = ("word " * 400).strip()
    note = _connector(lookalikes=False).send_cost(_reply(long))
    assert note == "Sent as 14 SMS segments in 2 messages (GSM-7, 153 characters each)."


def test_text_that_travels_with_a_picture_is_an_mms_not_segments():
    picture = FileData(kind=MediaKind.IMAGE, filename="a.png", data=b"png", mime_type="image/png")
    assert _connector(lookalikes=False).send_cost(_reply("It’s 📦 " * 30, picture)) is None
