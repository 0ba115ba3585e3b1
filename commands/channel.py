"""Subscriber channels: `/channel create|list|show|rename|delete|keyword|reply|bind|members|add|
remove|words`. Customers join and leave by keyword; the pipeline matches what they send."""

from __future__ import annotations

import re
from collections.abc import Sequence

from sqlalchemy.engine import Connection

from bridge.types import PLATFORMS
from commands.base import CommandError, Conflict, Context, NotFound, Reply, Role, command
from commands.blacklist import find_contact, label
from storage import ContactRecord, Tx, channels_extra, subscriptions
from storage.subscriptions import ChannelRecord, fold

channel = command("channel", "Subscriber channels customers join and leave by keyword")

NAME_PATTERN = r"[A-Za-z0-9_-]{1,64}"
_NAME = re.compile(NAME_PATTERN)
# Telegram deep links (t.me/<bot>?start=<payload>) carry only these characters.
_DEEP_LINK = re.compile(r"[A-Za-z0-9_-]{1,64}")
_LANGUAGE = re.compile(r"[a-z]{2,3}(-[a-z0-9]{2,8})?")
KEYWORD_MAX = 64
REPLY_MAX = 1000
CONSENT_MAX = 80
MEMBERS_SHOWN = 50
KINDS = {"stop": "unsubscribes from every channel", "start": "brings back what STOP ended"}


# -- reading ----------------------------------------------------------------------------------


@channel.sub(
    "list",
    summary="every channel with its keywords, platform binding and members per platform",
    example="/channel list",
    role=Role.AGENT,
)
async def _list(ctx: Context, args: list[str]) -> Reply:
    if args:
        raise ctx.usage(f"list takes no arguments (got {' '.join(args)})")

    def read(conn: Connection) -> tuple[list[ChannelRecord], dict[int, dict[str, int]]]:
        return subscriptions.all_channels(conn), subscriptions.member_counts(conn)

    found, counts = await ctx.services.read(read)
    if not found:
        return Reply(
            title="No channels yet.",
            lines=("Create one with `/channel create news --join JOIN-NEWS`.",),
        )
    lines = []
    for ch in found:
        parts = [f"join {_kw(ch.join_keyword)}", f"leave {_kw(ch.leave_keyword)}"]
        if ch.platform:
            parts.append(f"bound to {ch.platform}")
        lines.append(f"*{ch.name}*: {', '.join(parts)}; {_members(counts.get(ch.id, {}))}")
    return Reply(title=f"{len(found)} channel{'s' if len(found) != 1 else ''}", lines=tuple(lines))


@channel.sub(
    "show",
    usage="<name>",
    summary="a channel's keywords, confirmation texts, binding and member counts",
    example="/channel show news",
    role=Role.AGENT,
)
async def _show(ctx: Context, args: list[str]) -> Reply:
    _exactly(ctx, args, 1)
    name = args[0]

    def read(conn: Connection) -> tuple[ChannelRecord | None, dict[str, int]]:
        found = subscriptions.channel_by_name(conn, name)
        counts = subscriptions.member_counts(conn).get(found.id, {}) if found else {}
        return found, counts

    found, counts = await ctx.services.read(read)
    ch = _known(found, name)
    leave_word = ch.leave_keyword or "STOP"
    return Reply(
        title=f"Channel {ch.name}",
        fields=(
            ("Join keyword", ch.join_keyword or "none"),
            ("Leave keyword", ch.leave_keyword or "none (STOP leaves every channel)"),
            (
                "Join reply",
                ch.join_reply
                or f"(default) You have joined {ch.name}. Send {leave_word} to leave.",
            ),
            ("Leave reply", ch.leave_reply or f"(default) You have left {ch.name}."),
            ("Bound to", ch.platform or "no platform"),
            ("Members", _members(counts)),
            ("Created", f"{ch.created_at:%Y-%m-%d %H:%M} UTC by {ch.created_by}"),
        ),
    )


