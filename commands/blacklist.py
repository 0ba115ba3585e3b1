"""The blacklist: `/blacklist add|list|remove`, and `!block` / `!unblock` in a thread."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bridge.types import ContactId, ConversationId, SurfaceName
from commands.base import CommandError, Context, NotFound, Reply, Role, command
from storage import ContactRecord, Tx, channels_extra, subscriptions

blacklist = command("blacklist", "Block contacts: inbound, outbound or both, for good or a while")
block = command("block", "Block this conversation's customer", default="")
unblock = command("unblock", "Take this conversation's customer off the blacklist", default="")

DIRECTIONS = {
    "in": "inbound (stored, not shown to staff)",
    "out": "outbound (nothing is sent to them)",
    "both": "inbound and outbound",
}
_DURATION = re.compile(r"(\d{1,7})([mhdw])")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}(T\d{2}:\d{2})?")
# Longer than this is a typo or a permanent block in disguise; permanent is the default.
MAX_SPAN = timedelta(days=3660)
REASON_MAX = 500
LIST_MAX = 50


@dataclass(frozen=True, slots=True)
class Terms:
    """What a block says: which direction, until when, and why."""

    direction: str
    until: datetime | None
    reason: str | None


# -- /blacklist -------------------------------------------------------------------------------


@blacklist.sub(
    "add",
    usage="<who> [in|out|both] [for <duration>|until <date>] [reason…]",
    summary="block a contact (#id, phone number or chat id); both directions and permanent"
    " unless said otherwise",
    example="/blacklist add #12 out for 7d sends spam links",
    role=Role.MANAGER,
)
async def _add(ctx: Context, args: list[str]) -> Reply:
    ctx.need(args, 1)
    terms = parse_terms(ctx, args[1:])
    contact = await find_contact(ctx, args[0])
    text = await put_on(ctx, contact, terms, skip_surface=False)
    return Reply(title=text)


@blacklist.sub(
    "list",
    summary="the entries in force, with their expiry (expired ones lift themselves)",
    example="/blacklist list",
    role=Role.AGENT,
)
async def _list(ctx: Context, args: list[str]) -> Reply:
    if args:
        raise ctx.usage(f"list takes no arguments (got {' '.join(args)})")
    now = ctx.now
    # A write: reading the list also drops the entries that expired.
    entries = await ctx.services.write(lambda tx: subscriptions.active_blocks(tx.conn, now))
    if not entries:
        return Reply(title="The blacklist is empty.")
    lines = []
    for entry, platform, name in entries[:LIST_MAX]:
        until = f"until {when(entry.until)}" if entry.until else "permanent"
        reason = f": {entry.reason}" if entry.reason else ""
        lines.append(
            f"`#{entry.contact_id}` {name} ({platform}): {DIRECTIONS[entry.direction]}, {until},"
            f" by {entry.created_by}{reason}"
        )
    if len(entries) > LIST_MAX:
        lines.append(f"…and {len(entries) - LIST_MAX} more.")
    count = len(entries)
    return Reply(title=f"{count} blocked contact{'s' if count != 1 else ''}", lines=tuple(lines))


@blacklist.sub(
    "remove",
    usage="<who>",
    summary="take a contact off the blacklist",
    example="/blacklist remove #12",
    role=Role.MANAGER,
)
async def _remove(ctx: Context, args: list[str]) -> Reply:
    ctx.need(args, 1)
    if len(args) > 1:
        raise ctx.usage(f"one contact at a time (got {' '.join(args)})")
    contact = await find_contact(ctx, args[0])
    return Reply(title=await take_off(ctx, contact, skip_surface=False))


# -- thread actions ---------------------------------------------------------------------------


@block.sub(
    "",
    usage="[in|out|both] [for <duration>|until <date>] [reason…]",
    summary="block this conversation's customer; both directions and permanent unless said"
    " otherwise",
    example="!block in for 12h flooding the chat",
    role=Role.MANAGER,
    in_thread=True,
)
async def _block(ctx: Context, args: list[str]) -> Reply:
    terms = parse_terms(ctx, args)
    contact = await _thread_contact(ctx)
    text = await put_on(ctx, contact, terms, skip_surface=True)
    return Reply(title=text, public=True)


@unblock.sub(
    "",
    summary="take this conversation's customer off the blacklist",
    example="!unblock",
    role=Role.MANAGER,
    in_thread=True,
)
async def _unblock(ctx: Context, args: list[str]) -> Reply:
    if args:
        raise ctx.usage(f"!unblock takes no arguments (got {' '.join(args)})")
    contact = await _thread_contact(ctx)
    return Reply(title=await take_off(ctx, contact, skip_surface=True), public=True)


# -- parsing ----------------------------------------------------------------------------------


def parse_terms(ctx: Context, args: Sequence[str]) -> Terms:
    """`[in|out|both] [for <duration>|until <date>] [reason…]`, checked against `ctx.now`."""
    rest = list(args)
    direction = "both"
    if rest and rest[0].lower() in DIRECTIONS:
        direction = rest.pop(0).lower()
    until: datetime | None = None
    if rest and rest[0].lower() in ("for", "until"):
        word = rest.pop(0).lower()
        if not rest:
            raise ctx.usage(
                "for needs a duration such as 30m, 12h, 7d or 2w"
                if word == "for"
                else "until needs a date: YYYY-MM-DD or YYYY-MM-DDTHH:MM (UTC)"
            )
        value = rest.pop(0)
        until = ctx.now + parse_duration(ctx, value) if word == "for" else parse_date(ctx, value)
    if rest and (_DURATION.fullmatch(rest[0].lower()) or _DATE.fullmatch(rest[0])):
        # Otherwise "7d" would silently become the reason of a permanent block.
        keyword = "for" if _DURATION.fullmatch(rest[0].lower()) else "until"
        raise ctx.usage(f"{rest[0]} looks like a time limit: write `{keyword} {rest[0]}`")
    if rest and rest[0].lower() in DIRECTIONS:
        raise ctx.usage(f"the direction ({rest[0]}) comes first, before for/until")
    reason = " ".join(rest).strip() or None
    if reason is not None and len(reason) > REASON_MAX:
        raise ctx.usage(f"the reason is {len(reason)} characters long; at most {REASON_MAX}")
    return Terms(direction, until, reason)


def parse_duration(ctx: Context, word: str) -> timedelta:
    """`30m`, `12h`, `7d`, `2w`."""
    found = _DURATION.fullmatch(word.strip().lower())
    if found is None:
        raise ctx.usage(f"{word} is not a duration; write e.g. 30m, 12h, 7d or 2w")
    amount = int(found.group(1))
    if amount == 0:
        raise ctx.usage(f"{word} is no time at all; write e.g. 30m, 12h, 7d or 2w")
    span = timedelta(**{_UNITS[found.group(2)]: amount})
    if span > MAX_SPAN:
        raise ctx.usage(f"{word} is more than 10 years; leave it out for a permanent block")
    return span


def parse_date(ctx: Context, word: str) -> datetime:
    """`YYYY-MM-DD` (midnight) or `YYYY-MM-DDTHH:MM`, in UTC, in the future."""
    if _DATE.fullmatch(word) is None:
        raise ctx.usage(f"{word} is not a date; write YYYY-MM-DD or YYYY-MM-DDTHH:MM (UTC)")
    try:
        moment = datetime.fromisoformat(word).replace(tzinfo=UTC)
    except ValueError:
        raise ctx.usage(f"{word} is not a date of the calendar") from None
    return check_until(ctx, moment, word)


def check_until(ctx: Context, moment: datetime, typed: str | None = None) -> datetime:
    """An end of a block: in the future, and at most 10 years away."""
    word = typed or when(moment)
    if moment <= ctx.now:
        raise ctx.usage(f"{word} is in the past (it is {when(ctx.now)} now)")
    if moment - ctx.now > MAX_SPAN:
        raise ctx.usage(f"{word} is more than 10 years away; leave it out for a permanent block")
    return moment


def when(moment: datetime) -> str:
    """A time as replies show it."""
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def label(contact: ContactRecord) -> str:
    """How replies name a contact: id, name, platform."""
    return f"#{contact.id} {contact.display_name} ({contact.platform})"


# -- finding the contact ------------------------------------------------------------------------

_CONTACT_ID = re.compile(r"#?(\d{1,18})")
_PHONE = re.compile(r"\+?[\d\s().-]{3,40}")


async def find_contact(ctx: Context, word: str) -> ContactRecord:
    """A contact from how staff name it: `#12` or `12` (the contact id), a phone number or a
    chat id, or a `@username`."""
    word = word.strip()
    if not word:
        raise ctx.usage("name the contact: #12, a phone number or a chat id")
    by_id = _CONTACT_ID.fullmatch(word)
    if by_id is not None:
        wanted = ContactId(int(by_id.group(1)))
        found = await ctx.services.read(lambda conn: Tx(conn).contact(wanted))
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
    matches = await ctx.services.read(
        lambda conn: channels_extra.contacts_by_address(conn, sorted(addresses), username)
    )
    if not matches:
        raise NotFound(f"No contact has the id, number or chat id {word}.")
    if len(matches) > 1:
        named = ", ".join(label(c) for c in matches[:10])
        raise CommandError(f"{word} names {len(matches)} contacts ({named}); use the #id.")
    return matches[0]


async def _thread_contact(ctx: Context) -> ContactRecord:
    conversation = await _thread_conversation(ctx)

    def read(tx: Tx) -> ContactRecord | None:
        found = tx.conversation(conversation)
        return tx.contact(found.contact_id) if found is not None else None

    contact = await ctx.services.read(lambda conn: read(Tx(conn)))
    if contact is None:
        raise CommandError("This conversation no longer exists.")
    return contact


async def _thread_conversation(ctx: Context) -> ConversationId:
    if ctx.conversation_id is not None:
        return ctx.conversation_id
    # The runner checked that the thread belongs to a conversation but (so far) does not hand
    # it on in the context: look it up again.
    found = await ctx.services.conversation_of(ctx.request.surface, ctx.request.thread)
    if found is None:
        return ctx.conversation  # raises the "works inside a conversation's thread" error
    return found


# -- doing it ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Change:
    """What a blacklist change found: the entry before, and the contact's open conversation."""

    earlier: subscriptions.BlockRecord | None
    conversation: ConversationId | None
    # Whether that conversation has a thread on any surface (one opened while inbound-blocked
    # has none, and a notice for a thread that never opens would hold up its lane).
    threaded: bool


