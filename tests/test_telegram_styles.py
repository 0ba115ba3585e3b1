"""A customer's Telegram formatting in the staff dialect: the corpus samples' entities become
Slack's markers where Slack honours them, and no character of the text is ever lost."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.markup import matrix_html, plain
from connectors.telegram_styles import shown_styled, styled_text
from connectors.telegram_text import plain_text
from tests.fakes.telegram import load_sample
from tests.test_telegram_oracle import entities, texts


def sample(name: str) -> dict[str, Any]:
    update = load_sample(name)
    message: dict[str, Any] = update.get("message") or update["edited_message"]
    return message


def entity(kind: str, offset: int, length: int) -> dict[str, Any]:
    return {"type": kind, "offset": offset, "length": length}


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("entities_bold_italic", "*Bold* and _italics_"),
        (
            "entities_formatting",
            "*Bold* _italic_ underline ~strike~ spoiler `code`\n```print('hi')```\n> Quoted line",
        ),
        ("emoji_inside_bold", "test *te👍🏿st* test"),
        ("emoji_before_text_link", "*👋🏾 Hi!* Tracking: here (https://telegram.org/faq)"),
    ],
)
def test_a_samples_styles_become_markers(name, shown):
    assert shown_styled(sample(name)) == shown


@pytest.mark.parametrize(
    "name",
    ["entities_custom_emoji", "entities_detected", "entities_text_mention", "edited_message"],
)
def test_entities_that_only_mark_characters_leave_no_styled_text(name):
    assert shown_styled(sample(name)) is None


def test_the_formatting_sample_reads_in_matrix_as_html():
    assert matrix_html(shown_styled(sample("entities_formatting")) or "") == (
        "<b>Bold</b> <i>italic</i> underline <s>strike</s> spoiler <code>code</code>"
        "<pre>print('hi')</pre><blockquote>Quoted line</blockquote>"
    )


@pytest.mark.parametrize(
    ("text", "spans", "shown"),
    [
        ("bold italic", [("bold", 0, 11), ("italic", 0, 11)], "*_bold italic_*"),
        ("ab cd ef", [("bold", 0, 5), ("italic", 3, 5)], "*ab _cd_* _ef_"),
        ("line one\nline two", [("bold", 0, 17)], "*line one*\n*line two*"),
        (" spaced ", [("bold", 0, 8)], " *spaced* "),
        ("bold `code` more", [("bold", 0, 16), ("code", 5, 6)], "*bold* `code` *more*"),
        ("q1\nq2\nafter", [("blockquote", 0, 5), ("bold", 3, 2)], "> q1\n> *q2*\nafter"),
    ],
    ids=["nested", "overlapping", "multi-line", "spaces-outside", "code-inside", "quote"],
)
def test_nested_and_overlapping_styles_are_written_where_slack_honours_them(text, spans, shown):
    assert styled_text(text, [entity(*span) for span in spans]) == shown


@pytest.mark.parametrize(
    ("text", "spans"),
    [
        ("unbelievable", [("bold", 2, 6)]),  # inside a word: Slack shows the asterisks
        ("x_y", [("bold", 0, 1)]),  # a marker before the customer's own underscore
        ("ab", [("bold", 0, 1), ("italic", 1, 1)]),  # two markers back to back
        ("a ```b``` c", [("pre", 2, 7)]),  # a fence inside the block would end it
    ],
)
def test_a_style_slack_would_not_honour_is_left_out(text, spans):
    assert styled_text(text, [entity(*span) for span in spans]) is None


def is_in_order(needle: str, haystack: str) -> bool:
    rest = iter(haystack)
    return all(char in rest for char in needle)


@given(data=st.data(), text=texts)
def test_every_character_of_the_text_stays_in_order(data, text):
    found = data.draw(entities(text))
    words = plain_text(text, found)
    styled = styled_text(text, found)
    if styled is None:
        return
    assert is_in_order(words, styled)
    # No marker of the bridge's shows: what the parser leaves has no more of them than the text.
    left = plain(styled)
    for marker in "*_~`":
        assert left.count(marker) <= words.count(marker), (styled, left)