@channel.sub(
    "members",
    usage="<name>",
    summary=f"the channel's members (the first {MEMBERS_SHOWN}) and counts per platform",
    example="/channel members news",
    role=Role.AGENT,
)
async def _list_members(ctx: Context, args: list[str]) -> Reply:
    _exactly(ctx, args, 1)
    name = args[0]

    def read(
        conn: Connection,
    ) -> tuple[ChannelRecord | None, dict[str, int], list[channels_extra.MemberRecord]]:
        found = subscriptions.channel_by_name(conn, name)
        if found is None:
            return None, {}, []
        counts = subscriptions.member_counts(conn).get(found.id, {})
        return found, counts, channels_extra.member_page(conn, found.id, MEMBERS_SHOWN)

    found, counts, page = await ctx.services.read(read)
    ch = _known(found, name)
    total = sum(counts.values())
    lines = [
        f"`#{m.contact_id}` {m.display_name} ({m.platform}), since"
        f" {m.joined_at:%Y-%m-%d}: {m.source}"
        for m in page
    ]
    if total > len(page):
        lines.append(f"…and {total - len(page)} more.")
    return Reply(title=f"{ch.name}: {_members(counts)}", lines=tuple(lines))


# -- changing channels ------------------------------------------------------------------------


@channel.sub(
    "create",
    usage=f"<name> [--join KEYWORD] [--leave KEYWORD] [--platform {'|'.join(PLATFORMS)}]",
    summary="a new channel; quote keywords with spaces",
    example="/channel create news --join JOIN-NEWS --leave LEAVE-NEWS",
    role=Role.MANAGER,
)
async def _create(ctx: Context, args: list[str]) -> Reply:
    ctx.need(args, 1)
    name = channel_name(ctx, args[0])
    options = _options(ctx, args[1:], ("--join", "--leave", "--platform"))
    created = await create_channel(
        ctx, name, options.get("--join"), options.get("--leave"), options.get("--platform")
    )
    join, leave, platform = created.join_keyword, created.leave_keyword, created.platform
    title = f"Channel {name} created."
    title += f" Join keyword: {join}" if join else " It has no join keyword yet."
    lines = []
    if leave:
        lines.append(f"Leave keyword: `{leave}`")
    if platform:
        lines.append(_bound_line(ctx, platform))
    if join:
        lines.extend(_deep_link_note(join))
    return Reply(title=title, lines=tuple(lines))


async def create_channel(
    ctx: Context, name: str, join: str | None, leave: str | None, platform: str | None
) -> ChannelRecord:
    """Create a channel, checking its name, keywords (`none`: no keyword) and platform as
    `/channel create` does."""
    name = channel_name(ctx, name)
    join = keyword_or_none(ctx, join)
    leave = keyword_or_none(ctx, leave)
    platform = platform_or_none(ctx, platform)
    if join is not None and leave is not None and fold(join) == fold(leave):
        raise ctx.usage("the join and the leave keyword must differ")
    who, now = ctx.who[:128], ctx.now

    def write(tx: Tx) -> ChannelRecord:
        if subscriptions.channel_by_name(tx.conn, name) is not None:
            raise Conflict(f"There is a channel {name} already.")
        for keyword in (join, leave):
            if keyword is not None:
                _check_keyword(tx.conn, keyword, None)
        created = subscriptions.create_channel(tx.conn, name, who, now)
        subscriptions.update_channel(
            tx.conn, created.id, join_keyword=join, leave_keyword=leave, platform=platform
        )
        found = subscriptions.channel_by_name(tx.conn, name)
        assert found is not None
        return found

    created = await ctx.services.write(write)
    ctx.services.pipeline.keywords_changed()
    return created


@channel.sub(
    "rename",
    usage="<name> <new name>",
    summary="give a channel another name (keywords and members stay)",
    example="/channel rename news weekly-news",
    role=Role.MANAGER,
)
async def _rename(ctx: Context, args: list[str]) -> Reply:
    _exactly(ctx, args, 2)
    old, new = args[0], channel_name(ctx, args[1])

    def write(tx: Tx) -> ChannelRecord:
        found = _known(subscriptions.channel_by_name(tx.conn, old), old)
        other = subscriptions.channel_by_name(tx.conn, new)
        if other is not None and other.id != found.id:
            raise Conflict(f"There is a channel {other.name} already.")
        subscriptions.update_channel(tx.conn, found.id, name=new)
        return found

    found = await ctx.services.write(write)
    ctx.services.pipeline.keywords_changed()  # the default confirmations name the channel
    return Reply(title=f"Channel {found.name} is now called {new}.")


