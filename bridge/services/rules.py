"""Chatbot rules: checked as the engine can run them, saved with their answer-files, switched,
deleted, listed and tested against a message; the pipeline applies a change at once."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, time

from bridge.errors import AddressRefused, Conflict, Invalid, NotFound, Refused
from bridge.rules import Incoming, Matcher, RuleError, url_shape, validate
from bridge.services import Services
from bridge.services.channels import channel_by_name
from bridge.services.rule_files import with_files
from bridge.types import Action, FileData, Rule
from storage import Tx

NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9 _.-]{0,63}"
_NAME = re.compile(f"^{NAME_PATTERN}$")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HOURS = re.compile(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")
# The compact words for the actions, and the handbook's names, which work as well.
ACTION_WORDS = {
    "answer": "autoAnswer",
    "answer-file": "autoAnswerMedia",
    "mail": "mailForward",
    "post": "webserviceForward",
    "bot": "httpBotFwd",
    "sms": "smsFwd",
    "join": "addToChannel",
    "leave": "removeFromChannel",
    "stop": "i18nStop",
    "ignore": "doNothing",
}
URL_ACTIONS = frozenset({"webserviceForward", "httpBotFwd"})

Meta = tuple[str, datetime, str, datetime]  # created by, at; updated by, at


@dataclass(frozen=True, slots=True)
class Described:
    """A rule with who made and changed it when, and the names of its answer-files."""

    rule: Rule
    meta: Meta
    files: dict[int, str]
    history: tuple[tuple[str, str, datetime], ...] = ()  # (change, by, at), newest first


# -- checks -----------------------------------------------------------------------------------


def rule_name(word: str) -> str:
    """A rule name as typed, if it is one."""
    if not _NAME.match(word):
        raise Invalid(f"{word} is not a rule name (letters, digits, space . _ -; up to 64)")
    return word


def parse_hours(value: str) -> tuple[time | None, time | None]:
    """A time window as typed (`08:00-18:00`; `any` for all day): its start and end."""
    if value.lower() in ("any", "all", "none"):
        return None, None
    found = _HOURS.match(value)
    if (
        not found
        or int(found[1]) > 23
        or int(found[3]) > 23
        or int(found[2]) > 59
        or int(found[4]) > 59
    ):
        raise Invalid(f"{value} is not a time window like 08:00-18:00")
    start, end = time(int(found[1]), int(found[2])), time(int(found[3]), int(found[4]))
    if start == end:
        raise Invalid("the window starts and ends at the same time")
    return start, end


def parse_days(value: str) -> frozenset[int]:
    """Weekdays as typed (`mon-fri`, `mon,wed,sat`, `all`): 0 (Monday) to 6 (Sunday)."""
    words = value.lower()
    if words in ("all", "any", "every"):
        return frozenset(range(7))
    days: set[int] = set()
    for part in words.split(","):
        first, _, last = part.strip().partition("-")
        if first[:3] not in DAYS or (last and last[:3] not in DAYS):
            raise Invalid(f"{value} is not a list of days like mon-fri or mon,wed,sat")
        a = DAYS.index(first[:3])
        b = DAYS.index(last[:3]) if last else a
        span = range(a, b + 1) if a <= b else [*range(a, 7), *range(b + 1)]
        days.update(span)
    return frozenset(days)


def action_kind(word: str) -> str:
    """The handbook's name of an action typed as a compact word (`answer`) or by that name."""
    key = word.strip()
    kind = ACTION_WORDS.get(key.lower()) or next(
        (k for k in ACTION_WORDS.values() if k.lower() == key.lower()), None
    )
    if kind is None:
        choices = ", ".join(ACTION_WORDS)
        raise Invalid(f"{key} is not an action; use one of {choices}")
    return kind


def action_word(action: Action) -> str:
    """The compact word of an action (`answer` for autoAnswer)."""
    return next(w for w, k in ACTION_WORDS.items() if k == action.kind)


def check_rule(built: Rule) -> Rule:
    """The rule as it is saved, if the engine can run it (RE2 takes its pattern, …)."""
    if built.keyword_type in ("always", "rest"):
        built = replace(built, pattern=None)
    try:
        validate(built)
    except RuleError as exc:
        raise Refused(f"The rule was not saved: {exc}") from None
    return built


async def check_targets(services: Services, built: Rule) -> None:
    """What `validate` cannot know: channels that exist, an SMS account for smsFwd, web
    addresses the outbound guard lets through."""
    for number, action in enumerate(built.actions, 1):
        if action.kind in ("addToChannel", "removeFromChannel"):
            name = action.target or ""
            found = await channel_by_name(services, name)
            if found is None:
                raise Refused(f"there is no channel {name}; `/channel list` shows them")
        if action.kind == "smsFwd" and services.connector("sms") is None:
            raise Refused("smsFwd needs an SMS account ([sms] in the settings)")
        if action.kind == "mailForward" and not services.settings.mail.enabled:
            raise Refused("mailForward needs the mail server ([mail] host and from_address)")
        if action.kind in URL_ACTIONS:
            try:
                await services.pipeline.outbound.check(url_shape(action.target or ""))
            except AddressRefused as exc:
                raise Refused(
                    f"The rule was not saved: action {number} ({action.kind}): {exc.reason}"
                ) from None


