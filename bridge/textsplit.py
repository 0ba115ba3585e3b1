"""Cutting a long text into pieces a platform accepts, without losing or breaking a character.

Pieces join back into the exact text: a cut falls after a paragraph break, a line break or a
space when one is near, and never inside a user-perceived character (a base letter and its
combining marks, an emoji ZWJ sequence or modifier, a flag's pair of regional indicators, a
UTF-16 surrogate pair, CR LF), following the grapheme cluster rules of Unicode UAX #29 that
matter for cutting.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable

ZWJ = "\u200d"
# A cut this far back from the most that fits is still worth it for a cleaner boundary.
PREFER_WITHIN = 0.5


def _extends(c: str) -> bool:
    """Whether `c` belongs to the character before it (Extend, SpacingMark, ZWJ, …)."""
    o = ord(c)
    return (
        unicodedata.category(c) in ("Mn", "Me", "Mc")
        or c in (ZWJ, "\u200c")
        or 0xFE00 <= o <= 0xFE0F  # variation selectors
        or 0x1F3FB <= o <= 0x1F3FF  # emoji skin tone modifiers
        or 0xE0020 <= o <= 0xE007F  # emoji tag sequences (subdivision flags)
        or 0xE0100 <= o <= 0xE01EF
        or 0x1160 <= o <= 0x11FF  # Hangul jamo vowels and finals join the syllable before
        or 0xD7B0 <= o <= 0xD7FF
        or 0xDC00 <= o <= 0xDFFF  # a low surrogate kept apart from its pair
    )


def _regional(c: str) -> bool:
    return 0x1F1E6 <= ord(c) <= 0x1F1FF


def can_cut(text: str, at: int) -> bool:
    """Whether `text[:at]` and `text[at:]` keep every user-perceived character whole."""
    if at <= 0 or at >= len(text):
        return True
    before, after = text[at - 1], text[at]
    if before == "\r" and after == "\n":
        return False
    if before == ZWJ or _extends(after):
        return False
    if _regional(before) and _regional(after):
        run = 0
        while at - run - 1 >= 0 and _regional(text[at - run - 1]):
            run += 1
        return run % 2 == 0  # between two flags, not inside one
    return True


def _cut(text: str, most: int) -> int:
    """Where to cut `text` so the first piece has at most `most` code points (at least 1)."""
    floor = max(1, int(most * PREFER_WITHIN))
    window = text[:most]
    for mark in ("\n\n", "\n"):
        found = window.rfind(mark)
        if found >= 0 and found + len(mark) >= floor and can_cut(text, found + len(mark)):
            return found + len(mark)
    for at in range(most, floor - 1, -1):
        if text[at - 1].isspace() and can_cut(text, at):
            return at
    for at in range(most, 0, -1):
        if can_cut(text, at):
            return at
    # One "character" longer than a whole piece (a letter with thousands of combining marks):
    # cut it at a code point rather than lose it.
    return most


def first_piece(text: str, fits: Callable[[str], bool]) -> int:
    """How many code points of `text` its first piece takes: all when it `fits`, else the
    cut `split_text` makes (at least 1)."""
    if fits(text):
        return len(text)
    # Galloping, then halving: the work grows with the piece, not with the whole text.
    low, high = 0, 1  # fits(text[:low]) holds, fits(text[:high]) does not
    while high < len(text) and fits(text[:high]):
        low, high = high, high * 2
    high = min(high, len(text))
    while high - low > 1:
        middle = (low + high) // 2
        if fits(text[:middle]):
            low = middle
        else:
            high = middle
    return _cut(text, max(low, 1))


def split_text(text: str, fits: Callable[[str], bool]) -> list[str]:
    """`text` in pieces that each `fits`, in order; joined they are `text` again.

    `fits` must be monotonic (a prefix of a fitting text fits too). A single code point that
    does not fit is given a piece of its own."""
    pieces: list[str] = []
    rest = text
    while rest:
        at = first_piece(rest, fits)
        pieces.append(rest[:at])
        rest = rest[at:]
    return pieces or [""]
