"""Customers' reactions and replies: a reaction is shown on the post of the message it is on
(the customer's own message, or the agent's message they reacted to); a reply shows a quote
of the message it answers."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

from bridge.jobs import StaffReactJob
from bridge.pipeline.directory import Directory
from bridge.types import ContactId, ConversationId, InboundMessage, InboundReaction, MessageId
from storage import NewJob, Tx, quote_key, reaction_key

log = logging.getLogger(__name__)

# A quote shows the start of the message it answers: enough to recognise it.
QUOTE_MAX = 200


def store_reaction(
    tx: Tx, directory: Directory, reaction: InboundReaction, jobs: list[NewJob]
) -> None:
    """Record a customer's reactions on a message and queue showing the change in the threads."""
    found = tx.messages_by_external(reaction.platform, reaction.account, [reaction.target])
    message = found.get(reaction.target)
    if message is None or message.direction not in ("in", "out"):
        # A message from before the bridge, a broadcast, or one the bridge never saw.
        log.info("%s reaction on unknown message %s", reaction.platform, reaction.target)
        return
    contact = tx.contact_by_address(reaction.platform, reaction.account, reaction.chat_id)
    conversation = tx.conversation(message.conversation_id)
    if contact is None or conversation is None or conversation.contact_id != contact.id:
        return  # a message of another chat: ids are the platform's, never trusted across chats
    # The customer's reactions now, with the count of changes so far: {"now": [...], "n": 3}.
    key = reaction_key(message.id)
    stored = json.loads(tx.kv_get(key) or "{}")
    before: list[str] = stored.get("now", [])
    after = list(dict.fromkeys(reaction.emoji))
    added = tuple(e for e in after if e not in before)
    removed = tuple(e for e in before if e not in after)
    if not added and not removed:
        return  # a platform retry, or the same reaction again
    # Changes are counted: each one's row has a key of its own, even within the same second.
    changes = int(stored.get("n", 0)) + 1
    tx.kv_put(key, json.dumps({"now": after, "n": changes}))
    cause = str(changes)
    for surface_name, surface in directory.surfaces.items():
        shown = StaffReactJob(
            conversation=message.conversation_id,
            surface=surface_name,
            message=message.id,
            author=contact.display_name or "",
            added=added,
            removed=removed,
            customer=f"{reaction.platform}_{reaction.chat_id}",
        )
        jobs.append(shown.new_job(cause, surface.rate_keys("mark", None)))


def quotes(
    tx: Tx, messages: Sequence[InboundMessage], senders: Sequence[ContactId]
) -> list[tuple[str | None, MessageId | None]]:
    """What each message (sent by the contact at the same place in `senders`) answers, as its
    quote and the stored message answered: the stored message of the same contact it replies
    to, or else what the platform quotes of it (no stored message); (None, None) when it
    answers nothing."""
    replies = [m for m in messages if m.reply_to is not None]
    if not replies:
        return [(None, None)] * len(messages)
    first = replies[0]
    known = tx.messages_by_external(
        first.platform, first.account, [str(m.reply_to) for m in replies]
    )
    owners: dict[ConversationId, ContactId | None] = {}
    shown: list[tuple[str | None, MessageId | None]] = []
    for m, sender in zip(messages, senders, strict=True):
        earlier = known.get(str(m.reply_to)) if m.reply_to is not None else None
        if earlier is not None and earlier.conversation_id not in owners:
            conversation = tx.conversation(earlier.conversation_id)
            owners[earlier.conversation_id] = conversation.contact_id if conversation else None
        answered: MessageId | None = None
        if earlier is not None and owners[earlier.conversation_id] == sender:
            answered = earlier.id
            text = earlier.text or ", ".join(
                f"[{a.get('filename') or a.get('kind')}]" for a in earlier.attachments
            )
        else:
            text = m.quoted or ""
        shown.append((_shorten(text) if text.strip() else None, answered))
    return shown


def remember_quotes(tx: Tx, ids: Sequence[MessageId], shown: Sequence[str | None]) -> None:
    """Keep each reply's quote beside the stored message: an edit of it shows it again."""
    for message_id, quote in zip(ids, shown, strict=False):
        if quote is not None:
            tx.kv_put(quote_key(message_id), quote)


def _shorten(text: str) -> str:
    text = text.strip()
    return text if len(text) <= QUOTE_MAX else text[: QUOTE_MAX - 1].rstrip() + "…"
