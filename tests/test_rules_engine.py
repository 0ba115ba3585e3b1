"""The chatbot rule engine on its own: validation, placeholders, matching, schedules (pure, fast)."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.rules import (
    ACTIONS,
    PLACEHOLDERS,
    Incoming,
    Matcher,
    RuleError,
    fill,
    placeholders_in,
    validate,
)
from bridge.types import Action, Rule

BERLIN = ZoneInfo("Europe/Berlin")
NOTHING = (Action("doNothing"),)
NOON = datetime(2024, 5, 8, 10, 0, tzinfo=UTC)  # a Wednesday, 12:00 in Berlin


def rule(id: int = 1, kind: str = "contain", pattern: str | None = None, **fields: Any) -> Rule:
    fields.setdefault("actions", NOTHING)
    return Rule(id=id, name=f"rule {id}", keyword_type=kind, pattern=pattern, **fields)  # type: ignore[arg-type]


def ids(matcher: Matcher, text: str, platform: str = "telegram", at: datetime = NOON) -> list[int]:
    return [r.id for r in matcher.match(Incoming(text, platform, at)).rules]


def contains(keywords: str, text: str) -> bool:
    return ids(Matcher.build([rule(pattern=keywords)], BERLIN), text) == [1]


def refusal(bad: Rule) -> str:
    with pytest.raises(RuleError) as caught:
        validate(bad)
    return str(caught.value)


# -- keyword types ------------------------------------------------------------------------------


def test_always_fits_every_message_even_an_empty_one() -> None:
    matcher = Matcher.build([rule(kind="always")], BERLIN)
    assert ids(matcher, "anything at all") == [1]
    assert ids(matcher, "") == [1]


@pytest.mark.parametrize(
    ("keywords", "text", "found"),
    [
        ("stop", "stop", True),
        ("stop", "Please STOP!", True),
        ("stop", "stopper", False),
        ("stop", "nonstop", False),
        ("stop", "stop_it", False),  # "_" is a word character, as in regular expressions
        ("stop", "stop2", False),
        ("stop", "«stop»", True),
        ("stop", "", False),
        ("Kündigung", "Kündigung, bitte sofort", True),
        ("Kündigung", "die kündigungsfrist", False),
        ("Kündigung", "Ku\u0308ndigung!", True),  # the same word with a combining diaeresis
        ("cafe", "ein cafe\u0301 bitte", False),  # café is another word
        ("c++", "I like C++.", True),  # a side that is no word character needs no boundary
        ("?", "why?", True),
        ("customer service", "Customer\n  Service, please", True),  # whitespace runs are one
        ("日本", "日本語", False),  # CJK letters are word characters too
        ("42", "order 42.", True),
        ("42", "order 142", False),
    ],
)
def test_contain_finds_keywords_on_word_boundaries(keywords: str, text: str, found: bool) -> None:
    assert contains(keywords, text) is found


@pytest.mark.parametrize(
    ("keywords", "text"),
    [
        ("straße", "STRASSE"),
        ("STRASSE", "straße"),
        ("Straße", "strasse"),
        ("istanbul", "İSTANBUL"),
        ("İstanbul", "istanbul"),
        ("İSTANBUL", "I\u0307stanbul"),  # decomposed capital dotted I
        ("file", "the ﬁle"),  # the fi ligature folds to "fi"
        ("σοφία", "ΣΟΦΊΑ"),
        ("ΣΟΦΟΣ", "σοφος σοφός"),  # final sigma folds like sigma
    ],
)
def test_contain_is_case_blind_by_casefold(keywords: str, text: str) -> None:
    assert contains(keywords, text)


def test_turkish_dotless_i_stays_its_own_letter() -> None:
    # Capital I folds to i (language-independent casefold), so "ışık" and "IŞIK" differ: list
    # both spellings when both are meant.
    assert not contains("ışık", "IŞIK")
    assert contains("ışık, işik", "IŞIK")


def test_contain_lists_are_separated_by_commas() -> None:
    matcher = Matcher.build(
        [rule(1, pattern="stop, halt ,quit"), rule(2, pattern="halt,pause, halt")], BERLIN
    )
    assert ids(matcher, "stop") == [1]
    assert ids(matcher, "HALT") == [1, 2]
    assert ids(matcher, "quit now") == [1]
    assert ids(matcher, "pause") == [2]
    assert ids(matcher, "stop halt quit pause") == [1, 2]
    assert ids(matcher, "stop, halt") == [1, 2]
    assert ids(matcher, "stop halt") == [1, 2]  # a keyword is never "stop, halt" itself


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("Stop", True),
        ("  Stopp \n", True),
        ("start", True),
        ("Stop please", False),
        ("stop", False),  # case-sensitive: the pattern does not say (?i)
        ("Stoppp", False),
    ],
)
def test_the_handbooks_stop_pattern(text: str, found: bool) -> None:
    matcher = Matcher.build([rule(kind="regexp", pattern=r"^\s*((Stop(p)?)|(start))\s*$")], BERLIN)
    assert (ids(matcher, text) == [1]) is found


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("Hiermit die Kündigung meines Vertrags", True),
        ("ich habe gekündigt", True),
        ("Kündigung", True),
        ("KÜNDIGUNG", False),
        ("Kuendigung", False),
    ],
)
def test_the_handbooks_cancellation_pattern(text: str, found: bool) -> None:
    matcher = Matcher.build([rule(kind="regexp", pattern=r".*((Kündigung)|(gekündigt)).*")], BERLIN)
    assert (ids(matcher, text) == [1]) is found


def test_regexp_is_case_blind_only_when_the_pattern_says_so() -> None:
    matcher = Matcher.build(
        [rule(1, kind="regexp", pattern="(?i)kündigung"), rule(2, kind="regexp", pattern="Stop")],
        BERLIN,
    )
    assert ids(matcher, "MEINE KÜNDIGUNG") == [1]
    assert ids(matcher, "STOP") == []
    assert ids(matcher, "Stop") == [2]


def test_regexp_end_anchor_is_the_end_of_the_message() -> None:
    matcher = Matcher.build([rule(kind="regexp", pattern=r"^stop$")], BERLIN)
    assert ids(matcher, "stop") == [1]
    assert ids(matcher, "stop\n") == []  # RE2: $ is the very end (unlike Python's re)
    matcher = Matcher.build([rule(kind="regexp", pattern=r"(?m)^stop$")], BERLIN)
    assert ids(matcher, "hello\nstop\nbye") == [1]


def test_many_regexps_report_every_match_in_one_pass() -> None:
    patterns = [r"\+?\d[\d\s-]{7,}\d", r"[\w.+-]+@[\w-]+\.[\w.]+", r"(?i)refund", r"^x", r"y$"]
    matcher = Matcher.build(
        [rule(i, kind="regexp", pattern=p) for i, p in enumerate(patterns, 1)], BERLIN
    )
    assert ids(matcher, "call +49 151 1234567 or mail anna@example.com for a REFUND") == [1, 2, 3]
    assert ids(matcher, "x then y") == [4, 5]
    assert ids(matcher, "nothing") == []


@pytest.mark.parametrize("pattern", [r"(a+)+$", r"(x+x+)+y", r"^(a|a)*$", r"(.*a){20}"])
def test_evil_regexps_cannot_stall(pattern: str) -> None:
    matcher = Matcher.build([rule(kind="regexp", pattern=pattern)], BERLIN)
    for text in ("a" * 50_000 + "!", "x" * 50_000, "ab" * 25_000):
        matcher.match(Incoming(text, "telegram", NOON))


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        (r"(a)\1", r"invalid escape sequence: \1"),
        (r"(?=x)", "invalid perl operator: (?="),
        (r"(?<!x)y", "invalid perl operator: (?<"),
        (r"[a-", "missing ]"),
        (r"a{1001}", "invalid repetition size"),
    ],
)
def test_a_pattern_re2_refuses_is_refused_with_the_reason(pattern: str, reason: str) -> None:
    message = refusal(rule(kind="regexp", pattern=pattern))
    assert message.startswith("RE2 refuses the regular expression: ")
    assert reason in message
    with pytest.raises(RuleError, match=r"rule 7 \('rule 7'\): RE2 refuses"):
        Matcher.build([rule(7, kind="regexp", pattern=pattern)], BERLIN)


def test_text_that_is_not_valid_unicode_does_not_break_matching() -> None:
    matcher = Matcher.build([rule(1, pattern="stop"), rule(2, kind="regexp", pattern="x")], BERLIN)
    assert ids(matcher, "stop \ud800 x") == [1, 2]


def test_when_re2_gives_up_each_pattern_runs_on_its_own() -> None:
    # An RE2 set that runs out of memory reports nothing (not even its always-matching
    # sentinel); the matcher then searches pattern by pattern.
    class GivingUp:
        def Match(self, text: bytes) -> None:  # noqa: N802 - RE2's name
            return None

    matcher = Matcher.build(
        [rule(1, kind="regexp", pattern="a+b"), rule(2, kind="regexp", pattern="^c")], BERLIN
    )
    matcher._set = GivingUp()  # type: ignore[assignment]
    assert ids(matcher, "xaab") == [1]
    assert ids(matcher, "caab") == [1, 2]
    assert ids(matcher, "none") == []


# -- platforms, schedules, order -----------------------------------------------------------------


def test_platform_limitation() -> None:
    matcher = Matcher.build(
        [rule(1, kind="always", platforms=frozenset({"whatsapp", "sms"})), rule(2, kind="always")],
        BERLIN,
    )
    assert ids(matcher, "hi", platform="whatsapp") == [1, 2]
    assert ids(matcher, "hi", platform="sms") == [1, 2]
    assert ids(matcher, "hi", platform="telegram") == [2]


def office_hours(**fields: Any) -> Matcher:
    return Matcher.build([rule(kind="always", start=time(8), end=time(17), **fields)], BERLIN)


@pytest.mark.parametrize(
    ("utc", "inside"),
    [
        # Saturday 2024-03-30, CET (UTC+1)
        ("2024-03-30T06:59:59", False),  # 07:59:59
        ("2024-03-30T07:00:00", True),  # 08:00 start inclusive
        ("2024-03-30T15:59:59", True),  # 16:59:59
        ("2024-03-30T16:00:00", False),  # 17:00 end exclusive
        # Sunday 2024-03-31, clocks go forward at 02:00 -> CEST (UTC+2)
        ("2024-03-31T05:59:59", False),  # 07:59:59
        ("2024-03-31T06:00:00", True),  # 08:00
        ("2024-03-31T07:00:00", True),  # 09:00 (would be 08:00 in winter time)
        ("2024-03-31T14:59:59", True),  # 16:59:59
        ("2024-03-31T15:00:00", False),  # 17:00
    ],
)
def test_schedule_is_in_the_rule_zone_across_daylight_saving(utc: str, inside: bool) -> None:
    at = datetime.fromisoformat(utc).replace(tzinfo=UTC)
    assert (ids(office_hours(), "hi", at=at) == [1]) is inside


def test_the_hour_that_clocks_skip_never_happens() -> None:
    matcher = Matcher.build([rule(kind="always", start=time(2), end=time(3))], BERLIN)
    spring = datetime(2024, 3, 31, tzinfo=UTC)  # 01:00 CET -> 03:00 CEST at 01:00 UTC
    assert ids(matcher, "hi", at=spring + timedelta(minutes=59, seconds=59)) == []  # 01:59:59
    assert ids(matcher, "hi", at=spring + timedelta(hours=1)) == []  # 03:00
    autumn = datetime(2024, 10, 27, tzinfo=UTC)  # 03:00 CEST -> 02:00 CET at 01:00 UTC
    assert ids(matcher, "hi", at=autumn + timedelta(minutes=30)) == [1]  # 02:30 CEST
    assert ids(matcher, "hi", at=autumn + timedelta(hours=1, minutes=30)) == [1]  # 02:30 CET
    assert ids(matcher, "hi", at=autumn + timedelta(hours=2)) == []  # 03:00 CET


def test_the_instant_counts_whatever_zone_it_was_given_in() -> None:
    new_york = ZoneInfo("America/New_York")
    at = datetime(2024, 5, 8, 2, 30, tzinfo=new_york)  # 08:30 in Berlin
    assert ids(office_hours(), "hi", at=at) == [1]
    assert ids(office_hours(), "hi", at=at.astimezone(timezone(timedelta(hours=-9)))) == [1]
    assert ids(office_hours(), "hi", at=at - timedelta(hours=1)) == []


def local(day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    """May 2024 in Berlin: the 10th is a Friday."""
    return datetime(2024, 5, day, hour, minute, second, tzinfo=BERLIN)


@pytest.mark.parametrize(
    ("at", "inside"),
    [
        (local(10, 21, 59, 59), False),  # Friday before the window
        (local(10, 22), True),  # Friday 22:00: the window opens
        (local(10, 23, 59, 59), True),
        (local(11, 0), True),  # Saturday night still belongs to Friday's window
        (local(11, 5, 59, 59), True),
        (local(11, 6), False),  # end exclusive
        (local(11, 22), False),  # Saturday's own window: Saturday is not a rule day
        (local(10, 5), False),  # Friday morning belongs to Thursday's window
        (local(17, 23), True),  # next Friday
    ],
)
def test_a_window_across_midnight_counts_for_the_weekday_it_starts(
    at: datetime, inside: bool
) -> None:
    matcher = Matcher.build(
        [rule(kind="always", start=time(22), end=time(6), weekdays=frozenset({4}))], BERLIN
    )
    assert (ids(matcher, "hi", at=at) == [1]) is inside


def test_weekdays_without_window_are_whole_days_in_the_zone() -> None:
    weekdays = Matcher.build([rule(kind="always", weekdays=frozenset(range(5)))], BERLIN)
    assert ids(weekdays, "hi", at=local(10, 23, 59)) == [1]  # Friday
    assert ids(weekdays, "hi", at=local(11, 0)) == []  # Saturday
    assert ids(weekdays, "hi", at=local(12, 23, 59)) == []  # Sunday
    # Sunday 23:30 UTC is already Monday 01:30 in Berlin
    assert ids(weekdays, "hi", at=datetime(2024, 5, 12, 23, 30, tzinfo=UTC)) == [1]


def test_window_with_weekdays() -> None:
    matcher = office_hours(weekdays=frozenset({0, 1, 2, 3, 4}))
    assert ids(matcher, "hi", at=local(10, 9)) == [1]
    assert ids(matcher, "hi", at=local(11, 9)) == []


def test_priority_highest_first_then_id() -> None:
    matcher = Matcher.build(
        [
            rule(5, kind="always", priority=0),
            rule(3, kind="always", priority=10),
            rule(4, pattern="stop", priority=10),
            rule(1, kind="regexp", pattern="stop", priority=-1),
            rule(2, pattern="stop", priority=0),
        ],
        BERLIN,
    )
    assert ids(matcher, "stop") == [3, 4, 2, 5, 1]
    assert ids(matcher, "go") == [3, 5]


def test_rest_rules_come_apart() -> None:
    matcher = Matcher.build(
        [
            rule(1, pattern="stop"),
            rule(2, kind="rest", priority=1),
            rule(3, kind="rest", priority=5, platforms=frozenset({"sms"})),
            rule(4, kind="rest", start=time(8), end=time(9)),
        ],
        BERLIN,
    )
    found = matcher.match(Incoming("stop", "telegram", NOON))
    assert [r.id for r in found.rules] == [1]
    assert [r.id for r in found.rest] == [2]  # the caller decides whether rest fires
    found = matcher.match(Incoming("hello", "sms", local(10, 8, 30)))
    assert found.rules == []
    assert [r.id for r in found.rest] == [3, 2, 4]


def test_disabled_rules_are_left_out_even_invalid_ones() -> None:
    matcher = Matcher.build(
        [
            rule(1, kind="always", enabled=False),
            rule(2, kind="regexp", pattern=r"(a)\1", enabled=False),
            rule(3, pattern="stop"),
        ],
        BERLIN,
    )
    assert matcher.size == 1
    assert ids(matcher, "stop") == [3]


def test_build_refuses_two_rules_with_one_id() -> None:
    with pytest.raises(RuleError, match="two rules have the id 1"):
        Matcher.build([rule(1, kind="always"), rule(1, pattern="x")], BERLIN)


def test_an_empty_matcher_matches_nothing() -> None:
    matcher = Matcher.build([], BERLIN)
    assert matcher.size == 0
    found = matcher.match(Incoming("hello", "telegram", NOON))
    assert (found.rules, found.rest) == ([], [])


def test_incoming_needs_an_aware_time() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        Incoming("hi", "telegram", datetime(2024, 5, 8, 12))  # noqa: DTZ001


# -- placeholders -------------------------------------------------------------------------------


def test_placeholders_in() -> None:
    assert placeholders_in("Hi {NICKNAME}, we got {MSG} at {TIMESTAMP} {UTC}.") == {
        "NICKNAME",
        "MSG",
        "TIMESTAMP",
        "UTC",
    }
    assert placeholders_in('{FOO} and {"json": 1} and { MSG } and {}') == {"FOO"}
    assert placeholders_in("no braces") == set()


def test_fill_replaces_known_names_and_leaves_other_braces() -> None:
    values = {"NICKNAME": "Anna", "MSG": "I want {ID}", "ID": "17", "FOO": "x"}
    text = 'Hi {NICKNAME}: "{MSG}" ({FOO}) {"a": 1} {CONTACTREMARK}.'
    # values are not expanded again, unknown names stay, a known name without value is empty
    assert fill(text, values) == 'Hi Anna: "I want {ID}" ({FOO}) {"a": 1} .'
    assert fill("{ID}{ID}", values) == "1717"
    assert fill("plain", values) == "plain"


def test_every_placeholder_and_action_is_known() -> None:
    text = " ".join(f"{{{p}}}" for p in PLACEHOLDERS)
    validate(rule(kind="always", actions=(Action("autoAnswer", text=text),)))
    assert len(ACTIONS) == 10


# -- validation ---------------------------------------------------------------------------------


def test_a_rule_with_every_action_is_valid() -> None:
    validate(
        rule(
            kind="contain",
            pattern="Kündigung, gekündigt",
            platforms=frozenset({"telegram", "whatsapp", "messenger", "sms"}),
            start=time(22),
            end=time(6),
            weekdays=frozenset({0, 6}),
            limit="every",
            limit_seconds=3600,
            priority=-3,
            actions=(
                Action(
                    "mailForward",
                    target="support+{CONTACTID}@example.com",
                    subject="From {NICKNAME}",
                    text="{MSG} at {TIMESTAMP} {UTC}",
                ),
                Action("mailForward", target="anna@mail.example.co.uk"),
                Action("webserviceForward", target="https://crm.example.com/hook?c={CONTACTID}"),
                Action("httpBotFwd", target="http://127.0.0.1:8081/bot"),
                Action("smsFwd", target="+4915112345678", text="{NICKNAME}: {MSG}"),
                Action("autoAnswer", text="Danke, {NICKNAME}!"),
                Action("autoAnswerMedia", media_id=3),
                Action("autoAnswerMedia", media_id=3, text="Our price list"),
                Action("addToChannel", target="news_letter-1"),
                Action("removeFromChannel", target="offers"),
                Action("i18nStop"),
                Action("i18nStop", target="pt-br"),
                Action("doNothing"),
            ),
        )
    )
    validate(rule(kind="rest", pattern="", limit="once"))
    validate(rule(kind="regexp", pattern=r"^\s*((Stop(p)?)|(start))\s*$"))


ACTION_PROBLEMS = [
    (Action("explode"), "action 1: unknown action 'explode'; known: mailForward, "),
    (Action("autoAnswer"), "action 1 (autoAnswer) needs the text of the answer"),
    (Action("autoAnswer", text="  "), "needs the text of the answer"),
    (
        Action("autoAnswer", text="Hi {FOO}"),
        "action 1 (autoAnswer) text: unknown placeholder {FOO}; known: {ID}, {MSGID}, {MSG},",
    ),
    (
        Action("autoAnswer", text="{msg}"),
        "unknown placeholder {msg} (placeholders are written in capitals: {MSG})",
    ),
    (
        Action("mailForward", target="a@example.com", subject="{X}"),
        "(mailForward) subject: unknown placeholder {X}",
    ),
    (
        Action("mailForward", target="{NOPE}@example.com"),
        "(mailForward) target: unknown placeholder {NOPE}",
    ),
    (
        Action("mailForward"),
        "(mailForward) needs an e-mail address such as support@example.com",
    ),
    (
        Action("mailForward", target="anna@"),
        "needs an e-mail address such as support@example.com, not 'anna@'",
    ),
    (Action("mailForward", target="anna example.com"), "needs an e-mail address"),
    (Action("mailForward", target="anna@localhost"), "needs an e-mail address"),
    (
        Action("webserviceForward", target="ftp://example.com/x"),
        "(webserviceForward) needs an http(s) address",
    ),
    (Action("webserviceForward"), "needs an http(s) address"),
    (Action("webserviceForward", target="https://"), "needs an http(s) address"),
    (Action("webserviceForward", target="https://exa mple.com"), "contains spaces"),
    (Action("webserviceForward", target="https://example.com:99999/"), "needs an http(s) address"),
    (
        Action("webserviceForward", target="https://e.com", text="{}"),
        "(webserviceForward) takes no text",
    ),
    (Action("httpBotFwd", target="crm.example.com/bot"), "(httpBotFwd) needs an http(s) address"),
    (
        Action("smsFwd", target="015112345678"),
        "(smsFwd) needs a phone number in international format",
    ),
    (Action("smsFwd", target="+49 151 12345678"), "international format"),
    (Action("smsFwd", target="{MSISDN}"), "international format"),
    (Action("smsFwd"), "international format"),
    (Action("autoAnswerMedia"), "(autoAnswerMedia) needs the file to send (media_id)"),
    (Action("autoAnswerMedia", media_id=0), "needs the file to send"),
    (Action("addToChannel"), "(addToChannel) needs the name of a channel"),
    (Action("removeFromChannel", target=" "), "(removeFromChannel) needs the name of a channel"),
    (Action("addToChannel", target="news letter"), "'news letter' is not a channel name"),
    (Action("i18nStop", target="German"), "'German' is not a language code"),
    (Action("autoAnswer", text="hi", target="x"), "(autoAnswer) takes no target"),
    (Action("doNothing", text="x"), "(doNothing) takes no text"),
    (Action("autoAnswer", text="hi", media_id=1), "(autoAnswer) takes no media id"),
]


@pytest.mark.parametrize(("action", "message"), ACTION_PROBLEMS)
def test_malformed_actions_are_refused_in_words(action: Action, message: str) -> None:
    assert message in refusal(rule(kind="always", actions=(action,)))


def test_the_failing_action_is_named_by_its_number() -> None:
    actions = (Action("doNothing"), Action("autoAnswer"))
    assert refusal(rule(kind="always", actions=actions)).startswith("action 2 (autoAnswer)")


RULE_PROBLEMS = [
    ({"name": ""}, "the rule needs a name"),
    ({"name": "x" * 101}, "the rule's name is 101 characters long; at most 100"),
    (
        {"keyword_type": "sometimes"},
        "unknown keyword type 'sometimes'; known: always, rest, contain, regexp",
    ),
    (
        {"keyword_type": "contain", "pattern": None},
        "a contain rule needs keywords, separated by commas",
    ),
    ({"keyword_type": "contain", "pattern": "  "}, "a contain rule needs keywords"),
    ({"keyword_type": "contain", "pattern": "stop,,start"}, "keyword 2 of 'stop,,start' is empty"),
    ({"keyword_type": "contain", "pattern": "stop, "}, "keyword 2 of 'stop, ' is empty"),
    ({"keyword_type": "contain", "pattern": ", stop"}, "keyword 1 of ', stop' is empty"),
    (
        {"keyword_type": "contain", "pattern": "stop, " * 200},
        "1,200 characters long; at most 1,000",
    ),
    ({"keyword_type": "regexp", "pattern": None}, "a regexp rule needs a pattern"),
    (
        {"keyword_type": "regexp", "pattern": "a" * 1001},
        "the pattern is 1,001 characters long; at most 1,000",
    ),
    (
        {"keyword_type": "regexp", "pattern": "[a-z]{1,1000}" * 11},
        "the regular expression is too complex",
    ),
    ({"keyword_type": "always", "pattern": "stop"}, "an always rule has no keywords or pattern"),
    ({"keyword_type": "rest", "pattern": "stop"}, "a rest rule has no keywords or pattern"),
    (
        {"platforms": frozenset({"icq"})},
        "unknown platform 'icq'; known: telegram, whatsapp, messenger, sms",
    ),
    ({"start": time(8)}, "the time window needs both a start and an end"),
    ({"end": time(8)}, "the time window needs both a start and an end"),
    ({"start": time(8), "end": time(8)}, "the time window starts and ends at 08:00"),
    ({"start": time(8, tzinfo=UTC), "end": time(9)}, "its times take no zone of their own"),
    ({"weekdays": frozenset()}, "the rule has no weekday, so it would never fire"),
    ({"weekdays": frozenset({1, 7})}, "weekday 7 is not a day: 0 (Monday) to 6 (Sunday)"),
    ({"limit": "sometimes"}, "unknown limit 'sometimes'; known: always, once, every"),
    ({"limit": "every"}, "limit every needs limit_seconds"),
    ({"limit": "every", "limit_seconds": 0}, "limit every needs limit_seconds"),
    (
        {"limit": "once", "limit_seconds": 60},
        "limit_seconds only goes with limit every, not with once",
    ),
    ({"actions": ()}, "the rule has no action"),
]


@pytest.mark.parametrize(("fields", "message"), RULE_PROBLEMS)
def test_malformed_rules_are_refused_in_words(fields: dict[str, Any], message: str) -> None:
    base = rule(kind="always")
    assert message in refusal(replace(base, **fields))


# -- the property: one pass equals a naive loop -------------------------------------------------

_WORD = r"[\w\u0300-\u036f]"  # the alphabet below has no other combining marks


def naive_fold(text: str) -> str:
    folded = unicodedata.normalize("NFC", text.casefold()).replace("i\u0307", "i")
    return re.sub(r"\s+", " ", folded).strip()


def naive_contains(keyword: str, text: str) -> bool:
    key = naive_fold(keyword)
    before = f"(?<!{_WORD})" if re.match(_WORD, key[0]) else ""
    after = f"(?!{_WORD})" if re.match(_WORD, key[-1]) else ""
    return re.search(before + re.escape(key) + after, naive_fold(text)) is not None


def naive_search(pattern: str, text: str) -> bool:
    python = pattern[:-1] + r"\Z" if pattern.endswith("$") else pattern
    return re.search(python, text) is not None


def naive(rules: list[Rule], text: str) -> list[int]:
    fitting = [
        r
        for r in rules
        if r.keyword_type == "always"
        or (
            r.keyword_type == "contain"
            and any(naive_contains(k, text) for k in (r.pattern or "").split(","))
        )
        or (r.keyword_type == "regexp" and naive_search(r.pattern or "", text))
    ]
    return [r.id for r in sorted(fitting, key=lambda r: (-r.priority, r.id))]


WORDS = [
    "stop",
    "Stopp",
    "START",
    "kündigung",
    "Straße",
    "STRASSE",
    "İstanbul",
    "ışık",
    "a",
    "c++",
    "?",
    "hallo welt",
    "x_y",
    "42",
    "ﬁle",
    "ku\u0308ndigung",
]
LETTERS = list("abcfiklnopstuxyzABSTOPKÜüäßİIı0124 _-,.!?+\n\t") + ["\u0307", "\u0308", "ﬁ", "日"]
# RE2-compatible patterns whose meaning is the same in Python's re (no \d \w \s \b, which are
# ASCII in RE2; no case-blind i, k or s, which fold differently).
ATOMS = [
    "stop",
    "Stop",
    "st(o|a)p",
    "[0-9]+",
    "[0-9]{2,}",
    "a+",
    "(a+)+",
    "k(ü|ue)ndigung",
    ".",
    "x*",
    "[a-z]+_[a-z]+",
    "(c|x)\\+\\+",
    "\\?",
    "ü",
]
CASE_BLIND_ATOMS = ["top", "ar", "a+", "(a+)+", "ü", "[0-9]+", "x*", ".", "(c|x)\\+\\+"]

keyword = st.one_of(
    st.sampled_from(WORDS),
    st.text(alphabet=LETTERS, min_size=1, max_size=5).filter(
        lambda k: "," not in k and k.strip() != ""
    ),
).map(str.strip)
plain_regexp = st.builds(
    lambda a, atoms, z: ("^" if a else "") + "".join(atoms) + ("$" if z else ""),
    st.booleans(),
    st.lists(st.sampled_from(ATOMS), min_size=1, max_size=3),
    st.booleans(),
)
case_blind_regexp = st.lists(st.sampled_from(CASE_BLIND_ATOMS), min_size=1, max_size=2).map(
    lambda atoms: "(?i)" + "".join(atoms)
)
rule_spec = st.one_of(
    st.tuples(st.just("contain"), st.lists(keyword, min_size=1, max_size=3).map(", ".join)),
    st.tuples(st.just("regexp"), st.one_of(plain_regexp, case_blind_regexp)),
    st.tuples(st.just("always"), st.none()),
)
message = st.one_of(
    st.text(alphabet=LETTERS, max_size=60),
    st.lists(
        st.sampled_from(
            [
                *WORDS,
                " ",
                ", ",
                "!",
                "x",
                "_",
                "\n",
                "stopper",
                "\u0307",
                "hallo",
                "welt",
                "\t",
                "hallo \n welt",
                "HALLO\tWelt",
            ]
        ),
        max_size=12,
    ).map("".join),
    st.text(max_size=40),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    specs=st.lists(st.tuples(rule_spec, st.integers(-2, 2)), max_size=8),
    texts=st.lists(message, min_size=1, max_size=5),
)
def test_matching_equals_a_naive_loop(
    specs: list[tuple[tuple[str, str | None], int]], texts: list[str]
) -> None:
    rules = [
        rule(i, kind=kind, pattern=pattern, priority=priority)
        for i, ((kind, pattern), priority) in enumerate(specs, 1)
    ]
    matcher = Matcher.build(rules, BERLIN)
    for text in texts:
        assert ids(matcher, text) == naive(rules, text), text
