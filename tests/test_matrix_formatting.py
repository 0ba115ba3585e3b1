"""What a staff member formats in a Matrix client is read from the HTML they saw, not from the
Markdown source in `body`: the connectors get the staff dialect, mentions as names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bridge.types import StaffEdit, StaffMessage
from connectors.markup import plain, telegram_html
from connectors.matrix_events import parse_event
from connectors.matrix_html import formatted_text
from tests.fakes.telegram_html import parse_html

CORPUS = Path(__file__).parent / "corpus" / "matrix"
ROOM = "!AtyuVyqNFWfJMwlbwR:matrix.org"
ROOT = "$thread-root"


def _in_thread(event: dict) -> dict:
    event = json.loads(json.dumps(event))
    event["content"]["m.relates_to"] = {"rel_type": "m.thread", "event_id": ROOT}
    return event


def _read(event: dict) -> str:
    parsed = parse_event(ROOM, _in_thread(event), "@bridge:example.org")
    assert isinstance(parsed, StaffMessage)
    return parsed.text


def test_the_documented_bold_message_reaches_telegram_in_bold():
    event = json.loads((CORPUS / "message_html_bold.json").read_text())
    text = _read(event)
    assert text == "*This is an example text message*"
    assert telegram_html(text) == "<b>This is an example text message</b>"


@pytest.mark.parametrize(
    ("index", "read", "plain_text"),
    [
        (0, "materials *can* bear", "materials can bear"),
        (1, "_but_ in our daily dealings", "but in our daily dealings"),
        (2, "maxtesting:", "maxtesting:"),
        (3, "new message", "new message"),
    ],
)
def test_captured_messages_read_as_their_author_saw_them(index, read, plain_text):
    events = json.loads((CORPUS / "messages_html_captured.json").read_text())
    text = _read(events[index])
    assert text == read
    assert plain(text) == plain_text


def test_a_reply_fallback_and_a_link_in_html():
    content = {
        "format": "org.matrix.custom.html",
        "formatted_body": (
            '<mx-reply><blockquote><a href="https://matrix.to/#/!r:x/$e">In reply to</a>'
            ' <a href="https://matrix.to/#/@c:x">@c:x</a><br>old</blockquote></mx-reply>'
            'See <a href="https://shop.example/track?id=1&amp;l=de">tracking</a> &amp; returns'
        ),
    }
    assert formatted_text(content) == (
        "See tracking (https://shop.example/track?id=1&l=de) & returns"
    )


def test_an_edit_is_read_from_its_new_html():
    event = {
        "type": "m.room.message",
        "sender": "@agent:example.org",
        "event_id": "$edit",
        "content": {
            "body": "* **fixed**",
            "msgtype": "m.text",
            "m.new_content": {
                "body": "**fixed**",
                "msgtype": "m.text",
                "format": "org.matrix.custom.html",
                "formatted_body": "<strong>fixed</strong>",
            },
            "m.relates_to": {"rel_type": "m.replace", "event_id": "$original"},
        },
    }
    parsed = parse_event(ROOM, event, "@bridge:example.org")
    assert isinstance(parsed, StaffEdit)
    assert parsed.text == "*fixed*"


def test_a_message_without_html_keeps_its_body():
    event = {
        "type": "m.room.message",
        "sender": "@agent:example.org",
        "event_id": "$plain",
        "content": {"body": "2 * 3 = 6", "msgtype": "m.text"},
    }
    assert _read(event) == "2 * 3 = 6"


@pytest.mark.parametrize(
    ("html", "read", "telegram"),
    [
        # mrkdwn styles stay on one line: a bold run over a line break is bold on each line.
        ("<b>a<br>b</b>", "*a*\n*b*", "<b>a</b>\n<b>b</b>"),
        ("<b><br></b>x", "x", "x"),
        # A quote whose line begins with a style is still a quote.
        ("<blockquote><b>a</b> b</blockquote>", "> *a* b", "<blockquote><b>a</b> b</blockquote>"),
        (
            "<blockquote><b>a<br>b</b></blockquote>",
            "> *a*\n> *b*",
            "<blockquote><b>a</b>\n<b>b</b></blockquote>",
        ),
    ],
)
def test_styles_over_line_breaks_and_quotes_reach_telegram_as_formatting(html, read, telegram):
    text = formatted_text({"format": "org.matrix.custom.html", "body": "-", "formatted_body": html})
    assert text == read
    assert telegram_html(text) == telegram


@pytest.mark.parametrize(
    ("html", "read"),
    [
        # mrkdwn styles only whole words: a style inside a word is left out, its letters kept.
        ("9<b>9</b>", "99"),
        ("<b>9</b>9", "99"),
        ("<b>a</b><i>b</i>", "ab"),
        ("<b><i>x</i>y</b>", "*xy*"),
        ("<b><i>x</i></b> y", "*_x_* y"),
        ("9<b><i>9</i></b>", "99"),
        ("<b><i>9</i></b>9", "99"),
        ('<b>9</b><a href="https://example.com/">9</a>', "99 (https://example.com/)"),
        ("<b><b>9</b></b>", "*9*"),
        ("<b><pre>9</pre></b>", "```\n9\n```"),
    ],
)
def test_styles_mrkdwn_cannot_show_leave_no_stray_markers(html, read):
    text = formatted_text({"format": "org.matrix.custom.html", "body": "-", "formatted_body": html})
    assert text == read
    assert not set(parse_html(telegram_html(text)).text) & set("*_~`")
