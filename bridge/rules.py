"""The chatbot rule engine: which rules fit an incoming message. Pure: no database, no I/O.

A rule has a keyword type (the handbook's always / rest / contain / regexp), an optional
platform list, time window and weekdays, a per-contact limit (applied by the caller, which
knows when a rule last fired for a contact) and actions. `validate` refuses a rule with a
message in words for the person saving it; `Matcher.build` compiles every enabled rule once,
and `Matcher.match` tells which rules fit one message.

Matching is one compiled pass per kind, for all rules at once, never a loop of searches:

- `contain` keywords of every rule live in ONE Aho-Corasick automaton (pyahocorasick), fed the
  case-folded text. A keyword is found on word boundaries only: "stop" is not in "stopper",
  but it is in "Stop!" and "Kündigung" is in "Kündigung,". Word characters are Unicode
  letters, digits, combining marks and "_"; a keyword side that is not a word character
  ("?", "c++") needs no boundary there. Case folding is `str.casefold` (so "STRASSE" finds
  "straße") on NFC-normalized text, with the dot of the Turkish capital İ dropped (so
  "İstanbul" finds "istanbul"); runs of whitespace count as one space. Keywords are separated
  by commas (a keyword cannot contain a comma); spaces around them are ignored.
- `regexp` patterns run in RE2 (google-re2): linear time, so no pattern and no text can stall
  the process (`(a+)+$` is harmless). All patterns sit in ONE `re2.Set`, which reports every
  pattern that matches in a single pass over the message. RE2 refuses what it cannot run in
  linear time (backreferences, lookarounds); `validate` says so with RE2's reason. Patterns
  see the message as written: case-sensitive unless the pattern says `(?i)`; `.` does not
  match a newline unless `(?s)`; `^`/`$` are the start/end of the whole message unless `(?m)`;
  `\\d`, `\\w`, `\\s` and `\\b` are ASCII-only in RE2 (use `\\pL`, `\\pN` for any script).
- `always` rules fit every message, `rest` rules are returned apart (`Matches.rest`): the
  caller fires them only when none of `Matches.rules` fired after its per-contact limits.

Schedules are wall-clock times in the matcher's zone (a `ZoneInfo`): start inclusive, end
exclusive. A window whose start is after its end spans midnight (22:00-06:00), and then the
weekday of the window's START counts: with weekdays {Friday} it fits Friday 22:00 until
Saturday 05:59:59. A rule without a window fits all day on its weekdays. On the day clocks go
forward the skipped hour never happens; on the day they go back the repeated hour counts twice.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, time, tzinfo
from typing import Any, Final, cast, get_args
from urllib.parse import quote, urlsplit
from zoneinfo import ZoneInfo

import ahocorasick
import re2

from bridge.config_sections import PLATFORMS
from bridge.types import Action, KeywordType, LimitType, Rule

KEYWORD_TYPES: tuple[str, ...] = get_args(KeywordType)
LIMITS: tuple[str, ...] = get_args(LimitType)
ACTIONS: tuple[str, ...] = (
    "mailForward",
    "webserviceForward",
    "httpBotFwd",
    "smsFwd",
    "autoAnswer",
    "autoAnswerMedia",
    "addToChannel",
    "removeFromChannel",
    "i18nStop",
    "doNothing",
)
PLACEHOLDERS: tuple[str, ...] = (
    "ID",
    "MSGID",
    "MSG",
    "CONTACTID",
    "CONTACTREMARK",
    "MSISDN",
    "NICKNAME",
    "TIMESTAMP",
    "UTC",
    "MEDIATYPE",
    "INFOCODE",
)

MAX_PATTERN: Final = 1000
"""Longest `contain` list or `regexp` pattern, in characters."""
MAX_PROGRAM: Final = 20_000
"""Largest compiled RE2 program of one pattern (`[a-z]{1,1000}` is about 3,000)."""
MAX_NAME: Final = 100


class RuleError(ValueError):
    """A rule cannot be saved or compiled; the message says why, in words."""


@dataclass(frozen=True, slots=True)
class Incoming:
    """A customer's message as the rules see it. `at` must be timezone-aware."""

    text: str
    platform: str
    at: datetime

    def __post_init__(self) -> None:
        if self.at.utcoffset() is None:
            msg = "Incoming.at must be a timezone-aware datetime"
            raise ValueError(msg)