@channel.sub(
    "delete",
    usage="<name> --confirm",
    summary="delete a channel and drop its members (without --confirm: how many that is)",
    example="/channel delete news --confirm",
    role=Role.MANAGER,
)
async def _delete(ctx: Context, args: list[str]) -> Reply:
    ctx.need(args, 1)
    name, flags = args[0], [a.lower() for a in args[1:]]
    if any(flag != "--confirm" for flag in flags):
        raise ctx.usage(f"only --confirm may follow the name (got {' '.join(args[1:])})")
    confirmed = bool(flags)
    found, count = await delete_channel(ctx, name, confirmed=confirmed)
    dropped = f"{count} member{'s' if count != 1 else ''}"
    if not confirmed:
        return Reply(
            title=f"Deleting {found.name} would drop its {dropped}.",
            lines=(f"To delete it: `/channel delete {found.name} --confirm`",),
        )
    return Reply(title=f"Channel {found.name} deleted; {dropped} dropped.")


async def delete_channel(ctx: Context, name: str, *, confirmed: bool) -> tuple[ChannelRecord, int]:
    """Delete a channel (only count its members unless `confirmed`); the channel and how many
    members it had."""

    def write(tx: Tx) -> tuple[ChannelRecord, int]:
        found = _known(subscriptions.channel_by_name(tx.conn, name), name)
        count = sum(subscriptions.member_counts(tx.conn).get(found.id, {}).values())
        if confirmed:
            subscriptions.delete_channel(tx.conn, found.id)
        return found, count

    found, count = await ctx.services.write(write)
    if confirmed:
        ctx.services.pipeline.keywords_changed()
    return found, count


@channel.sub(
    "keyword",
    usage="<name> join|leave <KEYWORD|none>",
    summary="the whole message that joins or leaves the channel (unique; not a consent word)",
    example="/channel keyword news join JOIN-NEWS",
    role=Role.MANAGER,
)
async def _keyword(ctx: Context, args: list[str]) -> Reply:
    ctx.need(args, 3)
    name, which = args[0], _which(ctx, args[1])
    keyword = keyword_or_none(ctx, " ".join(args[2:]))

    def write(tx: Tx) -> ChannelRecord:
        found = _known(subscriptions.channel_by_name(tx.conn, name), name)
        if keyword is not None:
            _check_keyword(tx.conn, keyword, found.id, which)
        subscriptions.update_channel(tx.conn, found.id, **{f"{which}_keyword": keyword})
        return found

    found = await ctx.services.write(write)
    ctx.services.pipeline.keywords_changed()
    if keyword is None:
        return Reply(title=f"Channel {found.name} has no {which} keyword any more.")
    lines = _deep_link_note(keyword) if which == "join" else []
    return Reply(title=f"Channel {found.name}: {which} keyword {keyword}.", lines=tuple(lines))


@channel.sub(
    "reply",
    usage="<name> join|leave <text…|none>",
    summary="what the customer is sent after joining or leaving (none: the default text)",
    example="/channel reply news join Welcome! News every Friday. Send LEAVE-NEWS to stop.",
    role=Role.MANAGER,
)
async def _reply(ctx: Context, args: list[str]) -> Reply:
    ctx.need(args, 3)
    name, which = args[0], _which(ctx, args[1])
    typed = " ".join(args[2:]).strip()
    if not typed:
        raise ctx.usage("the text is missing (none: back to the default text)")
    if len(typed) > REPLY_MAX:
        raise ctx.usage(f"the text is {len(typed)} characters long; at most {REPLY_MAX}")
    text = None if typed.lower() == "none" else typed

    def write(tx: Tx) -> ChannelRecord:
        found = _known(subscriptions.channel_by_name(tx.conn, name), name)
        subscriptions.update_channel(tx.conn, found.id, **{f"{which}_reply": text})
        return found

    found = await ctx.services.write(write)
    ctx.services.pipeline.keywords_changed()  # the pipeline keeps channels with their texts
    if text is None:
        return Reply(title=f"Channel {found.name} confirms {which}ing with the default text.")
    return Reply(title=f"Channel {found.name} confirms {which}ing with: {text}")