def _change(tx: Tx, contact_id: ContactId, surfaces: Sequence[str]) -> _Change:
    earlier = subscriptions.blocks_of(tx.conn, [contact_id]).get(contact_id)
    found = tx.open_conversations([contact_id]).get(contact_id)
    if found is None:
        return _Change(earlier, None, False)
    threaded = any(tx.thread(found.id, SurfaceName(s)) is not None for s in surfaces)
    return _Change(earlier, found.id, threaded)


async def put_on(ctx: Context, contact: ContactRecord, terms: Terms, *, skip_surface: bool) -> str:
    """Block a contact; tell the open conversation's threads; the reply's text."""
    now = ctx.now
    by = ctx.who[:128]
    surfaces = list(ctx.services.pipeline.surfaces)

    def write(tx: Tx) -> _Change:
        change = _change(tx, contact.id, surfaces)
        subscriptions.block(
            tx.conn, contact.id, terms.direction, terms.until, terms.reason, by, now
        )
        return change

    change = await ctx.services.write(write)
    earlier = change.earlier
    until = f" until {when(terms.until)}" if terms.until else ", permanently"
    why = f". Reason: {terms.reason}" if terms.reason else ""
    text = f"{label(contact)} blocked {DIRECTIONS[terms.direction]}{until} by {ctx.who}{why}."
    if earlier is not None and (earlier.until is None or earlier.until > now):
        text += f" (Replaces the earlier block: {DIRECTIONS[earlier.direction]}.)"
    threaded = change.threaded
    if earlier is not None and earlier.blocks("in", now) and terms.direction == "out":
        # The inbound part was lifted: the conversation may need the thread it never got.
        await ctx.services.pipeline.unblocked(contact.id)
        threaded = True
    await _tell(ctx, change.conversation, threaded, text, "block", skip_surface)
    return text