@dataclass(frozen=True, slots=True)
class Matches:
    """The rules that fit one message, each list by priority (highest first), then id."""

    rules: list[Rule]
    rest: list[Rule]


# -- placeholders -------------------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_-]*)\}")
_KNOWN: Final = frozenset(PLACEHOLDERS)


def placeholders_in(text: str) -> set[str]:
    """The names written as {NAME} in `text` (known or not)."""
    return set(_PLACEHOLDER.findall(text))


def fill(text: str, values: Mapping[str, str]) -> str:
    """`text` with every known {NAME} replaced by `values[NAME]` ("" when not given).

    Values are inserted as they are (TIMESTAMP is formatted by the caller) and are not scanned
    again, so a customer who writes "{ID}" gets no id. Unknown names and other braces stay.
    """

    def value(m: re.Match[str]) -> str:
        name = m.group(1)
        return values.get(name, "") if name in _KNOWN else m.group(0)

    return _PLACEHOLDER.sub(value, text) if "{" in text else text


def url_shape(url: str) -> str:
    """A rule's URL with each placeholder as a plain value: where it leads, to check that."""
    return _PLACEHOLDER.sub("x", url)


def fill_url(url: str, values: Mapping[str, str]) -> str:
    """`url` with its placeholders filled, each value percent-encoded (a customer's name with
    "/", "?", "#" or "@" stays one piece of the path or query and cannot change the host)."""
    return fill(url, {name: quote(value, safe="") for name, value in values.items()})


# -- case folding and words ---------------------------------------------------------------------


def fold(text: str) -> str:
    """`text` as keywords are compared: case-folded, NFC, "i̇" (from İ) as "i"."""
    folded = unicodedata.normalize("NFC", text.casefold())
    if "\u0307" in folded:
        folded = folded.replace("i\u0307", "i")
    return folded


def is_word_char(ch: str) -> bool:
    """Letters, digits, combining marks and "_" make words; the rest separates them."""
    return ch.isalnum() or ch == "_" or (ch >= "\u0300" and unicodedata.category(ch)[0] == "M")


def split_keywords(pattern: str) -> list[str]:
    """The keywords of a `contain` list as written (spaces around each removed)."""
    return [k.strip() for k in pattern.split(",")]


def _keyword_key(keyword: str) -> str:
    return " ".join(fold(keyword).split())


# -- validation ---------------------------------------------------------------------------------

_EMAIL = re.compile(
    r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+"
)
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
_CHANNEL = re.compile(r"[A-Za-z0-9_-]{1,64}")
_LANGUAGE = re.compile(r"[a-z]{2,3}(-[a-z0-9]{2,8})?")
_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\]")

# Which optional fields each action takes (text, subject, target); the rest must stay None.
_TAKES: Final[dict[str, frozenset[str]]] = {
    "mailForward": frozenset({"target", "text", "subject"}),
    "webserviceForward": frozenset({"target"}),
    "httpBotFwd": frozenset({"target"}),
    "smsFwd": frozenset({"target", "text"}),
    "autoAnswer": frozenset({"text"}),
    "autoAnswerMedia": frozenset({"text", "media_id"}),
    "addToChannel": frozenset({"target"}),
    "removeFromChannel": frozenset({"target"}),
    "i18nStop": frozenset({"target"}),
    "doNothing": frozenset(),
}


def _options() -> re2.Options:
    options = re2.Options()
    options.log_errors = False
    return options


def _re2_reason(error: BaseException) -> str:
    reason = error.args[0] if error.args else str(error)
    if isinstance(reason, bytes):
        reason = reason.decode("utf-8", "replace")
    return str(reason)


