"""The blacklist: block a contact (inbound, outbound or both, for good or until a time), take
it off, list the entries in force; the open conversation's threads are told."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bridge.errors import Invalid, NotFound
from bridge.services import Services
from bridge.services.contacts import label
from bridge.types import ContactId, ConversationId, StaffMessageRef, SurfaceName
from storage import ContactRecord, Tx
from storage.subscriptions import BlockRecord

DIRECTIONS = {
    "in": "inbound (stored, not shown to staff)",
    "out": "outbound (nothing is sent to them)",
    "both": "inbound and outbound",
}
DURATION = re.compile(r"(\d{1,7})([mhdw])")
DATE = re.compile(r"\d{4}-\d{2}-\d{2}(T\d{2}:\d{2})?")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
# Longer than this is a typo or a permanent block in disguise; permanent is the default.
MAX_SPAN = timedelta(days=3660)
REASON_MAX = 500


@dataclass(frozen=True, slots=True)
class Terms:
    """What a block says: which direction, until when, and why."""

    direction: str
    until: datetime | None
    reason: str | None


@dataclass(frozen=True, slots=True)
class Caller:
    """Who changes the blacklist, and from where: named in the record and the notices; the
    surface it was typed on is spared the notice when `skip_surface` (it shows the reply)."""

    who: str
    now: datetime
    surface: SurfaceName
    ref: StaffMessageRef | None = None
    skip_surface: bool = False


def parse_duration(word: str) -> timedelta:
    """`30m`, `12h`, `7d`, `2w`."""
    found = DURATION.fullmatch(word.strip().lower())
    if found is None:
        raise Invalid(f"{word} is not a duration; write e.g. 30m, 12h, 7d or 2w")
    amount = int(found.group(1))
    if amount == 0:
        raise Invalid(f"{word} is no time at all; write e.g. 30m, 12h, 7d or 2w")
    span = timedelta(**{_UNITS[found.group(2)]: amount})
    if span > MAX_SPAN:
        raise Invalid(f"{word} is more than 10 years; leave it out for a permanent block")
    return span


def parse_date(word: str, now: datetime) -> datetime:
    """`YYYY-MM-DD` (midnight) or `YYYY-MM-DDTHH:MM`, in UTC, in the future."""
    if DATE.fullmatch(word) is None:
        raise Invalid(f"{word} is not a date; write YYYY-MM-DD or YYYY-MM-DDTHH:MM (UTC)")
    try:
        moment = datetime.fromisoformat(word).replace(tzinfo=UTC)
    except ValueError:
        raise Invalid(f"{word} is not a date of the calendar") from None
    return check_until(moment, now, word)


def check_until(moment: datetime, now: datetime, typed: str | None = None) -> datetime:
    """An end of a block: in the future, and at most 10 years away."""
    word = typed or when(moment)
    if moment <= now:
        raise Invalid(f"{word} is in the past (it is {when(now)} now)")
    if moment - now > MAX_SPAN:
        raise Invalid(f"{word} is more than 10 years away; leave it out for a permanent block")
    return moment


def when(moment: datetime) -> str:
    """A time as replies show it."""
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


async def in_force(services: Services, now: datetime) -> list[tuple[BlockRecord, str, str]]:
    """The entries in force with each contact's platform and name; expired ones are dropped
    on the way (so this writes)."""
    return await services.write(lambda tx: tx.subscriptions.active_blocks(now))


@dataclass(frozen=True, slots=True)
class _Change:
    """What a blacklist change found: the entry before, and the contact's open conversation."""

    earlier: BlockRecord | None
    conversation: ConversationId | None
    # Whether that conversation has a thread on any surface (one opened while inbound-blocked
    # has none, and a notice for a thread that never opens would hold up its lane).
    threaded: bool


def _change(tx: Tx, contact_id: ContactId, surfaces: Sequence[str]) -> _Change:
    earlier = tx.subscriptions.blocks_of([contact_id]).get(contact_id)
    found = tx.open_conversations([contact_id]).get(contact_id)
    if found is None:
        return _Change(earlier, None, False)
    threaded = any(tx.thread(found.id, SurfaceName(s)) is not None for s in surfaces)
    return _Change(earlier, found.id, threaded)


async def put_on(services: Services, contact: ContactRecord, terms: Terms, caller: Caller) -> str:
    """Block a contact; tell the open conversation's threads; the text that says so."""
    now = caller.now
    by = caller.who[:128]
    surfaces = list(services.pipeline.surfaces)

    def write(tx: Tx) -> _Change:
        change = _change(tx, contact.id, surfaces)
        tx.subscriptions.block(contact.id, terms.direction, terms.until, terms.reason, by, now)
        return change

    change = await services.write(write)
    earlier = change.earlier
    until = f" until {when(terms.until)}" if terms.until else ", permanently"
    why = f". Reason: {terms.reason}" if terms.reason else ""
    text = f"{label(contact)} blocked {DIRECTIONS[terms.direction]}{until} by {caller.who}{why}."
    if earlier is not None and (earlier.until is None or earlier.until > now):
        text += f" (Replaces the earlier block: {DIRECTIONS[earlier.direction]}.)"
    threaded = change.threaded
    if earlier is not None and earlier.blocks("in", now) and terms.direction == "out":
        # The inbound part was lifted: the conversation may need the thread it never got.
        await services.pipeline.unblocked(contact.id)
        threaded = True
    await _tell(services, change.conversation, threaded, text, "block", caller)
    return text


async def take_off(services: Services, contact: ContactRecord, caller: Caller) -> str:
    """Remove a contact's entry; tell the open conversation's threads; the text that says so."""
    now = caller.now
    surfaces = list(services.pipeline.surfaces)

    def write(tx: Tx) -> _Change:
        change = _change(tx, contact.id, surfaces)
        tx.subscriptions.unblock(contact.id)
        return change

    change = await services.write(write)
    earlier = change.earlier
    if earlier is None or (earlier.until is not None and earlier.until <= now):
        raise NotFound(f"{label(contact)} is not on the blacklist.")
    text = f"{label(contact)} is no longer blocked ({caller.who})."
    threaded = change.threaded
    if earlier.blocks("in", now):
        # Messages of an inbound-blocked contact were stored but not shown; the pipeline opens
        # the thread their open conversation may never have had.
        await services.pipeline.unblocked(contact.id)
        threaded = True
    await _tell(services, change.conversation, threaded, text, "unblock", caller)
    return text


async def _tell(
    services: Services,
    conversation: ConversationId | None,
    threaded: bool,
    text: str,
    what: str,
    caller: Caller,
) -> None:
    """Redraw the open conversation's card and say what changed in its threads."""
    if conversation is None:
        return
    pipeline = services.pipeline
    await pipeline.refresh_card(conversation)
    if not threaded:
        return
    key = f"{what}:{caller.ref or caller.now.timestamp()}"
    skip = caller.surface if caller.skip_surface else None
    await pipeline.notify(conversation, text, key=key, skip=skip)
