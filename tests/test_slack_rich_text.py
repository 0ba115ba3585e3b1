"""A Slack message is read from its rich_text block when it has exactly one that reads, and
then reads as its text would; each element type of the block, on samples of what Slack sends
(tests/corpus/slack) and on each piece."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from bridge.types import StaffEdit, StaffMessage
from connectors.slack_events import message_words, parse_event
from connectors.slack_rich import rich_block, rich_mentions, rich_readable
from connectors.slack_text import readable

CORPUS = Path(__file__).parent / "corpus" / "slack"
NAMES = {"U043H11ES4V": "Jade", "U074VRHQ11T": "Max"}
CHANNELS = {"C043YJGBY49": "general", "C06P6T3QGD7": "general"}
BOTH = [
    "event_message_rich_text.json",
    "event_message_changed_link.json",
    "event_message_with_formatted_texts.json",
    "event_message_with_complex_formatted_texts.json",
    "event_message_with_bullet_points.json",
    "event_message_with_ordered_list.json",
    "event_message_with_code_block.json",
    "event_message_with_quote_block.json",
    "event_message_with_channel_and_user_mentions.json",
    "event_message_with_workspace_mentions.json",
]


def sample(name: str) -> dict[str, Any]:
    return json.loads((CORPUS / name).read_text())


def message_of(name: str) -> dict[str, Any]:
    event = sample(name)["event"]
    return event["message"] if event.get("subtype") == "message_changed" else event


def block(*objects: dict[str, Any]) -> dict[str, Any]:
    return {"type": "rich_text", "block_id": "b1", "elements": list(objects)}


def section(*elements: dict[str, Any]) -> dict[str, Any]:
    return {"type": "rich_text_section", "elements": list(elements)}


def text(words: str, **style: bool) -> dict[str, Any]:
    return {"type": "text", "text": words, **({"style": style} if style else {})}


def read(*elements: dict[str, Any]) -> str | None:
    return rich_readable(block(section(*elements)), NAMES, CHANNELS)


# -- the samples ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", BOTH)
def test_a_sample_reads_the_same_from_its_rich_text_and_from_its_text(name):
    message = message_of(name)
    found = rich_block(message)
    assert found is not None
    from_rich = rich_readable(found, NAMES, CHANNELS)
    assert from_rich is not None
    assert from_rich == readable(message["text"], NAMES, CHANNELS)


def test_the_samples_read_as_they_were_written():
    read_back = {
        name: rich_readable(rich_block(message_of(name)), NAMES, CHANNELS) for name in BOTH
    }
    assert read_back["event_message_with_formatted_texts.json"] == (
        "*Bold text* _italic text_ ~strikethrough~"
    )
    assert read_back["event_message_with_bullet_points.json"] == "• list three\n• list two"
    assert read_back["event_message_with_ordered_list.json"].startswith("1. point one\n2. point")
    assert read_back["event_message_with_quote_block.json"] == "> This is a quote"
    assert read_back["event_message_with_code_block.json"].startswith(
        "```def is_bot_message(payload: WildValue) -> bool:\n"
    )
    assert read_back["event_message_with_channel_and_user_mentions.json"] == (
        "@Max #general message with both channel and user mentions"
    )
    assert read_back["event_message_with_workspace_mentions.json"].startswith("@channel @here ")
    assert read_back["event_message_with_workspace_mentions.json"].endswith(" 🙇")


def test_the_ids_a_block_mentions_are_looked_up():
    found = rich_block(message_of("event_message_with_channel_and_user_mentions.json"))
    assert found is not None
    assert rich_mentions(found) == (["U074VRHQ11T"], ["C06P6T3QGD7"])


# -- preferred to the text --------------------------------------------------------------------

FAMILY = {
    "type": "emoji",
    "name": "man-woman-girl-boy",
    "unicode": "1f468-200d-1f469-200d-1f467-200d-1f466",
}


def with_family(event: dict[str, Any]) -> dict[str, Any]:
    """The sample with Slack's own name of an emoji that only its code points tell."""
    event = copy.deepcopy(event)
    event["text"] = "Hi :man-woman-girl-boy:"
    event["thread_ts"] = "1670625000.000100"
    event["blocks"] = [block(section(text("Hi "), FAMILY))]
    return event


def test_a_message_reads_from_its_rich_text_where_its_text_only_names_an_emoji():
    event = with_family(sample("event_message_rich_text.json")["event"])
    assert readable(event["text"]) == "Hi :man-woman-girl-boy:"
    parsed = parse_event(event)
    assert isinstance(parsed, StaffMessage)
    assert parsed.text == "Hi 👨‍👩‍👧‍👦"


def test_an_edit_reads_from_the_new_rich_text():
    event = copy.deepcopy(sample("event_message_changed_link.json")["event"])
    event["message"] = with_family(event["message"])
    parsed = parse_event(event)
    assert isinstance(parsed, StaffEdit)
    assert parsed.text == "Hi 👨‍👩‍👧‍👦"


def test_a_message_with_more_blocks_or_an_unknown_element_reads_from_its_text():
    message = with_family(sample("event_message_rich_text.json")["event"])
    message["blocks"].append({"type": "divider"})
    assert message_words(message) == "Hi :man-woman-girl-boy:"
    message = with_family(message)
    message["blocks"][0]["elements"][0]["elements"].append(
        # slack-web's tests: MercuryTechnologies/slack-web, message_rich_text_containers.json
        {"type": "message_mention", "channel_id": "C123ABC456", "message_ts": "1720710250.0"}
    )
    assert message_words(message) == "Hi :man-woman-girl-boy:"