def _compile(pattern: str) -> re2._Regexp[str]:
    """The RE2 program of a regexp rule, or RuleError with RE2's reason."""
    try:
        compiled = re2.compile(pattern, _options())
    except UnicodeError:
        msg = "the regular expression contains characters that are not valid text"
        raise RuleError(msg) from None
    except re2.error as e:
        reason = _re2_reason(e)
        hint = ""
        if "perl operator" in reason or "escape sequence" in reason:
            hint = " (RE2 runs in linear time: no lookahead, lookbehind or backreferences)"
        msg = f"RE2 refuses the regular expression: {reason}{hint}"
        raise RuleError(msg) from None
    if compiled.programsize > MAX_PROGRAM:
        msg = (
            f"the regular expression is too complex ({compiled.programsize:,} RE2 instructions,"
            f" at most {MAX_PROGRAM:,}); use smaller repetition counts"
        )
        raise RuleError(msg)
    return compiled


def _check_placeholders(what: str, text: str) -> None:
    unknown = sorted(placeholders_in(text) - _KNOWN)
    if unknown:
        name = unknown[0]
        hint = f" (placeholders are written in capitals: {{{name.upper()}}})"
        msg = (
            f"{what}: unknown placeholder {{{name}}}"
            f"{hint if name.upper() in _KNOWN else ''}; known: "
            + ", ".join(f"{{{p}}}" for p in PLACEHOLDERS)
        )
        raise RuleError(msg)


def _short(text: str, most: int = 60) -> str:
    return text if len(text) <= most else text[: most - 1] + "…"


def _not(value: str | None) -> str:
    return f", not {_short(value)!r}" if value else ""


def _sample(text: str) -> str:
    """`text` with placeholders replaced by a plain value, to check the shape around them."""
    return _PLACEHOLDER.sub("1", text)


def _check_url(where: str, url: str) -> None:
    shape = f"{where} needs an http(s) address such as https://crm.example.com/hook"
    # A placeholder before the path would let a customer's name or text choose the scheme,
    # the user, the host or the port the bridge connects to.
    scheme, sep, rest = url.partition("://")
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0] if sep else url
    found = _PLACEHOLDER.search(f"{scheme}{sep}{authority}")
    if found:
        msg = (
            f"{where}: a placeholder ({found.group(0)}) may only stand in the path, query or"
            " fragment of the URL, not in its scheme, host or port"
        )
        raise RuleError(msg)
    sample = _sample(url.strip())
    if url != url.strip() or any(c.isspace() for c in sample):
        msg = f"{shape}; {_short(url)!r} contains spaces"
        raise RuleError(msg)
    try:
        parts = urlsplit(sample)
        good = (
            parts.scheme.lower() in ("http", "https")
            and (
                _HOST.fullmatch(parts.hostname or "") is not None
                or ":" in (parts.hostname or "")  # an [IPv6] literal; urlsplit checked it
            )
            and (parts.port is None or parts.port > 0)
        )
    except ValueError:  # a port that is not a number, a broken [IPv6] host
        good = False
    if not good:
        msg = f"{shape}{_not(url)}"
        raise RuleError(msg)


def _check_action(number: int, action: Action) -> None:
    if action.kind not in _TAKES:
        msg = f"action {number}: unknown action {action.kind!r}; known: " + ", ".join(ACTIONS)
        raise RuleError(msg)
    where = f"action {number} ({action.kind})"
    takes = _TAKES[action.kind]
    for field in ("target", "text", "subject", "media_id"):
        if getattr(action, field) is not None and field not in takes:
            msg = f"{where} takes no {field.replace('_', ' ')}"
            raise RuleError(msg)
    for field in ("target", "text", "subject"):
        value = getattr(action, field)
        if value is not None:
            if not isinstance(value, str):
                msg = f"{where}: the {field} must be text"
                raise RuleError(msg)
            _check_placeholders(f"{where} {field}", value)

    kind, target = action.kind, action.target
    if kind == "mailForward":
        if not target or not _EMAIL.fullmatch(_sample(target)):
            msg = f"{where} needs an e-mail address such as support@example.com{_not(target)}"
            raise RuleError(msg)
    elif kind in ("webserviceForward", "httpBotFwd"):
        _check_url(where, target or "")
    elif kind == "smsFwd":
        if not target or not _E164.fullmatch(target):
            msg = (
                f"{where} needs a phone number in international format such as"
                f" +4915112345678{_not(target)}"
            )
            raise RuleError(msg)
    elif kind == "autoAnswer":
        if not action.text or not action.text.strip():
            msg = f"{where} needs the text of the answer"
            raise RuleError(msg)
    elif kind == "autoAnswerMedia":
        media = action.media_id
        if not isinstance(media, int) or isinstance(media, bool) or media <= 0:
            msg = f"{where} needs the file to send (media_id)"
            raise RuleError(msg)
    elif kind in ("addToChannel", "removeFromChannel"):
        if not target or not target.strip():
            msg = f"{where} needs the name of a channel"
            raise RuleError(msg)
        if not _CHANNEL.fullmatch(target):
            msg = f"{where}: {_short(target)!r} is not a channel name: 1-64 letters, digits, - or _"
            raise RuleError(msg)
    elif kind == "i18nStop" and target is not None and not _LANGUAGE.fullmatch(target):
        msg = (
            f"{where}: {_short(target)!r} is not a language code such as de or pt-br"
            " (leave it out for every language)"
        )
        raise RuleError(msg)


