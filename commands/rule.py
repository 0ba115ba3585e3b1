"""`/rule`: the chatbot's rules — add, list, show, edit, enable, disable, delete, test.

One compact syntax for Slack and Matrix (`!rule …`):

    /rule add <name> <always|rest|contain "<kw, kw>"|regexp "<pattern>"> [options] --do "<action>"…

Options: `--on telegram,sms` · `--hours 08:00-18:00` · `--days mon-fri` (or `mon,wed,sat`)
· `--limit once|always|every 2h` · `--priority 5` · `--disabled`. Actions (one `--do` each):
`answer: <text>` · `answer-file: <https URL> [| caption]` · `mail: <address> [| subject [| body]]`
· `post: <https URL>` · `bot: <https URL>` · `sms: <+number> [| text]` · `join: <channel>` ·
`leave: <channel>` · `stop` · `ignore`.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import time

from bridge.config_sections import PLATFORMS
from bridge.pipeline.automation import describe
from bridge.redact import short_url
from bridge.services import rules
from bridge.services.blacklist import parse_duration
from bridge.services.rule_files import FILE_PENDING, check_file_url, fetch_files
from bridge.services.rules import (
    DAYS,
    URL_ACTIONS,
    action_kind,
    action_word,
    check_rule,
    parse_days,
    parse_hours,
    rule_name,
)
from bridge.staffio import Form, FormField, Reply
from bridge.types import Action, Rule
from commands.base import Context, Role, command

rule = command("rule", "Chatbot rules: automatic answers, forwards and channel changes")

ADD_EXAMPLE = (
    '/rule add opening-hours contain "open, hours" --hours 18:00-08:00 --limit every 1d'
    ' --do "answer: We are open 8 to 18, {NICKNAME}; we answer in the morning."'
)


@dataclass
class _Draft:
    """What `add` and `edit` read from the arguments."""

    keyword_type: str | None = None
    pattern: str | None = None
    platforms: frozenset[str] | None = None
    start: time | None = None
    end: time | None = None
    hours_given: bool = False
    weekdays: frozenset[int] | None = None
    limit: str | None = None
    limit_seconds: int | None = None
    priority: int | None = None
    enabled: bool | None = None
    actions: list[str] | None = None


def _parse(ctx: Context, args: Sequence[str], *, need_when: bool) -> _Draft:
    draft = _Draft()
    rest = list(args)
    if rest and not rest[0].startswith("--"):
        word = rest.pop(0).lower()
        if word in ("always", "rest"):
            draft.keyword_type = word
        elif word in ("contain", "regexp"):
            if not rest:
                raise ctx.usage(
                    f"{word} needs its {'keywords' if word == 'contain' else 'pattern'}"
                )
            draft.keyword_type, draft.pattern = word, rest.pop(0)
        else:
            raise ctx.usage(f"{word} is not a keyword type; use always, rest, contain or regexp")
    elif need_when:
        raise ctx.usage('say when the rule fires: always, rest, contain "…" or regexp "…"')
    while rest:
        option = rest.pop(0).lower()
        if option == "--disabled":
            draft.enabled = False
            continue
        if option == "--enabled":
            draft.enabled = True
            continue
        if not rest:
            raise ctx.usage(f"{option} needs a value")
        value = rest.pop(0)
        if option == "--on":
            names = {p.strip().lower() for p in value.split(",") if p.strip()}
            unknown = names - set(PLATFORMS) - {"all"}
            if unknown:
                raise ctx.usage(
                    f"unknown messenger {', '.join(sorted(unknown))}; use {', '.join(PLATFORMS)}"
                )
            draft.platforms = frozenset() if "all" in names else frozenset(names)
        elif option == "--hours":
            draft.hours_given = True
            draft.start, draft.end = parse_hours(value)
        elif option == "--days":
            draft.weekdays = parse_days(value)
        elif option == "--limit":
            word = value.lower()
            if word in ("once", "always"):
                draft.limit, draft.limit_seconds = word, None
            elif word == "every":
                if not rest:
                    raise ctx.usage("--limit every needs a time, e.g. every 2h")
                span = parse_duration(rest.pop(0))
                draft.limit, draft.limit_seconds = "every", int(span.total_seconds())
            else:
                raise ctx.usage(f"{value} is not a limit; use once, always or every <time>")
        elif option == "--priority":
            try:
                draft.priority = int(value)
            except ValueError:
                raise ctx.usage(f"{value} is not a number") from None
        elif option == "--do":
            draft.actions = [*(draft.actions or []), value]
        else:
            raise ctx.usage(f"unknown option {option}")
    return draft


async def _action(ctx: Context, text: str) -> tuple[Action, str | None]:
    """The action typed, and for answer-file the URL of its file (fetched once the whole
    rule passed its checks)."""
    word, _, value = text.partition(":")
    kind = action_kind(word)
    parts = [p.strip() for p in value.split("|")]
    first = parts[0] if parts else ""
    match kind:
        case "autoAnswer":
            return Action(kind=kind, text=value.strip()), None
        case "autoAnswerMedia":
            check_file_url(first)
            caption = parts[1] if len(parts) > 1 else None
            return Action(kind=kind, media_id=FILE_PENDING, text=caption), first
        case "mailForward":
            return Action(
                kind=kind,
                target=first,
                subject=parts[1] if len(parts) > 1 else None,
                text=parts[2] if len(parts) > 2 else None,
            ), None
        case "smsFwd":
            return Action(kind=kind, target=first, text=parts[1] if len(parts) > 1 else None), None
        case "i18nStop":
            return Action(kind=kind, target=first or None), None
        case "doNothing":
            return Action(kind=kind), None
        case _:
            return Action(kind=kind, target=first), None


async def _actions(ctx: Context, texts: Sequence[str]) -> tuple[list[Action], dict[int, str]]:
    """The actions typed, and the URLs of the files still to fetch by action index."""
    actions: list[Action] = []
    files: dict[int, str] = {}
    for index, text in enumerate(texts):
        action, url = await _action(ctx, text)
        actions.append(action)
        if url is not None:
            files[index] = url
    return actions, files


def _built(draft: _Draft, base: Rule, actions: list[Action] | None) -> Rule:
    return replace(
        base,
        keyword_type=draft.keyword_type or base.keyword_type,  # type: ignore[arg-type]
        pattern=draft.pattern if draft.keyword_type else base.pattern,
        platforms=draft.platforms if draft.platforms is not None else base.platforms,
        start=draft.start if draft.hours_given else base.start,
        end=draft.end if draft.hours_given else base.end,
        weekdays=draft.weekdays if draft.weekdays is not None else base.weekdays,
        limit=draft.limit or base.limit,  # type: ignore[arg-type]
        limit_seconds=draft.limit_seconds if draft.limit else base.limit_seconds,
        priority=draft.priority if draft.priority is not None else base.priority,
        enabled=draft.enabled if draft.enabled is not None else base.enabled,
        actions=tuple(actions) if actions is not None else base.actions,
    )


@rule.sub(
    "add",
    usage='<name> <always|rest|contain "<kw, kw>"|regexp "<pattern>"> [options] --do "<action>"…',
    summary="a new rule; options --on, --hours, --days, --limit, --priority, --disabled",
    example=ADD_EXAMPLE,
    role=Role.MANAGER,
)
async def _add(ctx: Context, args: list[str]) -> Reply:
    if not args:
        return Reply(
            title="A new rule",
            lines=(f"Type it as one line, e.g. `{ADD_EXAMPLE}`", "`/rule help` lists the options."),
            form=rule_form("rule add", None),
        )
    ctx.need(args, 2)
    name = rule_name(args[0])
    draft = _parse(ctx, args[1:], need_when=True)
    if not draft.actions:
        raise ctx.usage('a rule needs at least one --do "<action>"')
    actions, urls = await _actions(ctx, draft.actions)
    base = Rule(id=0, name=name, keyword_type="always")
    built = check_rule(_built(draft, base, actions))
    await rules.check_targets(ctx.services, built)
    await rules.free_name(ctx.services, name)
    # Fetched last: a rule refused by any check keeps no file.
    files = await fetch_files(ctx.services, urls)
    stored = await rules.add_rule(ctx.services, built, files, who=ctx.who, now=ctx.now)
    return Reply(title=f"Rule {name} added", lines=_describe(stored))


@rule.sub("list", summary="every rule, one line each", example="/rule list", role=Role.AGENT)
async def _list(ctx: Context, args: list[str]) -> Reply:
    found = await rules.all_rules(ctx.services)
    if not found:
        return Reply(title="No rules yet", lines=(f"Add one: `{ADD_EXAMPLE}`",))
    lines = [
        f"`{r.name}`{'' if r.enabled else ' (disabled)'}: {_when(r)} → "
        + ", ".join(_action_line(a) for a in r.actions)
        for r in found
    ]
    return Reply(title=f"{len(found)} rule{'' if len(found) == 1 else 's'}", lines=tuple(lines))


@rule.sub(
    "show",
    usage="<name>",
    summary="a rule in full, with its history",
    example="/rule show opening-hours",
)
async def _show(ctx: Context, args: list[str]) -> Reply:
    ctx.need(args, 1)
    found = await rules.named_rule(ctx.services, " ".join(args))
    changes = await rules.history(ctx.services, found.id)
    # URLs in full (with their tokens) only to a manager, and only where no one else reads.
    full = ctx.role >= Role.MANAGER and ctx.request.private_answers
    lines = list(_describe(found, full=full))
    lines.extend(f"{change} by {by} on {at:%Y-%m-%d %H:%M} UTC" for change, by, at in changes)
    return Reply(title=f"Rule {found.name}", lines=tuple(lines), private=full)


@rule.sub(
    "edit",
    usage='<name> [<when>] [options] [--do "<action>"…]',
    summary="change a rule: what you give replaces what it had (--do replaces all actions)",
    example="/rule edit opening-hours --hours 17:00-09:00 --days mon-fri",
    role=Role.MANAGER,
)
async def _edit(ctx: Context, args: list[str]) -> Reply:
    ctx.need(args, 1)
    found = await rules.named_rule(ctx.services, args[0])
    if len(args) == 1:
        return Reply(
            title=f"Rule {found.name}",
            lines=(*_describe(found), f"Change it with `/rule edit {found.name} <options>`."),
            form=rule_form(f"rule edit {shlex.quote(found.name)}", found),
        )
    draft = _parse(ctx, args[1:], need_when=False)
    actions, urls = await _actions(ctx, draft.actions) if draft.actions else (None, {})
    built = check_rule(_built(draft, found, actions))
    await rules.check_targets(ctx.services, built)
    # Fetched last: a change refused by any check keeps no file.
    files = await fetch_files(ctx.services, urls)
    saved = await rules.edit_rule(ctx.services, built, files, who=ctx.who, now=ctx.now)
    return Reply(title=f"Rule {found.name} changed", lines=_describe(saved))


async def _switch(ctx: Context, args: list[str], enabled: bool) -> Reply:
    ctx.need(args, 1)
    found = await rules.named_rule(ctx.services, " ".join(args))
    if not await rules.switch_rule(ctx.services, found, enabled, who=ctx.who, now=ctx.now):
        return Reply(title=f"Rule {found.name} is {'enabled' if enabled else 'disabled'} already")
    return Reply(title=f"Rule {found.name} {'enable' if enabled else 'disable'}d")


@rule.sub(
    "enable",
    usage="<name>",
    summary="switch a rule on",
    example="/rule enable opening-hours",
    role=Role.MANAGER,
)
async def _enable(ctx: Context, args: list[str]) -> Reply:
    return await _switch(ctx, args, True)


@rule.sub(
    "disable",
    usage="<name>",
    summary="switch a rule off (it is kept)",
    example="/rule disable opening-hours",
    role=Role.MANAGER,
)
async def _disable(ctx: Context, args: list[str]) -> Reply:
    return await _switch(ctx, args, False)


@rule.sub(
    "delete",
    usage="<name>",
    summary="remove a rule (the change log keeps it)",
    example="/rule delete opening-hours",
    role=Role.MANAGER,
)
async def _delete(ctx: Context, args: list[str]) -> Reply:
    ctx.need(args, 1)
    found = await rules.named_rule(ctx.services, " ".join(args))
    await rules.delete_rule(ctx.services, found, who=ctx.who, now=ctx.now)
    return Reply(title=f"Rule {found.name} deleted")


@rule.sub(
    "test",
    usage='<message…> [--on <messenger>] [--at "YYYY-MM-DD HH:MM"]',
    summary="which rules would fire for a message, and what they would do (nothing is done)",
    example='/rule test "When are you open?" --on telegram',
)
async def _test(ctx: Context, args: list[str]) -> Reply:
    ctx.need(args, 1)
    words = list(args)
    platform, at = "telegram", ctx.now
    for option in ("--on", "--at"):
        if option in words:
            position = words.index(option)
            if position + 1 >= len(words):
                raise ctx.usage(f"{option} needs a value")
            value = words.pop(position + 1)
            words.pop(position)
            if option == "--on":
                if value.lower() not in PLATFORMS:
                    raise ctx.usage(f"unknown messenger {value}; use {', '.join(PLATFORMS)}")
                platform = value.lower()
            else:
                at = ctx.local_time(value)
    text = " ".join(words)
    every = await rules.all_rules(ctx.services)
    zone = ctx.services.pipeline.rulebook.zone
    chosen, rest = rules.would_fire(ctx.services, every, text, platform, at)
    when = f"{at.astimezone(zone):%a %Y-%m-%d %H:%M} {zone.key}"
    if not chosen:
        return Reply(title=f"No rule fires for this message on {platform} ({when})")
    lines = [
        f"`{r.name}`{' (rest)' if rest else ''}: "
        + ", ".join(describe(a) for a in r.actions)
        + (f"; limit {_limit(r)} per contact" if r.limit != "always" else "")
        for r in chosen
    ]
    lines.append("Nothing was done; per-contact limits are not applied in a test.")
    return Reply(
        title=f"{_count(len(chosen))} would fire on {platform} ({when})",
        lines=tuple(lines),
    )


def _count(n: int) -> str:
    return f"{n} rule{'' if n == 1 else 's'}"


def _limit(r: Rule) -> str:
    if r.limit == "every":
        seconds = r.limit_seconds or 0
        for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
            if seconds % size == 0:
                return f"once every {seconds // size}{unit}"
        return f"once every {seconds}s"
    return r.limit


def _when(r: Rule) -> str:
    what = {
        "always": "every message",
        "rest": "when no other rule fires",
        "contain": f"contains {r.pattern}",
        "regexp": f"matches `{r.pattern}`",
    }[r.keyword_type]
    if r.platforms:
        what += f" on {', '.join(sorted(r.platforms))}"
    if r.start and r.end:
        what += f", {r.start:%H:%M}-{r.end:%H:%M}"
    if r.weekdays != frozenset(range(7)):
        what += ", " + ",".join(DAYS[d] for d in sorted(r.weekdays))
    return what


# Actions whose target is a URL (a CRM's or a bot's), often with a token in its query.
def _action_line(action: Action, *, full: bool = False) -> str:
    """An action as typed; a URL shortened (its query often holds a token) unless `full`."""
    word = action_word(action)
    shown = action.target or action.text or ""
    if action.target and action.kind in URL_ACTIONS and not full:
        shown = short_url(action.target)
    if action.kind == "autoAnswerMedia":
        shown = f"file #{action.media_id}"
    return f"{word}{': ' + shown if shown else ''}"


def _describe(r: Rule, *, full: bool = False) -> tuple[str, ...]:
    lines = [
        f"When: {_when(r)}",
        f"Limit: {_limit(r)} per contact · priority {r.priority} · "
        + ("enabled" if r.enabled else "disabled"),
    ]
    lines.extend(f"Does: {_action_line(a, full=full)}" for a in r.actions)
    return tuple(lines)


KEYWORD_CHOICES = (
    ("contain", "contains a keyword"),
    ("regexp", "matches a regular expression"),
    ("always", "every message"),
    ("rest", "when no other rule fires"),
)
DAY_CHOICES = tuple((d, d.capitalize()) for d in DAYS)


def rule_form(command_line: str, current: Rule | None) -> Form:
    """The form of `/rule add` (empty) or `/rule edit <name>` (filled in)."""
    fields = (*_match_fields(current), *_when_fields(current))
    title = "New rule" if current is None else f"Edit {current.name}"[:24]
    return Form(title=title, submit="Save", command=command_line, fields=fields)


def _match_fields(current: Rule | None) -> list[FormField]:
    """The fields of what a rule matches and does: name, trigger, pattern, actions."""
    fields: list[FormField] = []
    if current is None:
        fields.append(FormField(key="name", label="Name", hint="e.g. opening-hours"))
    fields.append(
        FormField(
            key="when",
            label="Fires on",
            kind="select",
            choices=KEYWORD_CHOICES,
            initial=current.keyword_type if current else "contain",
        )
    )
    fields.append(
        FormField(
            key="pattern",
            label="Keywords or pattern",
            initial=current.pattern if current and current.pattern else None,
            optional=True,
            hint='keywords separated by commas ("open, hours"), or an RE2 pattern',
        )
    )
    fields.append(
        FormField(
            key="actions",
            label="Actions, one a line",
            kind="lines",
            option="--do",
            initial=(
                "\n".join(_action_line(a, full=True) for a in current.actions) if current else None
            ),
            hint="answer: <text> · mail: <address> · post: <URL> · bot: <URL> · sms: <+number>"
            " · join: <channel> · leave: <channel> · answer-file: <URL> · stop · ignore",
        )
    )
    return fields


def _when_fields(current: Rule | None) -> list[FormField]:
    """The fields of where and when a rule fires: messengers, hours, days, limit, priority."""
    fields: list[FormField] = []
    fields.append(
        FormField(
            key="on",
            label="Messengers (none: all)",
            kind="multi",
            option="--on",
            choices=tuple((p, p.capitalize()) for p in PLATFORMS),
            initial=tuple(sorted(current.platforms)) if current and current.platforms else None,
            optional=True,
            blank="all" if current else None,
        )
    )
    hours = (
        f"{current.start:%H:%M}-{current.end:%H:%M}"
        if current and current.start and current.end
        else None
    )
    fields.append(
        FormField(
            key="hours",
            label="Time of day",
            option="--hours",
            initial=hours,
            optional=True,
            hint="e.g. 18:00-08:00 (empty: all day)",
            blank="any" if current else None,
        )
    )
    days = tuple(DAYS[d] for d in sorted(current.weekdays)) if current else None
    fields.append(
        FormField(
            key="days",
            label="Days (none: every day)",
            kind="multi",
            option="--days",
            choices=DAY_CHOICES,
            initial=days if days and len(days) < 7 else None,
            optional=True,
            blank="all" if current else None,
        )
    )
    fields.append(
        FormField(
            key="limit",
            label="Limit per contact",
            option="--limit",
            raw=True,
            initial=_limit_words(current) if current else None,
            optional=True,
            hint="always, once, or every 2h / 1d",
        )
    )
    fields.append(
        FormField(
            key="priority",
            label="Priority",
            option="--priority",
            initial=str(current.priority) if current else None,
            optional=True,
            hint="higher fires first",
        )
    )
    return fields


def _limit_words(r: Rule) -> str:
    return _limit(r).replace("once every ", "every ") if r.limit == "every" else r.limit
