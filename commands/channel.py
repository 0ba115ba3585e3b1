"""Subscriber channels: `/channel create|list|show|rename|delete|keyword|reply|bind|members|add|
remove|words`. Customers join and leave by keyword; the pipeline matches what they send."""

from __future__ import annotations

import re
from collections.abc import Sequence

from bridge.config_sections import PLATFORMS
from bridge.services import channels
from bridge.services.channels import (
    KINDS,
    LANGUAGE,
    REPLY_MAX,
    channel_name,
    checked_keyword,
    consent_text,
    keyword_or_none,
    platform_or_none,
)
from bridge.services.contacts import find_contact, label
from bridge.staffio import Reply
from commands.base import CommandError, Context, Role, command

channel = command("channel", "Subscriber channels customers join and leave by keyword")

# Telegram deep links (t.me/<bot>?start=<payload>) carry only these characters.
_DEEP_LINK = re.compile(r"[A-Za-z0-9_-]{1,64}")
MEMBERS_SHOWN = 50


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
    found, counts = await channels.all_channels(ctx.services)
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
    ch, counts = await channels.channel_named(ctx.services, args[0])
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
    listed = await channels.members(ctx.services, args[0], MEMBERS_SHOWN)
    ch, counts, page = listed.channel, listed.counts, listed.page
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
    name = channel_name(args[0])
    options = _options(ctx, args[1:], ("--join", "--leave", "--platform"))
    created = await channels.create_channel(
        ctx.services,
        name,
        options.get("--join"),
        options.get("--leave"),
        options.get("--platform"),
        who=ctx.who,
        now=ctx.now,
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


@channel.sub(
    "rename",
    usage="<name> <new name>",
    summary="give a channel another name (keywords and members stay)",
    example="/channel rename news weekly-news",
    role=Role.MANAGER,
)
async def _rename(ctx: Context, args: list[str]) -> Reply:
    _exactly(ctx, args, 2)
    old, new = args[0], channel_name(args[1])
    found = await channels.rename_channel(ctx.services, old, new)
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
    found, count = await channels.delete_channel(ctx.services, name, confirmed=confirmed)
    dropped = f"{count} member{'s' if count != 1 else ''}"
    if not confirmed:
        return Reply(
            title=f"Deleting {found.name} would drop its {dropped}.",
            lines=(f"To delete it: `/channel delete {found.name} --confirm`",),
        )
    return Reply(title=f"Channel {found.name} deleted; {dropped} dropped.")


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
    keyword = keyword_or_none(" ".join(args[2:]))
    found = await channels.set_keyword(ctx.services, name, which, keyword)
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
    found = await channels.set_fields(ctx.services, name, **{f"{which}_reply": text})
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
    platform = platform_or_none(args[1])
    found = await channels.set_fields(ctx.services, name, platform=platform)
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
    consent = consent_text(options.get("--consent"))
    contact = await find_contact(ctx.services, args[1])
    found, joined = await channels.add_member(
        ctx.services, name, contact, consent, who=ctx.who, now=ctx.now
    )
    if not joined:
        return Reply(title=f"{label(contact)} is a member of {found.name} already.")
    return Reply(title=f"{label(contact)} joined {found.name}.", lines=(f"Consent: {consent}",))


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
    contact = await find_contact(ctx.services, args[1])
    found, ended = await channels.remove_member(
        ctx.services, name, contact, who=ctx.who, now=ctx.now
    )
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
    listed = await channels.consent_words(ctx.services)
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
    if LANGUAGE.fullmatch(language) is None:
        raise ctx.usage(f"{args[1]} is not a language code; use e.g. en, de, pt-br")
    wanted = [checked_keyword(word, "a consent word") for word in args[2:]]
    added, already = await channels.add_consent_words(ctx.services, kind, language, wanted)
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
    removed, missing = await channels.remove_consent_words(ctx.services, args)
    lines = [f"Not in the list: {', '.join(missing)}"] if missing else []
    if not removed:
        return Reply(ok=False, title="Nothing removed.", lines=tuple(lines))
    return Reply(title=f"Removed: {', '.join(removed)}", lines=tuple(lines))


# -- helpers ----------------------------------------------------------------------------------


def _exactly(ctx: Context, args: Sequence[str], count: int) -> None:
    ctx.need(args, count)
    if len(args) > count:
        raise ctx.usage(f"too many arguments: {' '.join(args[count:])}")


def _which(ctx: Context, word: str) -> str:
    if word.lower() not in ("join", "leave"):
        raise ctx.usage(f"{word} is neither join nor leave")
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
