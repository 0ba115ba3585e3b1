"""The platforms' documented reply and reaction payloads (tests/corpus) read by the parsers:
which message a reply answers, and the customer's reactions on a message after the change."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bridge.types import AccountId, InboundMessage, InboundReaction, ReactionChange
from connectors.messenger_events import parse_webhook as parse_messenger
from connectors.slack_reactions import reaction_line, slack_name
from connectors.telegram import ALLOWED_UPDATES, parse_update
from connectors.whatsapp_events import parse_webhook as parse_whatsapp

CORPUS = Path(__file__).parent / "corpus"
WA_NUMBER = "106540352242922"
PAGE = "1234567890"
BOT = AccountId("123456")


def sample(name: str) -> Any:
    return json.loads((CORPUS / name).read_text(encoding="utf-8"))


def test_a_whatsapp_reaction_and_its_removal():
    [added] = parse_whatsapp(sample("whatsapp/reaction_added.json"), {WA_NUMBER})
    [removed] = parse_whatsapp(sample("whatsapp/reaction_removed.json"), {WA_NUMBER})
    target = "wamid.HBgLMTQxMjU1NTA4MjkVAgASGBQzQUNCNjk5RDUwNUZGMUZEM0VBRAA="
    assert isinstance(added, InboundReaction) and isinstance(removed, InboundReaction)
    assert (added.chat_id, added.target, added.emoji) == ("16505551234", target, ("👍",))
    assert (removed.target, removed.emoji) == (target, ())


def test_a_reaction_longer_than_any_emoji_is_not_kept():
    payload = sample("whatsapp/reaction_added.json")
    message = payload["entry"][0]["changes"][0]["value"]["messages"][0]
    message["reaction"]["emoji"] = "<!channel> " * 1000
    [reaction] = parse_whatsapp(payload, {WA_NUMBER})
    assert isinstance(reaction, InboundReaction) and reaction.emoji == ()


def test_a_whatsapp_reply_names_the_message_it_answers():
    [message] = parse_whatsapp(sample("whatsapp/text_reply_context.json"), {WA_NUMBER})
    assert isinstance(message, InboundMessage)
    assert message.text == "Is this still available?"
    assert message.reply_to == "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGA9wcm9kdWN0X2lucXVpcnkA"


def test_a_forwarded_whatsapp_message_answers_nothing():
    payload = sample("whatsapp/text_reply_context.json")
    raw = payload["entry"][0]["changes"][0]["value"]["messages"][0]
    raw["context"] = {"forwarded": True}
    [message] = parse_whatsapp(payload, {WA_NUMBER})
    assert isinstance(message, InboundMessage) and message.reply_to is None


def test_telegram_reactions_are_the_emoji_after_the_change():
    [added, removed, custom] = [
        parse_update(sample(f"telegram/message_reaction_{kind}.json"), BOT)
        for kind in ("added", "removed", "custom_emoji")
    ]
    assert isinstance(added, InboundReaction)
    assert (added.chat_id, added.target, added.emoji) == ("111", "111:42", ("👍",))
    assert isinstance(removed, InboundReaction) and removed.emoji == ()
    # A custom emoji has no Unicode of its own: the emoji beside it is what shows.
    assert isinstance(custom, InboundReaction) and custom.emoji == ("🔥",)


def test_the_telegram_bot_asks_for_reactions():
    # Telegram sends message_reaction only to a bot that names it in allowed_updates.
    assert "message_reaction" in ALLOWED_UPDATES


def test_a_telegram_reply_names_the_message_and_its_text():
    message = parse_update(sample("telegram/message_reply.json"), BOT)
    assert isinstance(message, InboundMessage)
    assert (message.text, message.reply_to) == ("Which depot?", "111:42")
    assert message.quoted == "Your parcel QX-5521 left the depot today."


def test_a_telegram_reply_quoting_a_part_quotes_that_part():
    payload = sample("telegram/message_reply.json")
    payload["message"]["quote"] = {"text": "QX-5521", "position": 12}
    message = parse_update(payload, BOT)
    assert isinstance(message, InboundMessage) and message.quoted == "QX-5521"


def test_a_reaction_in_a_group_is_not_a_customers():
    payload = sample("telegram/message_reaction_added.json")
    payload["message_reaction"]["chat"] = {"id": -100123, "title": "Fans", "type": "supergroup"}
    assert parse_update(payload, BOT) is None


def test_messenger_react_and_unreact():
    [react] = parse_messenger(sample("messenger/reaction_react.json"), {PAGE})
    [unreact] = parse_messenger(sample("messenger/reaction_unreact.json"), {PAGE})
    assert isinstance(react, InboundReaction) and isinstance(unreact, InboundReaction)
    assert (react.chat_id, react.emoji) == ("2041000000000001", ("❤️",))
    assert react.target == unreact.target and unreact.emoji == ()


def test_a_messenger_reply_names_the_message_it_answers():
    [message] = parse_messenger(sample("messenger/text_reply_to.json"), {PAGE})
    assert isinstance(message, InboundMessage)
    assert message.reply_to == "m_1fTq8oLumEyIp3Q2MR-aY7IfLZDamVrALniheU"


def test_slack_names_of_reactions():
    assert [slack_name(e) for e in ("👍", "👎", "❤️", "🔥", "👍🏽")] == [
        "+1",
        "-1",
        "heart",
        "fire",
        "+1::skin-tone-4",
    ]
    assert slack_name("not an emoji") is None


def test_a_reaction_line_keeps_customer_text_plain():
    change = ReactionChange(author="Ann", added=("<!here>",), on="<@U123> *hi*")
    assert reaction_line(change, ["<!here>"], []) == "reacted &lt;!here&gt; on “&lt;@U123&gt; *hi*”"