@channel.sub(
    "bind",
    usage=f"<name> <{'|'.join(PLATFORMS)}|none>",
    summary="customers who sign up on that platform (their first message) join the channel",
    example="/channel bind news telegram",
    role=Role.MANAGER,
)
async def _bind(ctx: Context, args: list[str]) -> Reply:
    _exactly(ctx, args, 2)
    name = args[0]
    platform = platform_or_none(ctx, args[1])

    def write(tx: Tx) -> ChannelRecord:
        found = _known(subscriptions.channel_by_name(tx.conn, name), name)
        subscriptions.update_channel(tx.conn, found.id, platform=platform)
        return found

    found = await ctx.services.write(write)
    ctx.services.pipeline.keywords_changed()
    if platform is None:
        return Reply(title=f"Channel {found.name} is not bound to a platform any more.")
    return Reply(
        title=f"Channel {found.name} is bound to {platform}.", lines=(_bound_line(ctx, platform),)
    )


# -- members by hand --------------------------------------------------------------------------


@channel.sub(
    "add",
    usage='<name> <contact> --consent "<how they agreed>"',
    summary="subscribe a contact (#id, number or chat id) by hand; say how they gave consent",
    example='/channel add news #12 --consent "asked for it by phone on 2026-11-25"',
    role=Role.MANAGER,
)
async def _add(ctx: Context, args: list[str]) -> Reply:
    ctx.need(args, 2)
    name = args[0]
    options = _options(ctx, args[2:], ("--consent",))
    consent = _consent(ctx, options.get("--consent"))
    contact = await find_contact(ctx, args[1])
    found, joined = await add_member(ctx, name, contact, consent)
    if not joined:
        return Reply(title=f"{label(contact)} is a member of {found.name} already.")
    return Reply(title=f"{label(contact)} joined {found.name}.", lines=(f"Consent: {consent}",))


def _consent(ctx: Context, typed: str | None) -> str:
    consent = (typed or "").strip()
    if not consent:
        raise ctx.usage("adding a contact by hand needs --consent: how they agreed to get messages")
    if len(consent) > CONSENT_MAX:
        raise ctx.usage(f"the consent text is {len(consent)} characters; at most {CONSENT_MAX}")
    return consent


async def add_member(
    ctx: Context, name: str, contact: ContactRecord, consent: str
) -> tuple[ChannelRecord, bool]:
    """Subscribe a contact by hand with the consent they gave, as `/channel add` does; False
    when they were a member already. Someone who opted out has to opt in themselves."""
    consent = _consent(ctx, consent)
    if contact.opted_out_at is not None:
        raise CommandError(
            f"{label(contact)} opted out on {contact.opted_out_at:%Y-%m-%d}; they have to opt"
            " in again themselves (e.g. send START)."
        )
    source = f"by hand ({ctx.who}): {consent}"[:128]
    now = ctx.now

    def write(tx: Tx) -> tuple[ChannelRecord, bool]:
        found = _known(subscriptions.channel_by_name(tx.conn, name), name)
        return found, subscriptions.join(tx.conn, found.id, contact.id, source, now)

    return await ctx.services.write(write)


async def remove_member(
    ctx: Context, name: str, contact: ContactRecord
) -> tuple[ChannelRecord, bool]:
    """Take a contact out of a channel by hand; False when they were not a member."""
    source = f"removed by {ctx.who}"[:128]
    now = ctx.now

    def write(tx: Tx) -> tuple[ChannelRecord, list[int]]:
        found = _known(subscriptions.channel_by_name(tx.conn, name), name)
        return found, subscriptions.leave(tx.conn, contact.id, source, now, found.id)

    found, ended = await ctx.services.write(write)
    return found, bool(ended)


@channel.sub(
    "remove",
    usage="<name> <contact>",
    summary="take a contact out of a channel by hand",
    example="/channel remove news #12",
    role=Role.MANAGER,
)
async def _remove(ctx: Context, args: list[str]) -> Reply:
    _exactly(ctx, args, 2)
    name = args[0]
    contact = await find_contact(ctx, args[1])
    found, ended = await remove_member(ctx, name, contact)
    if not ended:
        return Reply(ok=False, title=f"{label(contact)} is not a member of {found.name}.")
    return Reply(title=f"{label(contact)} left {found.name}.")


# -- consent words ----------------------------------------------------------------------------


