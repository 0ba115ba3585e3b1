"""What an SMS costs: the GSM-7 alphabet, segments as carriers count them, look-alike characters.

A message goes out in GSM-7 (3GPP TS 23.038) when every character is in the default alphabet or
its extension table, and in UCS-2 otherwise, for the whole message. One segment carries 140
octets: 160 GSM-7 septets or 70 UCS-2 code units. A longer message is concatenated, and the
header each part carries leaves 153 septets or 67 code units per part (Twilio, "How long can a
message be?" and "What is UCS-2 character encoding?"). An extension character (`€`, `[`, `{` …)
is an escape plus a septet, so it counts 2; a character outside the Basic Multilingual Plane (most
emoji) is a UTF-16 surrogate pair, 2 code units. Neither pair is cut between two parts, so such a
part may hold one unit less.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

# The GSM 03.38 default alphabet (one septet each), row by row as the table lists it; 0x1B is
# the escape to the extension table and has no character of its own.
GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# The extension table: an escape septet and one more, two septets each.
GSM_EXTENSION = frozenset("\f^{}\\[~]|€")

SINGLE = {"GSM-7": 160, "UCS-2": 70}
PER_PART = {"GSM-7": 153, "UCS-2": 67}

Encoding = Literal["GSM-7", "UCS-2"]

# Characters that look like GSM-7 ones and force UCS-2 on a whole message: typographic quotes
# and apostrophes (what phones and word processors type for ' and "), dashes, the ellipsis and
# the spaces that are not a plain space. Replacing them is what `[sms] gsm_lookalikes` turns on.
LOOKALIKES: Mapping[str, str] = {
    "\u2018": "'",  # ‘ left single quotation mark
    "\u2019": "'",  # ’ right single quotation mark, the typographic apostrophe
    "\u201a": "'",  # ‚ single low-9 quotation mark
    "\u201b": "'",  # ‛ single high-reversed-9 quotation mark
    "\u2032": "'",  # ′ prime
    "\u201c": '"',  # “ left double quotation mark
    "\u201d": '"',  # ” right double quotation mark
    "\u201e": '"',  # „ double low-9 quotation mark
    "\u201f": '"',  # ‟ double high-reversed-9 quotation mark
    "\u2033": '"',  # ″ double prime
    "\u00ab": '"',  # « left-pointing double angle quotation mark
    "\u00bb": '"',  # » right-pointing double angle quotation mark
    "\u2010": "-",  # ‐ hyphen
    "\u2011": "-",  # ‑ non-breaking hyphen
    "\u2012": "-",  # ‒ figure dash
    "\u2013": "-",  # – en dash
    "\u2014": "-",  # — em dash
    "\u2015": "-",  # ― horizontal bar
    "\u2212": "-",  # − minus sign
    "\u2026": "...",  # … horizontal ellipsis
    "\u00a0": " ",  # no-break space
    "\u2007": " ",  # figure space
    "\u2009": " ",  # thin space
    "\u202f": " ",  # narrow no-break space
    "\u200b": "",  # zero-width space: nothing to see, nothing to send
}


def gsm_lookalikes(text: str) -> str:
    """`text` with the look-alike characters replaced by their GSM-7 counterparts."""
    return "".join(LOOKALIKES.get(char, char) for char in text)


def _gsm_units(char: str) -> int | None:
    """Septets for one character, None when GSM-7 cannot carry it."""
    if char in GSM_BASIC:
        return 1
    if char in GSM_EXTENSION:
        return 2
    return None


def _ucs2_units(char: str) -> int:
    return 2 if ord(char) > 0xFFFF else 1


@dataclass(frozen=True, slots=True)
class SmsCost:
    """How one SMS body travels: its encoding, its units and the segments a carrier bills."""

    encoding: Encoding
    units: int  # GSM-7 septets or UCS-2 code units
    segments: int
    # The characters that forced UCS-2, each once, in the order they first appear.
    unicode_chars: tuple[str, ...] = ()


def _pack(units: Iterable[int], per_part: int) -> int:
    """Parts needed for `units` (one entry per character), never cutting a character."""
    parts, used = 1, 0
    for size in units:
        if used + size > per_part:
            parts, used = parts + 1, 0
        used += size
    return parts


def sms_cost(body: str) -> SmsCost:
    """What one SMS body costs, counted as carriers count it."""
    septets = [_gsm_units(char) for char in body]
    if all(size is not None for size in septets):
        sizes = [size for size in septets if size is not None]
        encoding: Encoding = "GSM-7"
        unicode_chars: tuple[str, ...] = ()
    else:
        sizes = [_ucs2_units(char) for char in body]
        encoding = "UCS-2"
        unicode_chars = tuple(
            dict.fromkeys(c for c, s in zip(body, septets, strict=True) if s is None)
        )
    units = sum(sizes)
    if units == 0:
        segments = 0
    elif units <= SINGLE[encoding]:
        segments = 1
    else:
        segments = _pack(sizes, PER_PART[encoding])
    return SmsCost(encoding, units, segments, unicode_chars)


def _shown(char: str) -> str:
    """A character as staff can see it: invisible ones (spaces, marks, controls) as U+XXXX."""
    if unicodedata.category(char)[0] in "ZCM" and char != " ":
        return f"U+{ord(char):04X}"
    return char


def cost_note(costs: Iterable[SmsCost]) -> str | None:
    """Words for staff on what the SMS bodies of one reply cost; None for one plain segment."""
    costs = [cost for cost in costs if cost.segments]
    segments = sum(cost.segments for cost in costs)
    unicode = [cost for cost in costs if cost.encoding == "UCS-2"]
    if segments <= 1 and not unicode:
        return None
    plural = "s" if segments != 1 else ""
    messages = f" in {len(costs)} messages" if len(costs) > 1 else ""
    if not unicode:
        return f"Sent as {segments} SMS segment{plural}{messages} (GSM-7, 153 characters each)."
    chars = list(dict.fromkeys(char for cost in unicode for char in cost.unicode_chars))
    named = " ".join(_shown(char) for char in chars[:5]) + (" …" if len(chars) > 5 else "")
    size = "70 characters" if segments == 1 else "67 characters each"
    return (
        f"Sent as {segments} SMS segment{plural}{messages} in UCS-2 ({size} instead of"
        f" {160 if segments == 1 else 153}), because of {named}."
    )
