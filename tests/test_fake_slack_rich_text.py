"""The fake Slack sends what Slack sends for a message a person writes: the `rich_text` block
beside the `text`, as in the captured samples (tests/corpus/slack); and answers
conversations.info in the documented shape."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from tests.fakes.slack import FakeSlack, as_slack_sends
from tests.fakes.slack_rich import rich_text_of, slack_text_of

CORPUS = Path(__file__).parent / "corpus" / "slack"
CODE = (
    "def is_bot_message(payload: WildValue) -> bool:\n"
    '    app_api_id = payload.get("api_app_id").tame(check_none_or(check_string))\n'
    "    bot_app_id = (\n"
    '        payload.get("event", {})\n'
    '        .get("bot_profile", {})\n'
    '        .get("app_id")\n'
    "        .tame(check_none_or(check_string))\n"
    "    )\n"
    "    return bot_app_id is not None and app_api_id == bot_app_id"
)
# What the author typed, for each sample.
TYPED = {
    "event_message_with_bullet_points.json": "• list three\n• list two",
    "event_message_with_ordered_list.json": (
        "1. point one\n2. point two\n3. mix both\n4. pour water\n5. etc"
    ),
    "event_message_with_code_block.json": f"```{CODE}```",
    "event_message_with_quote_block.json": "> This is a quote",
    "event_message_with_channel_and_user_mentions.json": (
        "<@U074VRHQ11T> <#C06P6T3QGD7|general> message with both channel and user mentions"
    ),
    "event_message_rich_text.json": (
        "<#C043YJGBY49|general> 🐱 <@U043H11ES4V> https://google.com text text text"
    ),
}


def sample_event(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((CORPUS / name).read_text())["event"]
    return event


def comparable(block: dict[str, Any]) -> list[Any]:
    """The block's objects, without the key order and ids that differ between messages."""
    return json.loads(json.dumps(block["elements"], sort_keys=True))


@pytest.mark.parametrize("name", sorted(TYPED))
def test_what_a_person_types_arrives_as_text_and_rich_text_as_in_the_samples(name):
    event = sample_event(name)
    typed = TYPED[name]
    assert as_slack_sends(typed) == event["text"]
    [block] = event["blocks"]
    assert comparable(rich_text_of(typed)) == comparable(block)


@pytest.mark.parametrize(
    "name",
    [
        "event_message_with_bullet_points.json",
        "event_message_with_ordered_list.json",
        "event_message_with_code_block.json",
        "event_message_with_quote_block.json",
        "event_message_with_formatted_texts.json",
        "event_message_with_complex_formatted_texts.json",
        "event_message_with_workspace_mentions.json",
    ],
)
def test_a_given_block_goes_with_the_text_slack_writes_beside_it(name):
    event = sample_event(name)
    [block] = event["blocks"]
    assert slack_text_of(block) == event["text"]


def test_typed_emoji_carry_their_code_points_and_skin_tone_and_custom_ones_only_a_name():
    [section] = rich_text_of("Hi 👋🏽 :+1::skin-tone-3: :partyparrot:")["elements"]
    emoji = [e for e in section["elements"] if e["type"] == "emoji"]
    assert emoji == [
        {"type": "emoji", "name": "wave", "unicode": "1f44b-1f3fd", "skin_tone": 4},
        {"type": "emoji", "name": "+1", "unicode": "1f44d-1f3fc", "skin_tone": 3},
        {"type": "emoji", "name": "partyparrot"},
    ]


def test_typed_styles_become_styled_text():
    [section] = rich_text_of("*Your order* has _shipped_: `AB-12`")["elements"]
    assert section["elements"] == [
        {"type": "text", "text": "Your order", "style": {"bold": True}},
        {"type": "text", "text": " has "},
        {"type": "text", "text": "shipped", "style": {"italic": True}},
        {"type": "text", "text": ": "},
        {"type": "text", "text": "AB-12", "style": {"code": True}},
    ]


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    slack = FakeSlack()
    await slack.start()
    try:
        yield slack
    finally:
        await slack.stop()


async def test_conversations_info_answers_the_channel_object_of_the_documented_answer(fake):
    fake.add_channel("C0SALES", "sales")
    client = AsyncWebClient(token=fake.bot_token, base_url=fake.base_url)
    answer = await client.conversations_info(channel="C0SALES")
    documented = json.loads((CORPUS / "conversations_info.json").read_text())
    assert set(answer["channel"]) >= set(documented["channel"])
    assert answer["channel"]["id"] == "C0SALES"
    assert answer["channel"]["name"] == "sales"
