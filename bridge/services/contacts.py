"""Contacts: find, show, change, add by hand, export and erase them."""

from __future__ import annotations

from sqlalchemy.engine import Connection

from bridge.services import Services
from bridge.types import ContactId, ConversationId
from storage import Tx
from storage.queries import ContactRecord


async def contact(services: Services, contact_id: ContactId) -> ContactRecord | None:
    """A contact by id."""
    return await services.read(lambda conn: Tx(conn).contact(contact_id))


async def contact_of(services: Services, conversation: ConversationId) -> ContactRecord | None:
    """The contact of a conversation; None when the conversation is gone."""

    def read(conn: Connection) -> ContactRecord | None:
        tx = Tx(conn)
        record = tx.conversation(conversation)
        return tx.contact(record.contact_id) if record is not None else None

    return await services.read(read)
