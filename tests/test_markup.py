"""Staff's mrkdwn in each messenger's own formatting: Telegram's HTML, plain text elsewhere."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.markup import plain, telegram_html
from tests.fakes.telegram_html import parse_html


@pytest.mark.parametrize(
    ("written", "html", "shown"),
    [
        ("*bold* and _it_ and ~gone~", "<b>bold</b> and <i>it</i> and <s>gone</s>", None),
        ("*bold _both_*", "<b>bold <i>both</i></b>", "bold both"),
        ("use `x < y` now", "use <code>x &lt; y</code> now", "use x < y now"),
        ("```\nif a < b:\n    go()\n```", "<pre>if a &lt; b:\n    go()</pre>", None),
        ("> as you wrote\n> twice\nyes", "<blockquote>as you wrote\ntwice</blockquote>\nyes", None),
        ("Q&A <here>", "Q&amp;A &lt;here&gt;", "Q&A <here>"),
        ("end *bold*.", "end <b>bold</b>.", "end bold."),
    ],
)
def test_slack_markers_become_telegram_tags(written, html, shown):
    assert telegram_html(written) == html
    parsed = parse_html(html)
    if shown is not None:
        assert parsed.text == shown


@pytest.mark.parametrize(
    "written",
    [
        "snake_case_name and __init__",
        "5 * 3 = 15, a*b*c",
        "* a list item\n* another",
        "• bullet\n1. first",
        "*not closed",
        "*spaced *",
        "**markdown bold**",
        ":) ~ approx ~",
    ],
)
def test_what_only_looks_like_a_marker_stays_as_typed(written):
    assert parse_html(telegram_html(written)).text == written
    assert plain(written) == written


def test_plain_text_drops_the_markers_and_keeps_the_words_and_quotes():
    written = "*Order* _shipped_: `AB-12`\n> your question\n```\nline 1\nline 2\n```"
    assert plain(written) == "Order shipped: AB-12\n> your question\nline 1\nline 2"


def _words(text: str) -> str:
    return re.sub(r"[\s*_~`>]", "", text)


@given(st.text(alphabet=st.sampled_from("ab <>&*_~`>\n\u00e9\U0001f44d"), max_size=60))
def test_telegram_accepts_every_conversion_and_no_visible_text_is_lost(written):
    # Telegram refuses HTML it cannot parse: every conversion must parse, and show the words.
    shown = parse_html(telegram_html(written)).text
    assert _words(shown) == _words(written)
    assert _words(plain(written)) == _words(written)


@given(st.text(max_size=80))
def test_any_text_converts_to_html_telegram_accepts(written):
    parse_html(telegram_html(written))


@pytest.mark.parametrize(
    "written",
    [
        "https://en.wikipedia.org/wiki/_Underscore_",
        "read 9 (https://example.com/~user/~) and https://example.com/~user/~",
        "https://example.com/*star* & more",
    ],
)
def test_a_links_underscores_asterisks_and_tildes_stay_in_it(written):
    assert parse_html(telegram_html(written)).text == written
    assert plain(written) == written


def test_a_style_around_a_link_is_still_read():
    assert telegram_html("_see https://x.y/a_b_ now") == "<i>see https://x.y/a_b</i> now"
    assert telegram_html("*see https://x.y/*") == "<b>see https://x.y/</b>"


def test_a_style_right_after_a_link_in_parentheses_is_read():
    assert telegram_html("see (https://x.y/a_b)*now*") == "see (https://x.y/a_b)<b>now</b>"