def _check_pattern(rule: Rule) -> None:
    pattern = rule.pattern
    blank = pattern is None or not pattern.strip()
    if rule.keyword_type in ("always", "rest"):
        if not blank:
            article = "an" if rule.keyword_type == "always" else "a"
            msg = (
                f"{article} {rule.keyword_type} rule has no keywords or pattern;"
                f" leave the pattern out or use contain or regexp"
            )
            raise RuleError(msg)
        return
    if pattern is None or blank:
        what = "keywords, separated by commas" if rule.keyword_type == "contain" else "a pattern"
        msg = f"a {rule.keyword_type} rule needs {what}"
        raise RuleError(msg)
    if len(pattern) > MAX_PATTERN:
        msg = f"the pattern is {len(pattern):,} characters long; at most {MAX_PATTERN:,}"
        raise RuleError(msg)
    if rule.keyword_type == "contain":
        for number, keyword in enumerate(split_keywords(pattern), 1):
            if not keyword:
                msg = (
                    f"keyword {number} of {_short(pattern)!r} is empty:"
                    " separate keywords by single commas, without one at the end"
                )
                raise RuleError(msg)
    else:
        _compile(pattern)


def _check_schedule(rule: Rule) -> None:
    start, end = rule.start, rule.end
    if (start is None) != (end is None):
        msg = "the time window needs both a start and an end (or neither, for all day)"
        raise RuleError(msg)
    if start is not None and end is not None:
        if not isinstance(start, time) or not isinstance(end, time):
            msg = "the start and end of the time window must be times of day"
            raise RuleError(msg)
        if start.tzinfo is not None or end.tzinfo is not None:
            msg = "the time window is in the rules' time zone; its times take no zone of their own"
            raise RuleError(msg)
        if start == end:
            msg = f"the time window starts and ends at {start:%H:%M}; leave both out for all day"
            raise RuleError(msg)
    if not rule.weekdays:
        msg = "the rule has no weekday, so it would never fire"
        raise RuleError(msg)
    for day in sorted(rule.weekdays):
        if not isinstance(day, int) or isinstance(day, bool) or not 0 <= day <= 6:
            msg = f"weekday {day!r} is not a day: 0 (Monday) to 6 (Sunday)"
            raise RuleError(msg)


