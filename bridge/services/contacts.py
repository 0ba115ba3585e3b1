"""Contacts: find, show, change, add by hand, export and erase them."""

from __future__ import annotations

import re

from sqlalchemy.engine import Connection

from bridge.errors import Invalid, NotFound, Refused
from bridge.services import Services
from bridge.types import ContactId, ConversationId
from storage import Tx, channels_extra
from storage.queries import ContactRecord

_CONTACT_ID = re.compile(r"#?(\d{1,18})")
_PHONE = re.compile(r"\+?[\d\s().-]{3,40}")


def label(contact: ContactRecord) -> str:
    """How replies name a contact: id, name, platform."""
    return f"#{contact.id} {contact.display_name} ({contact.platform})"


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


async def find_contact(services: Services, word: str) -> ContactRecord:
    """A contact from how staff name it: `#12` or `12` (the contact id), a phone number or a
    chat id, or a `@username`."""
    word = word.strip()
    if not word:
        raise Invalid("name the contact: #12, a phone number or a chat id")
    by_id = _CONTACT_ID.fullmatch(word)
    if by_id is not None:
        wanted = ContactId(int(by_id.group(1)))
        found = await contact(services, wanted)
        if found is not None:
            return found
        if word.startswith("#"):
            raise NotFound(f"There is no contact #{wanted}.")
    addresses = {word}
    username: str | None = None
    if _PHONE.fullmatch(word) and not word.startswith("-"):
        compact = re.sub(r"[\s().-]", "", word)
        digits = compact.lstrip("+")
        addresses |= {compact, digits, f"+{digits}"}
    elif word.startswith("@") and len(word) > 1:
        username = word[1:]
    matches = await services.read(
        lambda conn: channels_extra.contacts_by_address(conn, sorted(addresses), username)
    )
    if not matches:
        raise NotFound(f"No contact has the id, number or chat id {word}.")
    if len(matches) > 1:
        named = ", ".join(label(c) for c in matches[:10])
        raise Refused(f"{word} names {len(matches)} contacts ({named}); use the #id.")
    return matches[0]
