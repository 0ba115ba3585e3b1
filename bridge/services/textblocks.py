"""Text blocks: saved replies with placeholders, filled in for a contact when sent."""

from __future__ import annotations

import re
from datetime import date, datetime

from bridge.errors import Invalid
from bridge.services import Services
from bridge.services.templates import PLATFORM_NAMES
from storage import Tx
from storage.catalog import TextBlockRecord
from storage.queries import ContactRecord

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_]+)\}")
PLACEHOLDERS = {
    "NAME": "the contact's display name",
    "FIRSTNAME": "the first word of the contact's name",
    "AGENT": "who sends the block",
    "DATE": "today, YYYY-MM-DD",
    "PLATFORM": "the customer's messenger (Telegram, WhatsApp…)",
}
TEXT_LIMIT = 4096  # the shortest message limit of the platforms (Telegram, WhatsApp)


def block_name(word: str) -> str:
    """A text block name: letters, digits, _ and -, at most 64, compared in lowercase."""
    name = word.strip().lower()
    if not _NAME.match(name):
        raise Invalid(
            f"not a text block name: {word or '(empty)'}; use letters, digits, _ and -"
            " (at most 64)"
        )
    return name


def check_text(text: str) -> str:
    """A text block's text, trimmed, if it fits a message and uses known placeholders only."""
    body = text.strip()
    if not body:
        raise Invalid("the text is missing")
    if len(body) > TEXT_LIMIT:
        raise Invalid(f"the text has {len(body)} characters; at most {TEXT_LIMIT} fit a message")
    unknown = sorted({p for p in _PLACEHOLDER.findall(body) if p.upper() not in PLACEHOLDERS})
    if unknown:
        known = ", ".join(f"{{{p}}}" for p in PLACEHOLDERS)
        raise Invalid(
            f"unknown placeholder {', '.join(f'{{{p}}}' for p in unknown)}; known are {known}"
        )
    return body


def placeholders_used(body: str) -> list[str]:
    """The placeholders a text block uses, in capitals, each once, sorted."""
    return sorted({p.upper() for p in _PLACEHOLDER.findall(body)})


def fill(body: str, contact: ContactRecord, *, agent: str, today: date) -> str:
    """The block's text with its placeholders filled in for this contact."""
    name = contact.display_name.strip()
    words = name.split()
    values = {
        "NAME": name,
        "FIRSTNAME": words[0].lstrip("@") if words else name,
        "AGENT": agent,
        "DATE": today.isoformat(),
        "PLATFORM": PLATFORM_NAMES.get(contact.platform, contact.platform),
    }
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1).upper(), m.group(0)), body)


async def all_text_blocks(services: Services) -> list[TextBlockRecord]:
    """Every text block, by name."""
    return await services.read(lambda tx: tx.textblocks.all_text_blocks())


async def text_block(services: Services, name: str) -> TextBlockRecord | None:
    """A text block by (checked) name."""
    return await services.read(lambda tx: tx.textblocks.text_block(name))


async def save_text_block(
    services: Services, name: str, body: str, by: str, now: datetime, *, exists: bool | None = None
) -> bool:
    """Store a text block (checked by the caller). With `exists` None it is added or replaced,
    and True says it is new; with `exists` True or False only a block that does (or does not)
    exist is stored, and False says nothing was."""

    def write(tx: Tx) -> bool:
        if exists is not None and (tx.textblocks.text_block(name) is not None) != exists:
            return False
        created = tx.textblocks.save_text_block(name, body, by, now)
        return created or exists is True

    return await services.write(write)


async def delete_text_block(services: Services, name: str) -> bool:
    """Delete a text block; False when there is none of that name."""
    return await services.write(lambda tx: tx.textblocks.delete_text_block(name))