def validate(rule: Rule) -> None:
    """Refuse a rule that could not work, with a message for the person saving it."""
    if not isinstance(rule.name, str) or not rule.name.strip():
        msg = "the rule needs a name"
        raise RuleError(msg)
    if len(rule.name) > MAX_NAME:
        msg = f"the rule's name is {len(rule.name)} characters long; at most {MAX_NAME}"
        raise RuleError(msg)
    if rule.keyword_type not in KEYWORD_TYPES:
        msg = f"unknown keyword type {rule.keyword_type!r}; known: " + ", ".join(KEYWORD_TYPES)
        raise RuleError(msg)
    _check_pattern(rule)
    unknown = sorted(str(p) for p in rule.platforms if p not in PLATFORMS)
    if unknown:
        msg = f"unknown platform {unknown[0]!r}; known: " + ", ".join(PLATFORMS)
        raise RuleError(msg)
    _check_schedule(rule)
    if rule.limit not in LIMITS:
        msg = f"unknown limit {rule.limit!r}; known: " + ", ".join(LIMITS)
        raise RuleError(msg)
    seconds = rule.limit_seconds
    if rule.limit == "every":
        if not isinstance(seconds, int) or isinstance(seconds, bool) or seconds <= 0:
            msg = "limit every needs limit_seconds: how many seconds (above 0) between firings"
            raise RuleError(msg)
    elif seconds is not None:
        msg = f"limit_seconds only goes with limit every, not with {rule.limit}"
        raise RuleError(msg)
    if not isinstance(rule.priority, int) or isinstance(rule.priority, bool):
        msg = "the priority must be a whole number"
        raise RuleError(msg)
    if not rule.actions:
        msg = "the rule has no action (doNothing is one, if nothing at all should happen)"
        raise RuleError(msg)
    for number, action in enumerate(rule.actions, 1):
        _check_action(number, action)


# -- matching -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Gate:
    """Platform and schedule of one rule, checked after its keywords matched."""

    platforms: frozenset[str]
    start: time | None
    end: time | None
    days: frozenset[int]
    all_days: bool

    @property
    def timed(self) -> bool:
        return self.start is not None or not self.all_days

    def fits(self, platform: str, local: datetime | None) -> bool:
        if self.platforms and platform not in self.platforms:
            return False
        if local is None:
            return True
        day = local.weekday()
        start, end = self.start, self.end
        if start is None or end is None:
            return day in self.days
        now = local.time()
        if start < end:
            return start <= now < end and day in self.days
        # Spans midnight: the evening part belongs to today, the morning part to yesterday.
        if now >= start:
            return day in self.days
        return now < end and (day - 1) % 7 in self.days


# One folded keyword in the automaton: (length, needs a boundary before, needs one after,
# the ranks of the rules that list it).
_Keyword = tuple[int, bool, bool, tuple[int, ...]]


