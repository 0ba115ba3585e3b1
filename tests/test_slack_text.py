"""Slack's markup in what staff write, read the way the customer should read it; on samples of
what Slack sends (tests/corpus/slack) and on each piece of markup."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bridge.types import StaffEdit
from connectors.slack_events import parse_event
from connectors.slack_text import command_text, emojize, mentioned_users, readable

CORPUS = Path(__file__).parent / "corpus" / "slack"


def sample(name: str) -> dict[str, Any]:
    return json.loads((CORPUS / name).read_text())


# -- the samples ------------------------------------------------------------------------------


def test_a_message_with_a_channel_an_emoji_a_mention_and_a_link():
    event = sample("event_message_rich_text.json")["event"]
    assert readable(event["text"], {"U043H11ES4V": "Jade"}) == (
        "#general 🐱 @Jade https://google.com text text text"
    )
    # The rich_text block beside the text names the emoji by its code point.
    (emoji,) = (
        element
        for block in event["blocks"]
        for section in block["elements"]
        for element in section["elements"]
        if element["type"] == "emoji"
    )
    assert emojize(f":{emoji['name']}:") == chr(int(emoji["unicode"], 16))


def test_an_edit_whose_text_is_a_link_reaches_the_customer_as_the_url():
    edit = parse_event(sample("event_message_changed_link.json")["event"])
    assert isinstance(edit, StaffEdit)
    assert edit.text == "https://jadeapptesting.slack.com/archives/C043YJGBY49/p1663966292304369"


def test_a_mention_of_a_grid_user_is_their_name_or_their_id():
    text = sample("event_app_mention.json")["event"]["text"]
    assert mentioned_users(text) == ["W111"]
    assert readable(text, {"W111": "Anna Schmidt"}) == "@Anna Schmidt Hi there!"
    assert readable(text) == "@W111 Hi there!"


def test_the_formatting_guides_texts():
    texts = sample("formatting_texts.json")["texts"]
    assert [readable(text) for text in texts] == [
        "Hello & <world> 🌊",
        "Why not join #general?",
        "Hey @bob, did you see my file?",
        "@U024BE7LH",
        "This message contains a URL http://foo.com/",
        "So does this one: http://www.foo.com",
        "Bob (bob@example.com)",
        "Foo @everyone bar http://test.com",
        "Hello @bob, say hi to @everyone in #general",
        "Foo <!everyone> bar http://test.com",
        "@here",
        "<foo>",
        "<label>",
    ]


def test_a_slash_commands_link_arrives_without_its_brackets():
    text = sample("slash_command_escaped_url.json")["text"]
    assert (
        command_text(text)
        == 'add crm always --do "post: https://crm.example.org/hook?src=slack&x=1"'
    )


# -- each piece of markup ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "read"),
    [
        ("<https://example.com/a?b=1&amp;c=2>", "https://example.com/a?b=1&c=2"),
        ("<https://example.com|https://example.com>", "https://example.com"),
        ("<https://www.example.com|www.example.com>", "https://www.example.com"),
        ("<https://example.com/faq|our FAQ>", "our FAQ (https://example.com/faq)"),
        ("<https://example.com|Q&amp;A>", "Q&A (https://example.com)"),
        ("<mailto:a@b.example|a@b.example>", "a@b.example"),
        ("<mailto:a@b.example>", "a@b.example"),
        ("<mailto:a@b.example|Write us>", "Write us (a@b.example)"),
        ("<tel:+4930123456|+49 30 123456>", "+49 30 123456"),
        ("<tel:+4930123456>", "+4930123456"),
        ("<#C0123|support>", "#support"),
        ("<#C0123>", "#channel"),
        ("<!here>", "@here"),
        ("<!channel>", "@channel"),
        ("<!everyone>", "@everyone"),
        ("<!subteam^S0123|@support-team>", "@support-team"),
        ("<!subteam^S0123>", "@S0123"),
        (
            "<!date^1392734382^{date_num} {time_secs}|2014-02-18 6:39:42 AM PST>",
            "2014-02-18 6:39:42 AM PST",
        ),
        ("<@U0ANNA|anna>", "@anna"),
        ("<@U0ANNA>", "@U0ANNA"),
        ("1 &lt; 2 &amp;&amp; 3 &gt; 2", "1 < 2 && 3 > 2"),
        # Unescaped once: what the author typed as "&lt;" stays as typed.
        ("&amp;lt;b&amp;gt;", "&lt;b&gt;"),
        ("&lt;https://example.com&gt;", "<https://example.com>"),
        ("&lt;@U0ANNA&gt;", "<@U0ANNA>"),
    ],
)
def test_markup_reads_as_words(sent, read):
    assert readable(sent) == read


def test_a_mention_shows_the_display_name_when_it_is_known():
    assert readable("Ask <@U0ANNA|anna> or <@U0MAX>", {"U0ANNA": "Anna S.", "U0MAX": "Max"}) == (
        "Ask @Anna S. or @Max"
    )


@pytest.mark.parametrize(
    ("sent", "read"),
    [
        ("Thanks :+1: :thumbsup:", "Thanks 👍 👍"),
        (":slightly_smiling_face: :white_check_mark: :heart:", "🙂 ✅ ❤️"),
        (":+1::skin-tone-3:", "👍🏼"),
        (":wave::skin-tone-6:", "👋🏿"),
        (":point_up::skin-tone-2:", "☝🏻"),
        (":flag-de:", "🇩🇪"),
        (":partyparrot: and :smile:", ":partyparrot: and 😄"),
        (":partyparrot::skin-tone-2:", ":partyparrot::skin-tone-2:"),
        ("at 10:30:00 :smile:", "at 10:30:00 😄"),
        ("ab:custom:smile:", "ab:custom😄"),
    ],
)
def test_emoji_codes_become_unicode_and_custom_ones_stay(sent, read):
    assert readable(sent) == read


def test_a_command_line_keeps_mentions_for_the_command_and_loses_the_link_brackets():
    line = (
        "role <@U0ANNA|anna> manager <https://example.com/x?a=1&amp;b=2|example.com/x>"
        " <mailto:a@b.example|a@b.example> <#C0123|support> :tada:"
    )
    assert command_text(line) == (
        "role <@U0ANNA|anna> manager https://example.com/x?a=1&b=2 a@b.example #support 🎉"
    )


def test_text_without_markup_is_as_it_was():
    for text in ("", "Hello", "a > b", "50% off — today only", "@anna #12"):
        assert readable(text) == text
        assert command_text(text) == text