def test_a_user_group_reads_from_the_text_which_names_its_handle():
    message = {
        "text": "Ask <!subteam^S0SUP|@support>",
        "blocks": [block(section(text("Ask "), {"type": "usergroup", "usergroup_id": "S0SUP"}))],
    }
    assert message_words(message) == "Ask @support"


# -- each element -----------------------------------------------------------------------------


def test_styles_hug_their_words_and_nest_as_slack_writes_them():
    assert read(text("Your order", bold=True), text(" has "), text("shipped", italic=True)) == (
        "*Your order* has _shipped_"
    )
    assert read(text("gone ", strike=True), text("AB-12", code=True)) == "~gone~ `AB-12`"
    assert read(text("all", bold=True, italic=True, strike=True)) == "~_*all*_~"
    assert read(text(" ", bold=True)) == " "


def test_neighbours_in_one_style_share_their_markers():
    link = {"type": "link", "url": "https://example.com", "style": {"bold": True}}
    assert read(text("see ", bold=True), link) == "*see https://example.com*"


@pytest.mark.parametrize(
    ("link", "shown"),
    [
        (
            {"url": "https://example.com/faq", "text": "our FAQ"},
            "our FAQ (https://example.com/faq)",
        ),
        ({"url": "https://example.com/faq"}, "https://example.com/faq"),
        ({"url": "https://example.com", "text": "example.com"}, "https://example.com"),
        ({"url": "mailto:a@b.example", "text": "a@b.example"}, "a@b.example"),
        ({"url": "mailto:a@b.example", "text": "Write us"}, "Write us (a@b.example)"),
        ({"url": "tel:+4930123456", "text": "+49 30 123456"}, "+49 30 123456"),
    ],
)
def test_a_link_shows_its_label_and_its_url(link, shown):
    assert read({"type": "link", **link}) == shown


@pytest.mark.parametrize(
    ("element", "shown"),
    [
        ({"name": "cat", "unicode": "1f431"}, "🐱"),
        ({"name": "+1", "unicode": "1f44d-1f3fc", "skin_tone": 3}, "👍🏼"),
        ({"name": "wave", "unicode": "1f44b", "skin_tone": 6}, "👋🏿"),
        ({"name": "point_up", "unicode": "261d-fe0f", "skin_tone": 2}, "☝🏻"),
        ({"name": "wave::skin-tone-2"}, "👋🏻"),
        ({"name": "basketball"}, "🏀"),
        ({"name": "partyparrot"}, ":partyparrot:"),
        (FAMILY, "👨‍👩‍👧‍👦"),
    ],
)
def test_an_emoji_is_its_code_points_and_a_custom_one_its_name(element, shown):
    assert read({"type": "emoji", **element}) == shown


def test_mentions_show_names_where_known():
    assert read({"type": "user", "user_id": "U043H11ES4V"}) == "@Jade"
    assert read({"type": "user", "user_id": "U0NOBODY"}) == "@U0NOBODY"
    assert read({"type": "channel", "channel_id": "C043YJGBY49"}) == "#general"
    assert read({"type": "channel", "channel_id": "C0UNKNOWN"}) == "#channel"


def test_broadcasts_and_dates_read_as_the_text_reads_them():
    for who in ("here", "channel", "everyone"):
        assert read({"type": "broadcast", "range": who}) == f"@{who}"
        assert readable(f"<!{who}>") == f"@{who}"
    date = {"type": "date", "timestamp": 1392734382, "format": "{date_num}", "fallback": "Feb 18"}
    assert read(date) == "Feb 18"


def test_lists_keep_their_markers_indents_and_numbers():
    items = [section(text("one")), section(text("two", bold=True))]
    nested = {"type": "rich_text_list", "style": "bullet", "indent": 1, "elements": [items[0]]}
    bullets = {"type": "rich_text_list", "style": "bullet", "indent": 0, "elements": items}
    assert rich_readable(block(section(text("Steps:")), bullets, nested)) == (
        "Steps:\n• one\n• *two*\n    ◦ one"
    )
    ordered = {"type": "rich_text_list", "style": "ordered", "offset": 2, "elements": items}
    assert rich_readable(block(ordered)) == "3. one\n4. *two*"


def test_a_code_block_and_a_quote():
    code = {
        "type": "rich_text_preformatted",
        "elements": [text("curl "), {"type": "link", "url": "https://example.com"}],
    }
    quote = {"type": "rich_text_quote", "elements": [text("first\nsecond")]}
    assert rich_readable(block(code, quote, section(text("after")))) == (
        "```curl https://example.com```\n> first\n> second\nafter"
    )


def test_a_quote_may_hold_its_lines_as_sections():
    quote = {"type": "rich_text_quote", "elements": [section(text("quoted", italic=True))]}
    assert rich_readable(block(quote)) == "> _quoted_"


def test_a_section_ending_its_line_is_not_followed_by_an_empty_one():
    items = {"type": "rich_text_list", "style": "bullet", "elements": [section(text("a"))]}
    assert rich_readable(block(section(text("List:\n")), items)) == "List:\n• a"


def test_a_block_of_another_shape_does_not_read():
    assert rich_readable({"type": "rich_text"}) is None
    assert rich_readable(block({"type": "rich_text_section", "elements": "x"})) is None
    assert rich_readable(block(section({"type": "text", "text": 5}))) is None
    assert rich_readable(block(section({"type": "emoji", "name": "x", "unicode": "zz"}))) is None
    assert rich_block({"blocks": [{"type": "section"}]}) is None
    assert rich_block({"text": "no blocks"}) is None