class Matcher:
    """The enabled rules, compiled for matching one message in one pass per kind."""

    __slots__ = (
        "_rules",
        "_gates",
        "_timed",
        "_always",
        "_rest",
        "_automaton",
        "_collapse",
        "_set",
        "_set_ranks",
        "_patterns",
        "_compiled",
        "_tz",
    )

    def __init__(self) -> None:
        self._rules: list[Rule] = []
        self._gates: list[_Gate | None] = []
        self._timed = False
        self._always: list[int] = []
        self._rest: list[int] = []
        self._automaton: Any = None
        self._collapse = False
        self._set: re2.Set | None = None
        self._set_ranks: list[int] = []
        self._patterns: list[str] = []
        self._compiled: list[re2._Regexp[str] | None] = []
        self._tz: tzinfo = ZoneInfo("UTC")

    @classmethod
    def build(cls, rules: Iterable[Rule], tz: ZoneInfo) -> Matcher:
        """Compile the enabled rules (disabled ones are left out) for the zone `tz`.

        Raises RuleError, naming the rule, for an enabled rule that `validate` refuses or for
        two rules with the same id.
        """
        self = cls()
        self._tz = tz
        enabled: list[Rule] = []
        seen: set[int] = set()
        for rule in rules:
            if not rule.enabled:
                continue
            try:
                validate(rule)
            except RuleError as e:
                msg = f"rule {rule.id} ({rule.name!r}): {e}"
                raise RuleError(msg) from None
            if rule.id in seen:
                msg = f"two rules have the id {rule.id}"
                raise RuleError(msg)
            seen.add(rule.id)
            enabled.append(rule)
        enabled.sort(key=lambda r: (-r.priority, r.id))
        self._rules = enabled

        keywords: dict[str, list[int]] = {}
        for rank, rule in enumerate(enabled):
            all_days = rule.weekdays >= _ALL_DAYS
            gate = None
            if rule.platforms or rule.start is not None or not all_days:
                gate = _Gate(rule.platforms, rule.start, rule.end, rule.weekdays, all_days)
                self._timed = self._timed or gate.timed
            self._gates.append(gate)
            pattern = rule.pattern or ""
            if rule.keyword_type == "always":
                self._always.append(rank)
            elif rule.keyword_type == "rest":
                self._rest.append(rank)
            elif rule.keyword_type == "contain":
                for keyword in split_keywords(pattern):
                    ranks = keywords.setdefault(_keyword_key(keyword), [])
                    if rank not in ranks:
                        ranks.append(rank)
            else:
                self._patterns.append(pattern)
                self._set_ranks.append(rank)

        if keywords:
            automaton = ahocorasick.Automaton()
            for key, ranks in keywords.items():
                entry: _Keyword = (
                    len(key),
                    is_word_char(key[0]),
                    is_word_char(key[-1]),
                    tuple(ranks),
                )
                automaton.add_word(key, entry)
                self._collapse = self._collapse or any(c.isspace() for c in key)
            automaton.make_automaton()
            self._automaton = automaton
        self._compiled = [None] * len(self._patterns)
        if self._patterns:
            self._set = _regexp_set(self._patterns)
        return self

    @property
    def size(self) -> int:
        """How many (enabled) rules the matcher holds."""
        return len(self._rules)

    def match(self, message: Incoming) -> Matches:
        """The rules that fit `message`: by keywords/pattern, platform, time and weekday."""
        found: set[int] = set(self._always)
        text = message.text
        if self._automaton is not None and text:
            self._match_keywords(text, found)
        if self._patterns:
            self._match_patterns(text, found)
        local = message.at.astimezone(self._tz) if self._timed else None
        gates, rules, platform = self._gates, self._rules, message.platform
        fitting: list[Rule] = []
        for rank in sorted(found):
            gate = gates[rank]
            if gate is None or gate.fits(platform, local):
                fitting.append(rules[rank])
        rest: list[Rule] = []
        for rank in self._rest:
            gate = gates[rank]
            if gate is None or gate.fits(platform, local):
                rest.append(rules[rank])
        return Matches(fitting, rest)

    def _match_keywords(self, text: str, found: set[int]) -> None:
        folded = fold(text)
        if self._collapse:
            folded = " ".join(folded.split())
        after_last = len(folded) - 1
        category = unicodedata.category
        # is_word_char, inlined: this loop runs for every occurrence of every keyword, also
        # inside longer words ("art" in "start"), which the boundary checks then drop.
        for end, (length, bound_start, bound_end, ranks) in self._automaton.iter(folded):
            if bound_end and end < after_last:
                ch = folded[end + 1]
                if ch.isalnum() or ch == "_" or (ch >= "\u0300" and category(ch)[0] == "M"):
                    continue
            start = end - length
            if bound_start and start >= 0:
                ch = folded[start]
                if ch.isalnum() or ch == "_" or (ch >= "\u0300" and category(ch)[0] == "M"):
                    continue
            found.update(ranks)

    def _match_patterns(self, text: str, found: set[int]) -> None:
        data = text.encode("utf-8", "surrogatepass")
        ranks = self._set_ranks
        hits = cast("list[int] | None", self._set.Match(data)) if self._set is not None else None
        if hits:
            # The set's last pattern is the empty one, which matches every text: its absence
            # means RE2 gave up (out of memory), and then each pattern runs on its own below.
            sentinel = len(ranks)
            for index in hits:
                if index != sentinel:
                    found.add(ranks[index])
            return
        for index, pattern in enumerate(self._patterns):
            compiled = self._compiled[index]
            if compiled is None:
                compiled = self._compiled[index] = _compile(pattern)
            if compiled.search(data) is not None:
                found.add(ranks[index])


_ALL_DAYS: Final = frozenset(range(7))
_SET_MEMORY: Final = 64 << 20


def _regexp_set(patterns: list[str]) -> re2.Set | None:
    """One RE2 set of all patterns plus an always-matching sentinel; None if RE2 cannot."""
    options = _options()
    options.max_mem = _SET_MEMORY
    regexp_set = re2.Set.SearchSet(options)
    try:
        for pattern in patterns:
            regexp_set.Add(pattern)
        regexp_set.Add("")
        regexp_set.Compile()
    except re2.error:
        return None
    return regexp_set