@channel.sub(
    "words",
    usage="[list | add <stop|start> <language> <word…> | remove <word…>]",
    summary="the consent words: a whole message of a stop word unsubscribes from every channel,"
    " a start word brings back what STOP ended",
    example="/channel words add stop de kündigen",
    role=Role.AGENT,
)
async def _words(ctx: Context, args: list[str]) -> Reply:
    action = args[0].lower() if args else "list"
    if action == "list":
        if len(args) > 1:
            raise ctx.usage(f"words list takes no arguments (got {' '.join(args[1:])})")
        return await _words_list(ctx)
    if action not in ("add", "remove"):
        raise ctx.usage(f"{args[0]} is not an action of words; use list, add or remove")
    if ctx.role < Role.MANAGER:
        raise CommandError(
            f"/channel words {action} needs the manager role; you have the {ctx.role.label} role."
        )
    if action == "add":
        return await _words_add(ctx, args[1:])
    return await _words_remove(ctx, args[1:])


async def _words_list(ctx: Context) -> Reply:
    listed = await ctx.services.read(subscriptions.list_consent_words)
    grouped: dict[tuple[str, str], list[str]] = {}
    for kind, language, word in listed:
        grouped.setdefault((kind, language), []).append(word)
    lines = [
        f"*{kind}* {language}: {', '.join(f'`{w}`' for w in found)}"
        for (kind, language), found in grouped.items()
    ]
    stops = sum(1 for kind, _, _ in listed if kind == "stop")
    return Reply(
        title=f"Consent words: {stops} stop, {len(listed) - stops} start",
        lines=(
            *lines,
            "A whole message of a stop word unsubscribes from every channel; `STOP <join"
            " keyword>` leaves one. A start word brings back what STOP ended.",
        ),
    )


async def _words_add(ctx: Context, args: list[str]) -> Reply:
    if len(args) < 3:
        raise ctx.usage("words add needs a kind (stop or start), a language and the words")
    kind, language = args[0].lower(), args[1].lower()
    if kind not in KINDS:
        raise ctx.usage(f"{args[0]} is not a kind of consent word; use stop or start")
    if _LANGUAGE.fullmatch(language) is None:
        raise ctx.usage(f"{args[1]} is not a language code; use e.g. en, de, pt-br")
    wanted = [_checked_keyword(ctx, word, "a consent word") for word in args[2:]]

    def write(tx: Tx) -> tuple[list[str], list[str]]:
        known = subscriptions.consent_words(tx.conn)
        join, leave = subscriptions.channels_by_keyword(tx.conn)
        added: list[str] = []
        already: list[str] = []
        for word in wanted:
            folded = fold(word)
            owner = join.get(folded) or leave.get(folded)
            if owner is not None:
                which = "join" if folded in join else "leave"
                raise CommandError(
                    f"{word} is the {which} keyword of channel {owner.name}; change that first."
                )
            if subscriptions.add_consent_word(tx.conn, word, kind, language):
                added.append(folded)
            else:
                already.append(f"{folded} ({known.get(folded, kind)})")
        return added, already

    added, already = await ctx.services.write(write)
    ctx.services.pipeline.keywords_changed()
    lines = [f"Already listed: {', '.join(already)}"] if already else []
    if not added:
        return Reply(ok=False, title="Nothing added.", lines=tuple(lines))
    return Reply(
        title=f"Added {kind} word{'s' if len(added) != 1 else ''} ({language}):"
        f" {', '.join(added)}",
        lines=tuple(lines),
    )


async def _words_remove(ctx: Context, args: list[str]) -> Reply:
    if not args:
        raise ctx.usage("words remove needs the words to remove")
    wanted = [fold(word) for word in args]

    def write(tx: Tx) -> tuple[list[str], list[str]]:
        known = subscriptions.consent_words(tx.conn)
        stops = {w for w, kind in known.items() if kind == "stop"}
        if stops and stops <= set(wanted):
            raise CommandError("At least one stop word must stay: customers need a way out.")
        removed = [w for w in wanted if subscriptions.remove_consent_word(tx.conn, w)]
        return removed, [w for w in wanted if w not in removed]

    removed, missing = await ctx.services.write(write)
    ctx.services.pipeline.keywords_changed()
    lines = [f"Not in the list: {', '.join(missing)}"] if missing else []
    if not removed:
        return Reply(ok=False, title="Nothing removed.", lines=tuple(lines))
    return Reply(title=f"Removed: {', '.join(removed)}", lines=tuple(lines))


