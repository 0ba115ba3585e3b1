"""Conversations and their messages as the history keeps them, and sending a contact a
message the way an agent's reply goes."""

from __future__ import annotations

from dataclasses import dataclass

from bridge.pipeline import Queued
from bridge.services import Services
from bridge.types import ContactId, SurfaceName, TemplateCall
from storage import Tx
from storage.history import ConversationLine, MessageLine


@dataclass(frozen=True, slots=True)
class Sent:
    """What a send queued: the pipeline's answer, and the message when one was written."""

    queued: Queued
    line: MessageLine | None


async def conversation(services: Services, conversation_id: int) -> ConversationLine | None:
    """A conversation by id."""
    return await services.read(lambda tx: tx.history.conversation(conversation_id))


async def conversations_of(
    services: Services, contact_id: ContactId, after: int | None, limit: int
) -> list[ConversationLine]:
    """A contact's conversations, oldest first, from after `after`."""
    return await services.read(
        lambda tx: tx.history.conversations_of(contact_id, after=after, limit=limit)
    )


async def messages_of(
    services: Services, conversation_id: int, after: int | None, limit: int
) -> list[MessageLine]:
    """A conversation's messages, oldest first, from after `after`."""
    return await services.read(
        lambda tx: tx.history.messages_of(conversation_id, after=after, limit=limit)
    )


async def message(
    services: Services, message_id: int
) -> tuple[MessageLine, ConversationLine] | None:
    """A message with its conversation."""

    def read(tx: Tx) -> tuple[MessageLine, ConversationLine] | None:
        line = tx.history.message(message_id)
        owner = tx.history.conversation(line.conversation_id) if line else None
        return (line, owner) if line is not None and owner is not None else None

    return await services.read(read)


def send_in(
    services: Services,
    tx: Tx,
    contact_id: ContactId,
    *,
    origin: SurfaceName,
    author: str,
    text: str,
    template: TemplateCall | None,
) -> Sent | None:
    """Queue a message to a contact in the writer's transaction `tx`, as an agent's reply
    goes; None when there is no such contact."""
    queued = services.pipeline.send_to_contact(
        tx, contact_id, origin=origin, author=author, text=text, template=template
    )
    if queued is None:
        return None
    if queued.refusal is not None or queued.message_id is None:
        return Sent(queued, None)
    return Sent(queued, tx.history.message(queued.message_id))