# -- reading ----------------------------------------------------------------------------------


async def all_rules(services: Services) -> list[Rule]:
    """Every rule, in the order the engine tries them."""
    return await services.read(lambda tx: tx.rules.all_rules())


async def named_rule(services: Services, name: str) -> Rule:
    """The rule of that name (case-blind); NotFound names the command that lists them."""
    found = await services.read(lambda tx: tx.rules.rule_named(name))
    if found is None:
        raise NotFound(f"there is no rule {name}; `/rule list` shows them")
    return found


async def rule_by_id(services: Services, rule_id: int) -> Rule | None:
    """A rule by id."""
    return await services.read(lambda tx: tx.rules.rule_by_id(rule_id))


async def history(services: Services, rule_id: int) -> list[tuple[str, str, datetime]]:
    """A rule's latest changes as (change, by, at)."""
    return await services.read(lambda tx: tx.rules.history(rule_id))


async def known_files(services: Services, ids: Sequence[int]) -> dict[int, str]:
    """The names of the kept answer-files among `ids`."""
    return await services.read(lambda tx: tx.rules.file_names(ids))


def _files(tx: Tx, rules: Sequence[Rule]) -> dict[int, str]:
    ids = [a.media_id for r in rules for a in r.actions if a.media_id is not None]
    return tx.rules.file_names(ids)


async def rules_page(services: Services, after: int | None, limit: int) -> list[Described]:
    """Rules by id from after `after`, described (rules are few: one read, paged here)."""

    def read(tx: Tx) -> list[Described]:
        found = sorted(tx.rules.all_rules(), key=lambda r: r.id)
        chosen = [r for r in found if after is None or r.id > after][:limit]
        files = _files(tx, chosen)
        shown = []
        for r in chosen:
            meta = tx.rules.rule_meta(r.id)
            if meta is not None:  # deleted meanwhile
                shown.append(Described(r, meta, files))
        return shown

    return await services.read(read)


async def described(services: Services, rule_id: int, changes: int) -> Described | None:
    """A rule described, with its latest `changes` changes."""

    def read(tx: Tx) -> Described | None:
        found = tx.rules.rule_by_id(rule_id)
        meta = tx.rules.rule_meta(rule_id)
        if found is None or meta is None:
            return None
        shown = tx.rules.history(rule_id, changes)
        return Described(found, meta, _files(tx, [found]), tuple(shown))

    return await services.read(read)


def would_fire(
    services: Services, rules: Sequence[Rule], text: str, platform: str, at: datetime
) -> tuple[list[Rule], bool]:
    """The rules that fire for a message (per-contact limits aside), and whether they are the
    `rest` rules (none other fired)."""
    zone = services.pipeline.rulebook.zone
    matches = Matcher.build(rules, zone).match(Incoming(text=text, platform=platform, at=at))
    return (matches.rules, False) if matches.rules else (matches.rest, bool(matches.rest))


# -- changing ---------------------------------------------------------------------------------


def _taken(name: str) -> Conflict:
    return Conflict(f"a rule named {name} exists; change it with `/rule edit {name} …`")


async def free_name(services: Services, name: str) -> None:
    """Conflict if a rule has this name already (before anything is fetched for a new one)."""
    if await services.read(lambda tx: tx.rules.rule_named(name)) is not None:
        raise _taken(name)


async def add_rule(
    services: Services,
    built: Rule,
    files: Mapping[int, FileData] | None,
    *,
    who: str,
    now: datetime,
) -> Rule:
    """Save a new, checked rule (its name must be free) with the files of its answer-file
    actions (by action index), in one transaction; the rules apply it at once."""
    name = built.name

    def write(tx: Tx) -> Rule | None:
        if tx.rules.rule_named(name) is not None:
            return None
        return tx.rules.add_rule(with_files(tx, built, files or {}, who, now), who, now)

    stored = await services.write(write)
    if stored is None:
        raise _taken(name)
    services.pipeline.rules_changed()
    return stored


async def edit_rule(
    services: Services,
    built: Rule,
    files: Mapping[int, FileData] | None = None,
    *,
    who: str,
    now: datetime,
    change: str = "edit",
) -> Rule:
    """Overwrite a rule with a checked version of it (and the files of its answer-file
    actions, by action index); the rules apply it at once."""

    def write(tx: Tx) -> Rule:
        saved = with_files(tx, built, files or {}, who, now)
        tx.rules.edit_rule(saved, who, now, change=change)
        return saved

    saved = await services.write(write)
    services.pipeline.rules_changed()
    return saved


async def delete_rule(services: Services, found: Rule, *, who: str, now: datetime) -> None:
    """Remove a rule (the change log keeps it); the rules drop it at once."""
    await services.write(lambda tx: tx.rules.delete_rule(found, who, now))
    services.pipeline.rules_changed()


async def switch_rule(
    services: Services, found: Rule, enabled: bool, *, who: str, now: datetime
) -> bool:
    """Switch a rule on or off; False when it was so already."""
    if found.enabled == enabled:
        return False
    change = "enable" if enabled else "disable"
    await edit_rule(services, replace(found, enabled=enabled), who=who, now=now, change=change)
    return True
