"""Chatbot rules: list, show, create, change, switch on and off, delete, and test them (the
`/rule` command's logic and checks: RE2 patterns, placeholders, targets)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from bridge.api.errors import ApiError, not_found
from bridge.api.framework import Call, Resource
from bridge.api.paging import Page, PageQuery
from bridge.api.schemas import ID_MAX, Body, Record, Time
from bridge.config_sections import PLATFORMS, PlatformName
from bridge.errors import Refused
from bridge.pipeline.automation import describe
from bridge.redact import short_url
from bridge.rules import MAX_PATTERN
from bridge.services import rule_files, rules
from bridge.services.rules import DAYS, NAME_PATTERN, URL_ACTIONS, Described
from bridge.types import Action, FileData, Role
from bridge.types import Rule as RuleDef

resource = Resource(
    "Rules",
    "Chatbot rules: when a customer's message fires them (always, rest, contain, regexp; on"
    " which messengers, hours and days; how often per contact) and what they do.",
)

KeywordType = Literal["always", "rest", "contain", "regexp"]
Platform = PlatformName
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
Limit = Literal["always", "once", "every"]
# The compact words of `/rule … --do`, and the handbook's names, which work as well.
ActionName = Literal[
    "answer",
    "answer-file",
    "mail",
    "post",
    "bot",
    "sms",
    "join",
    "leave",
    "stop",
    "ignore",
    "autoAnswer",
    "autoAnswerMedia",
    "mailForward",
    "webserviceForward",
    "httpBotFwd",
    "smsFwd",
    "addToChannel",
    "removeFromChannel",
    "i18nStop",
    "doNothing",
]
TEXT_MAX = 4096
TARGET_MAX = 2000
PRIORITY_MAX = 1_000_000
LIMIT_SECONDS_MAX = 10 * 366 * 86400
ACTIONS_MAX = 20
HISTORY_SHOWN = 10
DESCRIPTION_TARGET = (
    "mail: the address; post and bot: the http(s) URL; sms: the number (+4915…); join and"
    " leave: the channel's name; stop: a language code (none: every language)."
)


class RuleAction(Record):
    """One thing a rule does."""

    do: str = Field(description="The compact word: answer, mail, post, join, …")
    kind: str = Field(description="The handbook's name: autoAnswer, mailForward, …")
    target: str | None = Field(description=DESCRIPTION_TARGET)
    text: str | None = Field(
        description="answer: the answer; answer-file: the caption; mail: the body; sms: the text."
    )
    subject: str | None = Field(description="mail: the subject.")
    file_id: int | None = Field(description="answer-file: the stored file it sends.")
    file_name: str | None


class RuleChangeRecord(Record):
    """A change of a rule, as the change log keeps it."""

    change: str = Field(description="add, edit, enable, disable or delete.")
    by: str
    at: datetime


class Rule(Record):
    """A chatbot rule."""

    id: int
    name: str
    keyword_type: KeywordType = Field(
        description="always: every message; rest: only when no other rule fires; contain: any"
        " of the keywords; regexp: the RE2 pattern matches."
    )
    pattern: str | None = Field(description="contain: keywords, separated by commas; regexp: RE2.")
    platforms: list[str] = Field(description="The messengers it fires on; empty: all.")
    hours: str | None = Field(
        description="The time window in the rules' time zone, e.g. 18:00-08:00; null: all day."
    )
    days: list[Day] = Field(description="The weekdays it fires on (a window's starting day).")
    limit: Limit = Field(description="Per contact: always, once, or once every limit_seconds.")
    limit_seconds: int | None
    priority: int = Field(description="Higher fires first.")
    enabled: bool
    actions: list[RuleAction]
    created_by: str
    created_at: datetime
    updated_by: str
    updated_at: datetime


class RuleShown(Rule):
    """A rule with its latest changes."""

    history: list[RuleChangeRecord] = Field(description="The latest changes, newest first.")


class RulePage(Page):
    """A page of rules, by id."""

    items: list[Rule]


class ActionBody(Body):
    """One thing a rule does; the fields an action does not take must be left out."""

    do: ActionName = Field(examples=["answer"])
    target: str | None = Field(
        None, min_length=1, max_length=TARGET_MAX, description=DESCRIPTION_TARGET
    )
    text: str | None = Field(
        None,
        min_length=1,
        max_length=TEXT_MAX,
        description="answer: the answer (placeholders such as {NICKNAME} are filled in);"
        " answer-file: a caption; mail: the body; sms: the text.",
    )
    subject: str | None = Field(
        None, min_length=1, max_length=998, description="mail: the subject."
    )
    url: str | None = Field(
        None,
        min_length=1,
        max_length=TARGET_MAX,
        description="answer-file: the file's http(s) URL, fetched and kept when the rule is saved.",
    )
    file_id: int | None = Field(
        None, ge=1, le=ID_MAX, description="answer-file: a file kept already, instead of url."
    )


class RuleFields(Body):
    """What a rule is made of (see `Rule`)."""

    keyword_type: KeywordType | None = None
    pattern: str | None = Field(None, max_length=MAX_PATTERN, examples=["open, hours"])
    platforms: list[Platform] | None = Field(
        None, max_length=len(PLATFORMS), description="Empty: every messenger."
    )
    hours: str | None = Field(
        None, max_length=32, description="18:00-08:00; null: all day.", examples=["18:00-08:00"]
    )
    days: list[Day] | None = Field(None, min_length=1, max_length=7, description="null: every day.")
    limit: Limit | None = None
    limit_seconds: int | None = Field(
        None, ge=1, le=LIMIT_SECONDS_MAX, description="With limit every: the pause per contact."
    )
    priority: int | None = Field(None, ge=-PRIORITY_MAX, le=PRIORITY_MAX)
    enabled: bool | None = None
    actions: list[ActionBody] | None = Field(None, min_length=1, max_length=ACTIONS_MAX)


class RuleCreate(RuleFields):
    """A new rule, as `/rule add` takes it."""

    name: str = Field(pattern=f"^{NAME_PATTERN}$", examples=["opening-hours"])
    keyword_type: KeywordType
    actions: list[ActionBody] = Field(min_length=1, max_length=ACTIONS_MAX)


class RuleChange(RuleFields):
    """What to change, as `/rule edit` takes it: what is given replaces what the rule has
    (`actions` replaces every action); null clears `hours`, `days` and `pattern`."""


class RuleTest(Body):
    """A message to test the rules with, and optionally a rule not saved yet."""

    text: str = Field(min_length=1, max_length=TEXT_MAX, examples=["Are you open?"])
    platform: Platform = "telegram"
    at: Time | None = Field(
        None, description="When it arrives (ISO 8601; the rules' time zone unless it says); now."
    )
    rule: RuleCreate | None = Field(
        None,
        description="A rule tested as if it were saved (replacing a rule of its name), checked"
        " as saving checks it; an answer-file's URL is not fetched.",
    )


class FiredRule(Record):
    """A rule that would fire, and what it would do."""

    id: int | None = Field(description="null: the rule of the request, not saved.")
    name: str
    rest: bool = Field(description="A rest rule: it fires because no other rule does.")
    does: list[str] = Field(description="Each action, in words.")
    limit: Limit
    limit_seconds: int | None


class RuleTestResult(Record):
    """Which rules would fire for the message; nothing is done."""

    platform: str
    at: datetime = Field(description="In the rules' time zone.")
    zone: str
    fired: list[FiredRule]


# -- from the engine's rules to the API's ------------------------------------------------------


def _action(a: Action, files: dict[int, str], full: bool) -> RuleAction:
    # A URL's query and userinfo often hold a token: whole only for manager keys (as /rule show).
    target = a.target
    if target and a.kind in URL_ACTIONS and not full:
        target = short_url(target)
    return RuleAction(
        do=rules.action_word(a),
        kind=a.kind,
        target=target,
        text=a.text,
        subject=a.subject,
        file_id=a.media_id,
        file_name=files.get(a.media_id) if a.media_id is not None else None,
    )


def _fields(
    r: RuleDef, meta: tuple[str, datetime, str, datetime], files: dict[int, str], full: bool
) -> dict[str, Any]:
    created_by, created_at, updated_by, updated_at = meta
    return {
        "id": r.id,
        "name": r.name,
        "keyword_type": r.keyword_type,
        "pattern": r.pattern,
        "platforms": sorted(r.platforms),
        "hours": f"{r.start:%H:%M}-{r.end:%H:%M}" if r.start and r.end else None,
        "days": [DAYS[d] for d in sorted(r.weekdays)],
        "limit": r.limit,
        "limit_seconds": r.limit_seconds,
        "priority": r.priority,
        "enabled": r.enabled,
        "actions": [_action(a, files, full) for a in r.actions],
        "created_by": created_by,
        "created_at": created_at,
        "updated_by": updated_by,
        "updated_at": updated_at,
    }


def _listed(shown: Described, full: bool) -> Rule:
    return Rule.model_validate(_fields(shown.rule, shown.meta, shown.files, full))


async def _show(call: Call, rule_id: int) -> RuleShown:
    full = call.role >= Role.MANAGER
    shown = await rules.described(call.services, rule_id, HISTORY_SHOWN)
    if shown is None:
        raise not_found(f"there is no rule {rule_id}")
    return RuleShown.model_validate(
        {
            **_fields(shown.rule, shown.meta, shown.files, full),
            "history": [RuleChangeRecord(change=c, by=b, at=t) for c, b, t in shown.history],
        }
    )


async def _known(call: Call) -> RuleDef:
    rule_id = call.id("rule_id")
    found = await rules.rule_by_id(call.services, rule_id)
    if found is None:
        raise not_found(f"there is no rule {rule_id}")
    return found


# -- from a request to a rule ----------------------------------------------------------------


async def _actions(
    call: Call,
    given: Sequence[ActionBody],
    files: dict[int, str],
    *,
    where: str = "actions",
) -> list[Action]:
    """The engine's actions; the URL of an answer-file's file to fetch goes into `files` (by
    action index), to be fetched once the whole rule passed its checks."""
    built = []
    for number, a in enumerate(given):
        place = f"{where}.{number}"
        with call.field(f"{place}.do"):
            kind = rules.action_kind(a.do)
        media_id = None
        if kind == "autoAnswerMedia":
            media_id = await _file(call, a, place)
            if a.url is not None:
                files[number] = a.url
        elif a.url is not None or a.file_id is not None:
            field = "url" if a.url is not None else "file_id"
            problem = f"only answer-file takes a {field}"
            raise ApiError(422, "invalid", problem, field=f"{place}.{field}")
        built.append(
            Action(kind=kind, target=a.target, text=a.text, subject=a.subject, media_id=media_id)
        )
    return built


async def _file(call: Call, a: ActionBody, place: str) -> int:
    if (a.url is None) == (a.file_id is None):
        problem = "answer-file needs the file: its url, or the file_id of a file kept already"
        raise ApiError(422, "invalid", problem, field=f"{place}.url")
    if a.file_id is not None:
        file_id = a.file_id
        known = await rules.known_files(call.services, [file_id])
        if file_id not in known:
            raise ApiError(422, "invalid", f"there is no file {file_id}", field=f"{place}.file_id")
        return file_id
    with call.field(f"{place}.url"):
        rule_files.check_file_url(a.url or "")
    # Stands in for the file, fetched once the rule passed every check (a test never does).
    return rule_files.FILE_PENDING


async def _built(
    call: Call,
    base: RuleDef,
    body: RuleFields,
    files: dict[int, str],
    *,
    where: str = "",
) -> RuleDef:
    """`base` with what the body gives, checked as `/rule add` and `/rule edit` check it;
    the URLs of answer-file files to fetch go into `files`."""
    given = body.model_fields_set
    changes: dict[str, Any] = {}
    if "keyword_type" in given and body.keyword_type is not None:
        changes["keyword_type"] = body.keyword_type
    if "pattern" in given or "keyword_type" in given:
        changes["pattern"] = body.pattern
    kind = changes.get("keyword_type", base.keyword_type)
    if kind in ("always", "rest") and body.pattern:
        # Saving drops the pattern of such a rule: say so rather than lose it unnoticed.
        article = "an" if kind == "always" else "a"
        problem = f"{article} {kind} rule has no keywords or pattern; use contain or regexp"
        raise ApiError(422, "invalid", problem, field=f"{where}pattern")
    if "platforms" in given:
        changes["platforms"] = frozenset(body.platforms or ())
    if "hours" in given:
        with call.field(f"{where}hours"):
            start, end = rules.parse_hours(body.hours) if body.hours else (None, None)
        changes.update(start=start, end=end)
    if "days" in given:
        changes["weekdays"] = frozenset(DAYS.index(d) for d in body.days or DAYS)
    limit = body.limit if "limit" in given and body.limit is not None else base.limit
    if (
        limit == "every"
        and body.limit_seconds is None
        and (limit != base.limit or "limit_seconds" in given)
    ):
        problem = "limit every needs limit_seconds: the pause between firings per contact"
        raise ApiError(422, "invalid", problem, field=f"{where}limit_seconds")
    if limit != "every" and body.limit_seconds is not None:
        problem = f"limit_seconds goes with limit every, not with {limit}"
        raise ApiError(422, "invalid", problem, field=f"{where}limit_seconds")
    if limit != base.limit or "limit_seconds" in given:
        changes["limit"] = limit
        changes["limit_seconds"] = body.limit_seconds if limit == "every" else None
    if "priority" in given and body.priority is not None:
        changes["priority"] = body.priority
    if "enabled" in given and body.enabled is not None:
        changes["enabled"] = body.enabled
    if "actions" in given and body.actions is not None:
        changes["actions"] = tuple(
            await _actions(call, body.actions, files, where=f"{where}actions")
        )
    try:
        built = rules.check_rule(replace(base, **changes))
    except Refused as exc:
        raise ApiError(422, "invalid", str(exc)) from None
    await rules.check_targets(call.services, built)
    return built


async def _fetch(call: Call, urls: Mapping[int, str]) -> dict[int, FileData]:
    files = {}
    for index, url in urls.items():
        try:
            files[index] = await rule_files.fetch_file(call.services, url)
        except Refused as exc:
            raise ApiError(422, "refused", str(exc), field=f"actions.{index}.url") from None
    return files


# -- operations ------------------------------------------------------------------------------


@resource.get(
    "/rules",
    summary="List rules",
    role=Role.AGENT,
    query=PageQuery,
    response=RulePage,
)
async def list_rules(call: Call) -> RulePage:
    """By id (`priority` says which fires first)."""
    after, limit = call.after(), call.limit
    full = call.role >= Role.MANAGER
    found = await rules.rules_page(call.services, after, limit + 1)
    return call.page(RulePage, found, key=lambda d: d.rule.id, item=lambda d: _listed(d, full))


@resource.post(
    "/rules",
    summary="Create a rule",
    role=Role.MANAGER,
    body=RuleCreate,
    response=RuleShown,
    status=201,
    errors=(409,),
)
async def create_rule(call: Call) -> RuleShown:
    """Checked as `/rule add` checks it: an RE2 pattern (linear time: lookarounds and
    backreferences are refused, and so is a pattern too complex), known placeholders, the
    targets of the actions (channels that exist, an SMS account, the mail server). An
    answer-file's URL is fetched and the file kept, after every other check passed. A web
    address (post, bot, answer-file) that the outbound guard refuses (loopback, private,
    link-local, … unless `[security] allow_private` names it) is 422 with the reason. 409 when
    the name is taken."""
    body = call.body(RuleCreate)
    base = RuleDef(id=0, name=body.name.strip(), keyword_type=body.keyword_type)
    urls: dict[int, str] = {}
    built = await _built(call, base, body, urls)
    await rules.free_name(call.services, built.name)
    # Fetched last: a rule refused by any check keeps no file.
    files = await _fetch(call, urls)
    stored = await rules.add_rule(call.services, built, files, who=call.who, now=call.now)
    return await _show(call, stored.id)


@resource.post(
    "/rules/test",
    summary="Test the rules with a message",
    role=Role.AGENT,
    body=RuleTest,
    response=RuleTestResult,
)
async def test_rules(call: Call) -> RuleTestResult:
    """As `/rule test`: which rules would fire for the message on the messenger at the time,
    and what they would do; per-contact limits are not applied and nothing is done. With
    `rule`, that rule is tested as if it were saved, after the checks of `/rule add`
    (422 for a pattern RE2 refuses, and so on)."""
    body = call.body(RuleTest)
    zone = call.services.pipeline.rulebook.zone
    at = body.at or call.now
    at = at if at.tzinfo is not None else at.replace(tzinfo=zone)
    every = await rules.all_rules(call.services)
    draft: RuleDef | None = None
    if body.rule is not None:
        name = body.rule.name.strip()
        base = RuleDef(id=0, name=name, keyword_type=body.rule.keyword_type)
        draft = await _built(call, base, body.rule, {}, where="rule.")
        every = [r for r in every if r.name.casefold() != name.casefold()] + [draft]
    chosen, rest = rules.would_fire(call.services, every, body.text, body.platform, at)
    return RuleTestResult(
        platform=body.platform,
        at=at.astimezone(zone),
        zone=zone.key,
        fired=[
            FiredRule(
                id=None if r is draft else r.id,
                name=r.name,
                rest=rest,
                does=[describe(a) for a in r.actions],
                limit=r.limit,
                limit_seconds=r.limit_seconds,
            )
            for r in chosen
        ],
    )


@resource.get(
    "/rules/{rule_id}",
    summary="Show a rule",
    role=Role.AGENT,
    response=RuleShown,
)
async def show_rule(call: Call) -> RuleShown:
    """The rule in full, with who changed it when (as `/rule show`)."""
    return await _show(call, call.id("rule_id"))


@resource.patch(
    "/rules/{rule_id}",
    summary="Change a rule",
    role=Role.MANAGER,
    body=RuleChange,
    response=RuleShown,
)
async def change_rule(call: Call) -> RuleShown:
    """As `/rule edit`: what is given replaces what the rule has (`actions` replaces all of
    them), checked as a new rule is."""
    found = await _known(call)
    body = call.body(RuleChange)
    if not body.model_fields_set:
        raise ApiError(422, "invalid", "say what to change", field="body")
    urls: dict[int, str] = {}
    built = await _built(call, found, body, urls)
    # Fetched last: a change refused by any check keeps no file.
    files = await _fetch(call, urls)
    await rules.edit_rule(call.services, built, files, who=call.who, now=call.now)
    return await _show(call, found.id)


@resource.post(
    "/rules/{rule_id}/enable",
    summary="Switch a rule on",
    role=Role.MANAGER,
    response=RuleShown,
)
async def enable_rule(call: Call) -> RuleShown:
    """As `/rule enable` (a rule that is on already stays so)."""
    found = await _known(call)
    await rules.switch_rule(call.services, found, True, who=call.who, now=call.now)
    return await _show(call, found.id)


@resource.post(
    "/rules/{rule_id}/disable",
    summary="Switch a rule off",
    role=Role.MANAGER,
    response=RuleShown,
)
async def disable_rule(call: Call) -> RuleShown:
    """As `/rule disable`: the rule is kept, and fires no more."""
    found = await _known(call)
    await rules.switch_rule(call.services, found, False, who=call.who, now=call.now)
    return await _show(call, found.id)


@resource.delete(
    "/rules/{rule_id}",
    summary="Delete a rule",
    role=Role.MANAGER,
    status=204,
)
async def delete_rule(call: Call) -> None:
    """As `/rule delete`; the change log keeps what it was."""
    found = await _known(call)
    await rules.delete_rule(call.services, found, who=call.who, now=call.now)
