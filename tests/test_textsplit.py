"""Cutting long texts for the staff thread: nothing lost, nothing broken, every piece fits."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.textsplit import can_cut, split_text

# Letters, spaces, line breaks and the code points that join with their neighbours.
JOINERS = ["\u0301", "\u200d", "\ufe0f", "\U0001f3fd", "\U0001f1e9", "\U0001f1ea", "\r", "\n"]
TEXT = st.text(
    alphabet=st.one_of(st.sampled_from(JOINERS), st.sampled_from(list("ab &<> ")), st.characters()),
    max_size=400,
)


def utf16(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


@settings(max_examples=300, deadline=None)
@given(text=TEXT, limit=st.integers(min_value=1, max_value=120))
def test_pieces_join_back_fit_and_keep_characters_whole(text: str, limit: int) -> None:
    pieces = split_text(text, lambda t: utf16(t) <= limit)
    assert "".join(pieces) == text
    assert all(p for p in pieces) or pieces == [""]
    # A piece is longer than the limit only when it is a single code point.
    assert all(utf16(p) <= limit or len(p) == 1 for p in pieces)
    ends = [sum(len(p) for p in pieces[: i + 1]) for i in range(len(pieces) - 1)]
    # A cut inside a character happens only when the character alone passes the limit.
    for at in ends:
        if not can_cut(text, at):
            start = at
            while start > 0 and not can_cut(text, start):
                start -= 1
            stop = at
            while stop < len(text) and not can_cut(text, stop):
                stop += 1
            assert utf16(text[start:stop]) > limit


def test_a_cut_prefers_a_paragraph_then_a_line_then_a_space() -> None:
    text = "first paragraph\n\nsecond line\nthird words here"
    assert split_text(text, lambda t: len(t) <= 40) == [
        "first paragraph\n\nsecond line\n",
        "third words here",
    ]
    assert split_text("one two three", lambda t: len(t) <= 9) == ["one two ", "three"]


def test_flags_skin_tones_and_families_stay_whole() -> None:
    family = "\U0001f469\u200d\U0001f469\u200d\U0001f467"
    for text in ("\U0001f1e9\U0001f1ea" * 5, "\U0001f44d\U0001f3fd" * 5, family * 3, "e\u0301" * 7):
        cluster = {"\U0001f1e9": 2, "\U0001f44d": 2, "\U0001f469": 5, "e": 2}[text[0]]
        pieces = split_text(text, lambda t, c=cluster: len(t) <= c + 1)
        assert all(len(p) % cluster == 0 for p in pieces), pieces
