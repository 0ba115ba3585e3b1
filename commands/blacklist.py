"""The blacklist: `/blacklist add|list|remove`, and `!block` / `!unblock` in a thread."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from bridge.services import blacklist as blacklist_service
from bridge.services import contacts
from bridge.services.blacklist import (
    DATE,
    DIRECTIONS,
    DURATION,
    REASON_MAX,
    Caller,
    Terms,
    parse_date,
    parse_duration,
    when,
)
from bridge.staffio import Reply
from bridge.types import ConversationId
from commands.base import CommandError, Context, Role, command
from storage import ContactRecord

blacklist = command("blacklist", "Block contacts: inbound, outbound or both, for good or a while")
block = command("block", "Block this conversation's customer", default="")
unblock = command("unblock", "Take this conversation's customer off the blacklist", default="")

LIST_MAX = 50


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
    contact = await contacts.find_contact(ctx.services, args[0])
    text = await blacklist_service.put_on(ctx.services, contact, terms, _caller(ctx))
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
    entries = await blacklist_service.in_force(ctx.services, now)
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
    contact = await contacts.find_contact(ctx.services, args[0])
    return Reply(title=await blacklist_service.take_off(ctx.services, contact, _caller(ctx)))


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
    text = await blacklist_service.put_on(
        ctx.services, contact, terms, _caller(ctx, skip_surface=True)
    )
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
    return Reply(
        title=await blacklist_service.take_off(
            ctx.services, contact, _caller(ctx, skip_surface=True)
        ),
        public=True,
    )


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
        until = ctx.now + parse_duration(value) if word == "for" else parse_date(value, ctx.now)
    if rest and (DURATION.fullmatch(rest[0].lower()) or DATE.fullmatch(rest[0])):
        # Otherwise "7d" would silently become the reason of a permanent block.
        keyword = "for" if DURATION.fullmatch(rest[0].lower()) else "until"
        raise ctx.usage(f"{rest[0]} looks like a time limit: write `{keyword} {rest[0]}`")
    if rest and rest[0].lower() in DIRECTIONS:
        raise ctx.usage(f"the direction ({rest[0]}) comes first, before for/until")
    reason = " ".join(rest).strip() or None
    if reason is not None and len(reason) > REASON_MAX:
        raise ctx.usage(f"the reason is {len(reason)} characters long; at most {REASON_MAX}")
    return Terms(direction, until, reason)


# -- finding the contact ------------------------------------------------------------------------


async def _thread_contact(ctx: Context) -> ContactRecord:
    conversation = await _thread_conversation(ctx)

    contact = await contacts.contact_of(ctx.services, conversation)
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


def _caller(ctx: Context, *, skip_surface: bool = False) -> Caller:
    request = ctx.request
    return Caller(ctx.who, ctx.now, request.surface, request.ref, skip_surface)
