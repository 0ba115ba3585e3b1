"""Telegram's replies and reactions: which message a customer's message answers, and the
customer's reactions on a message (`message_reaction` updates); and how the whole Telegram
connector reads a message's id and an update's time."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from bridge.errors import BadRequest
from bridge.types import (
    TELEGRAM,
    AccountId,
    ChatId,
    ExternalMessageId,
    InboundReaction,
)
from connectors.wire import int_or_none, opt_str, reaction_emoji


def external_id(chat_id: ChatId, message_id: int) -> ExternalMessageId:
    """The external id of a message: Telegram message ids are unique per chat only."""
    return ExternalMessageId(f"{chat_id}:{message_id}")


def moment(seconds: int, field: str) -> datetime:
    """A Unix time of an update; one no datetime can hold is a malformed update."""
    try:
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError):
        msg = f"{field} is out of range"
        raise BadRequest(msg) from None


def reply_of(
    message: Mapping[str, Any], chat_id: ChatId
) -> tuple[ExternalMessageId | None, str | None]:
    """What a reply answers: `reply_to_message` (a message of the same chat, without its own
    replies) and its text, for when the bridge does not know it; `quote` is the part the
    customer picked to quote, when they did."""
    earlier = message.get("reply_to_message")
    message_id = int_or_none(earlier.get("message_id")) if isinstance(earlier, Mapping) else None
    if not isinstance(earlier, Mapping) or message_id is None:
        return None, None
    picked = message.get("quote")
    quoted = opt_str(picked, "text") if isinstance(picked, Mapping) else None
    quoted = quoted or opt_str(earlier, "text") or opt_str(earlier, "caption")
    return external_id(chat_id, message_id), quoted


def parse_reaction(raw: Any, account: AccountId) -> InboundReaction | None:
    """A MessageReactionUpdated: the customer's reactions on a message after the change
    (`new_reaction`; a custom emoji or a paid star is no emoji, and is left out)."""
    if not isinstance(raw, Mapping):
        msg = "message_reaction is not an object"
        raise BadRequest(msg)
    chat = raw.get("chat")
    chat_id = int_or_none(chat.get("id")) if isinstance(chat, Mapping) else None
    message_id = int_or_none(raw.get("message_id"))
    date = int_or_none(raw.get("date"))
    new = raw.get("new_reaction")
    if chat_id is None or message_id is None or date is None or not isinstance(new, list):
        msg = "message_reaction lacks chat.id, message_id, date or new_reaction"
        raise BadRequest(msg)
    if not isinstance(chat, Mapping) or chat.get("type") != "private":
        return None  # groups and channels are not support conversations
    emoji = reaction_emoji(
        opt_str(r, "emoji") for r in new if isinstance(r, Mapping) and r.get("type") == "emoji"
    )
    return InboundReaction(
        platform=TELEGRAM,
        account=account,
        chat_id=ChatId(str(chat_id)),
        target=external_id(ChatId(str(chat_id)), message_id),
        emoji=emoji,
        at=moment(date, "message_reaction.date"),
    )