async def take_off(ctx: Context, contact: ContactRecord, *, skip_surface: bool) -> str:
    """Remove a contact's entry; tell the open conversation's threads; the reply's text."""
    now = ctx.now
    surfaces = list(ctx.services.pipeline.surfaces)

    def write(tx: Tx) -> _Change:
        change = _change(tx, contact.id, surfaces)
        subscriptions.unblock(tx.conn, contact.id)
        return change

    change = await ctx.services.write(write)
    earlier = change.earlier
    if earlier is None or (earlier.until is not None and earlier.until <= now):
        raise NotFound(f"{label(contact)} is not on the blacklist.")
    text = f"{label(contact)} is no longer blocked ({ctx.who})."
    threaded = change.threaded
    if earlier.blocks("in", now):
        # Messages of an inbound-blocked contact were stored but not shown; the pipeline opens
        # the thread their open conversation may never have had.
        await ctx.services.pipeline.unblocked(contact.id)
        threaded = True
    await _tell(ctx, change.conversation, threaded, text, "unblock", skip_surface)
    return text


async def _tell(
    ctx: Context,
    conversation: ConversationId | None,
    threaded: bool,
    text: str,
    what: str,
    skip_surface: bool,
) -> None:
    """Redraw the open conversation's card and say what changed in its threads."""
    if conversation is None:
        return
    pipeline = ctx.services.pipeline
    await pipeline.refresh_card(conversation)
    if not threaded:
        return
    key = f"{what}:{ctx.request.ref or ctx.now.timestamp()}"
    await pipeline.notify(
        conversation, text, key=key, skip=ctx.request.surface if skip_surface else None
    )
