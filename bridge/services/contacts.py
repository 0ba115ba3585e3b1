"""Contacts: find, show, change, add by hand, export and erase them."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bridge.errors import Invalid, NotFound, Refused
from bridge.jobs import StaffTombstoneJob
from bridge.services import Services
from bridge.types import ContactId, ConversationId
from storage import Tx
from storage.contacts_admin import ERASED_TABLES, ContactDetails, ContactLine, ErasureCounts
from storage.queries import ContactRecord
from storage.subscriptions import BlockRecord

NAME_MAX = 256  # contacts.display_name
OPT_IN_MAX = 256  # contacts.opt_in_source

_CONTACT_ID = re.compile(r"#?(\d{1,18})")
_PHONE = re.compile(r"\+?[\d\s().-]{3,40}")


@dataclass(frozen=True, slots=True)
class Card:
    """What a contact's card shows: the contact, their channels and their blacklist entry."""

    details: ContactDetails | None
    # (channel, how they joined, when, when they left)
    channels: list[tuple[str, str, datetime, datetime | None]]
    block: BlockRecord | None


def label(contact: ContactRecord) -> str:
    """How replies name a contact: id, name, platform."""
    return f"#{contact.id} {contact.display_name} ({contact.platform})"


async def contact(services: Services, contact_id: ContactId) -> ContactRecord | None:
    """A contact by id."""
    return await services.read(lambda tx: tx.contact(contact_id))


async def assign(services: Services, conversation: ConversationId, user: str | None) -> None:
    """Assign a conversation's contact to a staff member (None: nobody); its card follows."""

    def write(tx: Tx) -> None:
        found = tx.conversation(conversation)
        if found is None:
            raise Refused("this conversation no longer exists")
        tx.update_contact(found.contact_id, assigned_to=user)

    await services.write(write)
    await services.pipeline.refresh_card(conversation)


async def contact_of(services: Services, conversation: ConversationId) -> ContactRecord | None:
    """The contact of a conversation; None when the conversation is gone."""

    def read(tx: Tx) -> ContactRecord | None:
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
        lambda tx: tx.members.contacts_by_address(sorted(addresses), username)
    )
    if not matches:
        raise NotFound(f"No contact has the id, number or chat id {word}.")
    if len(matches) > 1:
        named = ", ".join(label(c) for c in matches[:10])
        raise Refused(f"{word} names {len(matches)} contacts ({named}); use the #id.")
    return matches[0]


async def find(services: Services, text: str, limit: int) -> list[ContactLine]:
    """Contacts whose name, chat id / phone number or username match, last seen first."""
    return await services.read(lambda tx: tx.contact_admin.find_contacts(text, limit))


async def resolve(services: Services, who: str) -> list[ContactLine]:
    """The contacts `who` may mean: `#12`, a number, a name."""
    return await services.read(lambda tx: tx.contact_admin.resolve_contact(who))


async def page(
    services: Services,
    *,
    text: str | None,
    platform: str | None,
    channel_id: int | None,
    after: int | None,
    limit: int,
) -> list[ContactLine]:
    """Contacts by id, searched and filtered, from after `after`."""
    return await services.read(
        lambda tx: tx.contact_admin.contact_page(
            text=text, platform=platform, channel_id=channel_id, after=after, limit=limit
        )
    )


async def card(services: Services, contact_id: ContactId) -> Card:
    """A contact's card: the contact (None when gone), their channels, their blacklist entry."""

    def read(tx: Tx) -> Card:
        return Card(
            tx.contact_admin.contact_details(contact_id),
            tx.subscriptions.channels_of(contact_id),
            tx.subscriptions.blocks_of([contact_id]).get(contact_id),
        )

    return await services.read(read)


async def change_contact(
    services: Services, contact_id: ContactId, **values: str | None
) -> ContactDetails:
    """Change staff fields (display_name, note, remark, assigned_to), then redraw the open
    conversation's card; the contact as it is now."""

    def write(tx: Tx) -> ContactDetails | None:
        tx.update_contact(contact_id, **values)
        return tx.contact_admin.contact_details(contact_id)

    details = await services.write(write)
    if details is None:
        raise NotFound(f"Contact #{contact_id} no longer exists")
    if details.open_conversation is not None:
        await services.pipeline.refresh_card(details.open_conversation)
    return details


async def add(
    services: Services,
    *,
    platform: str,
    account: str,
    chat_id: str,
    name: str,
    source: str,
    now: datetime,
) -> tuple[ContactId, bool]:
    """Add a contact by hand with how they opted in; its id and whether it is new."""
    return await services.write(
        lambda tx: tx.contact_admin.add_contact(
            platform=platform,
            account=account,
            chat_id=chat_id,
            name=name,
            opt_in_source=source,
            at=now,
        )
    )


async def export_document(
    services: Services, contact_id: ContactId, who: str, now: datetime
) -> dict[str, Any]:
    """Everything held about a contact, as the JSON document `/contact export` hands out."""
    document = await services.read(lambda tx: tx.contact_admin.export_contact(contact_id, now))
    if document is None:
        raise NotFound(f"Contact #{contact_id} no longer exists")
    document["exported_by"] = who
    return document


async def what_erasing_removes(services: Services, contact_id: ContactId) -> ErasureCounts:
    """What erasing a contact would remove, counted."""
    counts = await services.read(lambda tx: tx.contact_admin.erasure_counts(contact_id))
    if counts is None:
        raise Refused(f"Contact #{contact_id} no longer exists")
    return counts


async def forget_contact(
    services: Services, contact_id: ContactId, who: str, now: datetime
) -> ErasureCounts:
    """Erase a contact and everything stored about them; each of their staff threads is left
    with a tombstone naming who erased it."""
    text = f"This contact's data was erased on {now:%Y-%m-%d} at their request (by {who})."
    pipeline = services.pipeline

    def write(tx: Tx) -> ErasureCounts:
        erased = tx.contact_admin.erase_contact(contact_id)
        if erased is None:
            raise NotFound(f"Contact #{contact_id} no longer exists")
        jobs = []
        for surface, thread in erased.threads:
            known = pipeline.surfaces.get(surface)
            tombstone = StaffTombstoneJob(surface=surface, thread=thread, text=text)
            rate_keys = known.rate_keys("update", None) if known is not None else ()
            # One per thread (a contact has a thread per conversation and surface).
            jobs.append(tombstone.new_job(rate_keys))
        tx.enqueue(jobs, time.time())
        # Right after the commit, before the writer's next transaction: an inbound message
        # from the same chat must not find the erased contact in the pipeline's memory.
        tx.after_commit.append(lambda: pipeline.forget_contact(contact_id))
        return erased.counts

    counts = await services.write(write)
    # What was deleted must not stay readable in the database's files (the WAL, free pages).
    await services.db.scrub(ERASED_TABLES)
    return counts
