"""Rule-matching benchmark: many chatbot rules against many customer messages, in-process.

Builds a `bridge.rules.Matcher` from N `contain` rules (1-3 keywords each, some of two words,
some with capitals and umlauts) and M `regexp` rules (most with a literal word, some without
any literal: phone numbers, e-mail addresses, amounts, dates, ...), then matches messages of
100-300 characters made of deterministic random words, some with keywords, numbers and
addresses in them. Matching is timed per batch of messages; the figure is the median of the
per-message times of the batches (the first batch also pays for RE2 building its automaton's
states, so it is shown apart). A naive loop (every keyword a Python `re` search with word
boundaries on the case-folded text, every pattern a `re.search`) runs on a subset for the ratio.

Prints the figures, then one line:
    rules: us_per_msg=N build_ms=N

Usage: python bench/rules.py [--messages 100000] [--contain 1000] [--regexp 100]
                             [--batch 1000] [--baseline 2000] [--seed 1]
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bridge.rules import Incoming, Matcher, fold, split_keywords  # noqa: E402
from bridge.types import Action, Rule  # noqa: E402

SYLLABLES = (
    "ka ne ro mi ta su lo be de ga fi ho ju pe ra se ti vo wa ze an en in on un er "
    "ach ung ei au sch st tr br kl gr pf ö ä ü ß"
).split()

# Shapes without any literal a prefilter could key on.
LITERAL_FREE = [
    r"\+?\d[\d\s-]{7,}\d",  # phone number
    r"[\w.+-]+@[\w-]+\.[\w.-]+",  # e-mail address
    r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){3,7}\b",  # IBAN
    r"\b\d{5}\b",  # German postcode
    r"\d+[.,]\d{2}\s*(?:€|EUR|USD)",  # amount
    r"https?://\S+",  # link
    r"\b\d{1,2}\.\d{1,2}\.\d{2,4}\b",  # date
    r"\b\d{1,2}:\d{2}\b",  # time
    r"#\d{4,}",  # order number
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}",  # uuid
    r"(?i)\b[a-z]{3}-\d{4}\b",  # ticket id
    r"[!?]{3,}",  # shouting punctuation
    r"\b[A-ZÄÖÜ]{6,}\b",  # shouting word
    r"^\s*$",  # empty
    r"\d{10,}",  # long digit run
    r"(?i)^\s*\pL{1,3}\s*$",  # one short word
    r"\p{Cyrillic}+",
    r"[\x{1F600}-\x{1F64F}]",  # emoji
    r"(\d)[\s-]?(\d)[\s-]?(\d)[\s-]?(\d)",  # four digits, spaced
    r".*\?\s*$",  # a question
]


def word(rng: random.Random) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4)))


def make_rules(rng: random.Random, vocab: list[str], contain: int, regexp: int) -> list[Rule]:
    answer = (Action("autoAnswer", text="Thanks, {NICKNAME}!"),)
    rules: list[Rule] = []
    for i in range(contain):
        keywords = []
        for _ in range(rng.randint(1, 3)):
            kw = rng.choice(vocab)
            if rng.random() < 0.1:
                kw = f"{kw} {rng.choice(vocab)}"
            if rng.random() < 0.2:
                kw = kw.capitalize()
            keywords.append(kw)
        rules.append(
            Rule(
                id=i + 1,
                name=f"contain {i}",
                keyword_type="contain",
                pattern=", ".join(keywords),
                priority=rng.randint(0, 3),
                actions=answer,
            )
        )
    templates = [
        r"\b{w}\b",
        r"(?i){w}s?",
        r"{w}\s+\d+",
        r"^\s*{w}\s*$",
        r".*(({w})|({v})).*",
        r"{w}[-_ ]?{v}",
        r"(?i)\b(?:{w}|{v})\b",
    ]
    literal_free = LITERAL_FREE * (regexp // len(LITERAL_FREE) + 1)
    with_literal = regexp - min(regexp // 5, len(LITERAL_FREE))
    for i in range(regexp):
        if i < with_literal:
            template = rng.choice(templates)
            pattern = template.format(w=rng.choice(vocab), v=rng.choice(vocab))
        else:
            pattern = literal_free[i - with_literal]
        rules.append(
            Rule(
                id=contain + i + 1,
                name=f"regexp {i}",
                keyword_type="regexp",
                pattern=pattern,
                priority=rng.randint(0, 3),
                actions=answer,
            )
        )
    return rules


def make_messages(
    rng: random.Random, vocab: list[str], keywords: list[str], count: int
) -> list[str]:
    extras = [
        "+49 151 1234567",
        "anna.berg@example.com",
        "10115",
        "19,99 EUR",
        "https://example.com/x",
        "12.05.2024",
        "14:30",
        "#48213",
        "DE89 3704 0044 0532 0130 00",
        "HILFE!!!",
        "Привет",
        "😀",
    ]
    messages = []
    for _ in range(count):
        size = rng.randint(100, 300)
        parts: list[str] = []
        length = 0
        while length < size:
            piece = rng.choice(vocab)
            if rng.random() < 0.1:
                piece = piece.capitalize()
            if rng.random() < 0.08:
                piece += rng.choice(",.!?")
            parts.append(piece)
            length += len(piece) + 1
        # Some messages carry a keyword (as written in a rule, or in capitals) or an extra.
        if rng.random() < 0.3:
            keyword = rng.choice(keywords)
            parts.insert(
                rng.randrange(len(parts)), keyword.upper() if rng.random() < 0.2 else keyword
            )
        if rng.random() < 0.1:
            parts.insert(rng.randrange(len(parts)), rng.choice(extras))
        messages.append(" ".join(parts)[:size])
    return messages


class Naive:
    """Every rule on its own: a Python `re` per keyword (case-folded text) and per pattern."""

    def __init__(self, rules: list[Rule]) -> None:
        self.keyword_rules: list[tuple[int, list[re.Pattern[str]]]] = []
        self.regexp_rules: list[tuple[int, re.Pattern[str]]] = []
        for rule in rules:
            if rule.keyword_type == "contain":
                searches = [
                    re.compile(rf"(?<!\w){re.escape(fold(k.strip()))}(?!\w)")
                    for k in (rule.pattern or "").split(",")
                ]
                self.keyword_rules.append((rule.id, searches))
            elif rule.keyword_type == "regexp":
                python = (rule.pattern or "").replace(
                    r"\x{1F600}-\x{1F64F}", "\U0001f600-\U0001f64f"
                )
                python = python.replace(r"\pL", r"[^\W\d_]").replace(r"\p{Cyrillic}", "[Ѐ-ӿ]")
                self.regexp_rules.append((rule.id, re.compile(python)))

    def match(self, text: str) -> list[int]:
        return self.keywords(text) + self.patterns(text)

    def keywords(self, text: str) -> list[int]:
        folded = fold(text)
        return [rid for rid, ss in self.keyword_rules if any(s.search(folded) for s in ss)]

    def patterns(self, text: str) -> list[int]:
        return [rid for rid, pattern in self.regexp_rules if pattern.search(text)]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--contain", type=int, default=1000, help="contain rules")
    parser.add_argument("--regexp", type=int, default=100, help="regexp rules")
    parser.add_argument("--batch", type=int, default=1000, help="messages per timed batch")
    parser.add_argument("--baseline", type=int, default=2000, help="messages for the naive loop")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    rng = random.Random(args.seed)
    words = sorted({word(rng) for _ in range(20_000)})
    rng.shuffle(words)
    # Keywords come from words of their own: ordinary text contains them only as parts of
    # longer words ("art" in "start"), which the word-boundary checks must drop.
    vocab, keyword_words = words[3000:], words[:3000]
    rules = make_rules(rng, keyword_words, args.contain, args.regexp)
    keywords = [
        k for r in rules if r.keyword_type == "contain" for k in split_keywords(r.pattern or "")
    ]
    messages = make_messages(rng, vocab, keywords, args.messages)
    chars = statistics.mean(len(m) for m in messages)
    print(
        f"{args.contain:,} contain rules ({len(keywords):,} keywords), {args.regexp:,} regexp rules;"
        f" {len(messages):,} messages of {chars:.0f} characters on average"
    )

    zone = ZoneInfo("Europe/Berlin")
    builds = []
    for _ in range(5):
        t0 = time.perf_counter()
        matcher = Matcher.build(rules, zone)
        builds.append(time.perf_counter() - t0)
    build_ms = statistics.median(builds) * 1000
    print(f"build: {build_ms:.1f} ms (median of 5; validation and RE2 compilation included)")

    at = datetime(2024, 5, 8, 10, tzinfo=UTC)
    incoming = [Incoming(m, "telegram", at) for m in messages]
    per_message: list[float] = []
    hits = 0
    for start in range(0, len(incoming), args.batch):
        batch = incoming[start : start + args.batch]
        t0 = time.perf_counter_ns()
        for message in batch:
            matcher.match(message)
        per_message.append((time.perf_counter_ns() - t0) / len(batch) / 1000)
    for message in incoming[: args.baseline]:
        hits += len(matcher.match(message).rules)
    median = statistics.median(per_message)
    ordered = sorted(per_message)
    p90 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]
    print(
        f"match: median {median:.1f} µs/message over {len(per_message)} batches of {args.batch}"
        f" (p90 batch {p90:.1f} µs, first batch {per_message[0]:.1f} µs, worst {ordered[-1]:.1f} µs);"
        f" {hits / max(1, min(args.baseline, len(incoming))):.2f} rules fit per message"
    )

    naive = Naive(rules)
    subset = messages[: args.baseline]
    naive_part = {}
    for part, run in (("keywords", naive.keywords), ("patterns", naive.patterns)):
        t0 = time.perf_counter()
        for text in subset:
            run(text)
        naive_part[part] = (time.perf_counter() - t0) / max(1, len(subset)) * 1e6
    naive_us = naive_part["keywords"] + naive_part["patterns"]
    t0 = time.perf_counter()
    for message in incoming[: len(subset)]:
        matcher.match(message)
    engine_us = (time.perf_counter() - t0) / max(1, len(subset)) * 1e6
    print(
        f"naive loop on {len(subset):,} messages: {naive_us:,.0f} µs/message"
        f" ({naive_part['keywords']:,.0f} µs keyword searches, {naive_part['patterns']:,.0f} µs"
        f" re.search of the patterns);"
        f" the matcher on the same: {engine_us:.1f} µs/message ({naive_us / engine_us:,.0f}× faster)"
    )
    print(f"rules: us_per_msg={median:.1f} build_ms={build_ms:.0f}")


if __name__ == "__main__":
    main()