# -- helpers ----------------------------------------------------------------------------------


def _exactly(ctx: Context, args: Sequence[str], count: int) -> None:
    ctx.need(args, count)
    if len(args) > count:
        raise ctx.usage(f"too many arguments: {' '.join(args[count:])}")


def channel_name(ctx: Context, word: str) -> str:
    """A channel name as typed, if it is one: 1-64 letters, digits, - or _."""
    if _NAME.fullmatch(word) is None:
        raise ctx.usage(f"{word} is not a channel name: 1-64 letters, digits, - or _")
    return word


def _which(ctx: Context, word: str) -> str:
    if word.lower() not in ("join", "leave"):
        raise ctx.usage(f"{word} is neither join nor leave")
    return word.lower()


def _checked_keyword(ctx: Context, word: str, what: str = "a keyword") -> str:
    if not word or len(word) > KEYWORD_MAX:
        raise ctx.usage(f"{what} has 1-{KEYWORD_MAX} characters ({word!r} has {len(word)})")
    if word != word.strip():
        raise ctx.usage(f"{what} may not start or end with a space ({word!r})")
    if "`" in word or "\n" in word:
        raise ctx.usage(f"{what} may not contain backticks or line breaks")
    return word


def keyword_or_none(ctx: Context, word: str | None) -> str | None:
    """A join or leave keyword, checked; None for none."""
    if word is None or word.lower() == "none":
        return None
    return _checked_keyword(ctx, word)


def platform_or_none(ctx: Context, word: str | None) -> str | None:
    """A platform a channel may be bound to; None for none."""
    if word is None or word.lower() == "none":
        return None
    if word.lower() not in PLATFORMS:
        raise ctx.usage(f"{word} is not a platform; use {', '.join(PLATFORMS)} or none")
    return word.lower()


def _options(ctx: Context, args: Sequence[str], allowed: Sequence[str]) -> dict[str, str]:
    """`--flag value` and `--flag=value` pairs; nothing else may appear."""
    found: dict[str, str] = {}
    rest = list(args)
    while rest:
        word = rest.pop(0)
        flag, equals, value = word.partition("=")
        flag = flag.lower()
        if flag not in allowed:
            raise ctx.usage(f"unexpected {word}; allowed here: {', '.join(allowed)}")
        if not equals:
            if not rest:
                raise ctx.usage(f"{flag} needs a value")
            value = rest.pop(0)
        if flag in found:
            raise ctx.usage(f"{flag} is given twice")
        found[flag] = value
    return found


def _check_keyword(conn: Connection, keyword: str, channel_id: int | None, which: str = "") -> None:
    """Refuse a consent word, and another channel's keyword (or this one's other keyword)."""
    folded = fold(keyword)
    kind = subscriptions.consent_words(conn).get(folded)
    if kind is not None:
        raise CommandError(f"{keyword} is a {kind} word ({KINDS[kind]}); choose another keyword.")
    for ch in subscriptions.all_channels(conn):
        for used, label_ in ((ch.join_keyword, "join"), (ch.leave_keyword, "leave")):
            if used and fold(used) == folded and not (ch.id == channel_id and label_ == which):
                raise Conflict(f"{keyword} is the {label_} keyword of channel {ch.name} already.")


def _known(found: ChannelRecord | None, name: str) -> ChannelRecord:
    if found is None:
        raise NotFound(f"There is no channel {name}. `/channel list` shows them all.")
    return found


def _kw(keyword: str | None) -> str:
    return f"`{keyword}`" if keyword else "none"


def _members(counts: dict[str, int]) -> str:
    total = sum(counts.values())
    text = f"{total} member{'s' if total != 1 else ''}"
    if counts:
        text += " (" + ", ".join(f"{p} {n}" for p, n in sorted(counts.items())) + ")"
    return text


def _bound_line(ctx: Context, platform: str) -> str:
    line = f"New {platform} customers join it when they first write."
    if ctx.services.connector(platform) is None:
        line += f" No {platform} account is configured yet."
    return line


def _deep_link_note(keyword: str) -> list[str]:
    if _DEEP_LINK.fullmatch(keyword):
        return [f"Telegram deep links can carry it: `t.me/<bot>?start={keyword}`"]
    return ["Telegram deep links cannot carry it (only letters, digits, - and _)."]
