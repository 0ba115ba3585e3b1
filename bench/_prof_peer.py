"""Peer benchmark: the bridge's inbound path against opsdroid, with the same chatbot rules.

Both sides get the workload of bench/rules.py (same seed, same generator): 1,000 `contain`
rules (1-3 keywords each) and 100 `regexp` rules, and the same customer messages of 100-300
characters. Both answer every message:

- **opsdroid** (installed from PyPI into .bench-venvs/opsdroid, with `setuptools<81`, which
  it needs for `pkg_resources`) loads one skill module with 1,100 `match_regex` skills: a
  contain rule is one case-insensitive regex of its keywords on word boundaries
  (`(?f)\\b(?:kw1|kw2)\\b`, full case folding like the bridge's `casefold`, runs of spaces
  as `\\s+`), a regexp rule is its pattern (RE2's `\\x{...}` written as the character, the
  `regex` module reads the rest). Each skill answers with `message.respond(...)`; a
  `match_catchall` skill answers the messages no skill matched. opsdroid runs the best-ranked
  matching skill only, so it sends exactly one answer per message, over the websocket it came
  from. It stores nothing (no database configured).
- **the bridge** runs as bench/inbound.py runs it (its own process, SQLite, Telegram webhook
  mode, Slack HTTP mode, against that benchmark's instant fake Telegram + Slack served by
  this process), with the same 1,100 rules stored in its database before it starts
  (`tx.rules.add_rule` in one write transaction), plus one `rest` rule for the
  messages no rule fits (the catch-all's counterpart).

The action is `autoAnswer` on every rule, the answer to opsdroid's `message.respond`: it
stores the answer as an outbound message, queues it for Telegram and queues a note into the
Slack thread, all in the webhook's transaction; the dispatcher then sends them. That is more
work than opsdroid's, never less: the bridge fires EVERY rule that fits (each answers), where
opsdroid runs one skill, and it mirrors every message into Slack besides. `addToChannel`
answers nobody, `webserviceForward`/`httpBotFwd` would add an outside service's latency,
and `doNothing` hides the message, so none of them is the comparable action.

Measured:
- bridge: N Telegram webhooks POSTed at concurrency C (closed loop); a webhook is answered
  only once its message, the rules' answers and the outbox rows are committed, so the time
  until the last answer is the time until all are stored (the rows are counted afterwards
  and must be all there). Also shown: until every answer reached the fake Telegram.
- opsdroid: the same N messages over C websockets (closed loop: send, wait for the answer,
  send the next), until every answer is back, or until its time budget is spent
  (`--opsdroid-seconds`): then the rate is of the messages answered so far.
Both are driven by this script's own aiohttp client, one after the other. The bridge shares
the machine's cores with the client, the fakes and its dispatcher process; opsdroid is one
process beside the client.

The regex module that opsdroid uses caches 500 compiled patterns; with 1,100 skills it
compiles most of them again for every message. `--opsdroid-regex-cache N` raises that cache
inside opsdroid's process (0: as installed); by default both are measured and the ratio is
taken against the FASTER opsdroid, so a cache cliff cannot flatter the bridge.

Prints the figures, then one line:
    peer_opsdroid: bridge_msgs_per_s=N opsdroid_msgs_per_s=N ratio=N

Usage: python bench/peer_opsdroid.py [--messages 5000] [--concurrency 50] [--chats 500]
          [--skip-install] [--opsdroid-regex-cache both|0|N] [--opsdroid-seconds 120]
          [--dispatch process|inline] [--only both|bridge|opsdroid]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.inbound import (  # noqa: E402
    Fakes,
    bridge_settings,
    free_port,
    pct,
    peak_rss_mb,
    post_all,
)
from bench.rules import make_messages, make_rules, word  # noqa: E402
from bridge.rules import Incoming, Matcher, split_keywords, validate  # noqa: E402
from bridge.types import Action, Rule  # noqa: E402
from storage import Tx  # noqa: E402
from storage.db import Database  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".bench-venvs" / "opsdroid"
OPSDROID = "opsdroid==0.31.0"
FIRST_CHAT = 5_000_000
ANSWER = "Thanks, {NICKNAME}!"
FALLBACK = "Thanks, {NICKNAME}! Someone will answer soon."


# -- the workload --------------------------------------------------------------------------


def workload(seed: int, contain: int, regexp: int, count: int) -> tuple[list[Rule], list[str]]:
    """bench/rules.py's rules and messages, drawn exactly as its main() draws them."""
    rng = random.Random(seed)
    words = sorted({word(rng) for _ in range(20_000)})
    rng.shuffle(words)
    vocab, keyword_words = words[3000:], words[:3000]
    rules = make_rules(rng, keyword_words, contain, regexp)
    keywords = [
        k for r in rules if r.keyword_type == "contain" for k in split_keywords(r.pattern or "")
    ]
    messages = make_messages(rng, vocab, keywords, count)
    answer = (Action("autoAnswer", text=ANSWER),)
    rules = [replace(r, actions=answer) for r in rules]
    fallback = Rule(
        id=len(rules) + 1,
        name="fallback",
        keyword_type="rest",
        actions=(Action("autoAnswer", text=FALLBACK),),
    )
    return [*rules, fallback], messages


def expected_answers(rules: list[Rule], texts: list[str]) -> tuple[int, int]:
    """(answers the bridge sends, messages no rule but the fallback fits)."""
    matcher = Matcher.build(rules, ZoneInfo("UTC"))
    at = datetime.now(UTC)
    answers = unmatched = 0
    for text in texts:
        found = matcher.match(Incoming(text, "telegram", at))
        answers += len(found.rules) or len(found.rest)
        unmatched += not found.rules
    return answers, unmatched


def opsdroid_expression(rule: Rule) -> tuple[str, bool]:
    """A rule as an opsdroid regex skill: (expression, case_sensitive)."""
    pattern = rule.pattern or ""
    if rule.keyword_type == "contain":
        alternatives = [
            r"\s+".join(re.escape(part) for part in keyword.split())
            for keyword in split_keywords(pattern)
        ]
        return rf"(?f)\b(?:{'|'.join(alternatives)})\b", False
    # RE2 writes code points as \x{1F600}; the regex module wants the character itself.
    return re.sub(r"\\x\{([0-9A-Fa-f]+)\}", lambda m: chr(int(m.group(1), 16)), pattern), True


def telegram_update(n: int, chat: int, text: str) -> bytes:
    return json.dumps(
        {
            "update_id": n + 1,
            "message": {
                "message_id": n + 1,
                "from": {"id": chat, "is_bot": False, "first_name": f"Customer{chat}"},
                "chat": {"id": chat, "type": "private", "first_name": f"Customer{chat}"},
                "date": int(time.time()),
                "text": text,
            },
        }
    ).encode()


async def stop(proc: asyncio.subprocess.Process, what: str, grace: float = 30.0) -> None:
    """SIGTERM, then SIGKILL if it is still running after `grace` seconds (and say so)."""
    if proc.returncode is not None:
        return
    proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), grace)
    except TimeoutError:
        print(
            f"warning: {what} (pid {proc.pid}) was still running {grace:.0f}s after SIGTERM;"
            " killed",
            file=sys.stderr,
        )
        proc.kill()
        await proc.wait()


# -- the bridge ------------------------------------------------------------------------------


class AnsweringFakes(Fakes):
    """bench/inbound.py's fakes, with a Telegram that takes the bridge's answers."""

    def __init__(self) -> None:
        super().__init__()
        self.answers = 0
        self.sent_ids = 0  # never reset: Telegram does not reuse message ids
        self.answers_wanted = 0
        self.last_answer = 0.0
        self.answered = asyncio.Event()
        self.last_activity = 0.0

    async def telegram(self, request: web.Request) -> web.Response:
        self.last_activity = time.perf_counter()
        if request.match_info["method"] != "sendMessage":
            return await super().telegram(request)
        params = await request.json()
        self.answers += 1
        self.sent_ids += 1
        self.last_answer = time.perf_counter()
        if self.answers_wanted and self.answers >= self.answers_wanted:
            self.answered.set()
        # Telegram numbers a private chat's messages in both directions in one sequence: the
        # ids of answers must not be ids of the customers' messages (the bridge keeps both
        # under one unique key and drops an inbound message whose id it has seen).
        result = {
            "message_id": 1_000_000_000 + self.sent_ids,
            "date": int(time.time()),
            "chat": {"id": int(params["chat_id"]), "type": "private"},
            "text": params.get("text", ""),
        }
        return web.json_response({"ok": True, "result": result})

    async def slack(self, request: web.Request) -> web.Response:
        self.last_activity = time.perf_counter()
        return await super().slack(request)

    async def quiet(self, seconds: float = 1.0, limit: float = 120.0) -> None:
        """Wait until neither fake was called for `seconds` (the dispatcher is idle)."""
        deadline = time.perf_counter() + limit
        while time.perf_counter() - self.last_activity < seconds:
            if time.perf_counter() > deadline:
                raise TimeoutError("the bridge kept calling the fakes")
            await asyncio.sleep(0.2)


async def store_rules(url: str, rules: list[Rule]) -> None:
    """Create the schema and store the rules, as `/rule add` would, in one transaction."""
    for rule in rules:
        validate(rule)
    db = Database(url)
    try:
        await db.migrate()
        now = datetime.now(UTC)

        def insert(tx: Tx) -> None:
            for rule in rules:
                tx.rules.add_rule(rule, "bench", now)

        await db.write_tx(insert)
    finally:
        await db.close()


def count_messages(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT direction, count(*) FROM messages GROUP BY direction")
        return {str(direction): int(n) for direction, n in rows}


async def run_bridge(
    args: argparse.Namespace, rules: list[Rule], texts: list[str]
) -> dict[str, float]:
    fakes = AnsweringFakes()
    runner = web.AppRunner(fakes.app(), access_log=None)
    await runner.setup()
    fake_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", fake_port).start()
    base = f"http://127.0.0.1:{fake_port}"
    port = free_port()
    tmp = Path(tempfile.mkdtemp(prefix="bench-peer-bridge-"))
    database = tmp / "bridge.db"
    url = f"sqlite+aiosqlite:///{database}"
    t0 = time.perf_counter()
    await store_rules(url, rules)
    print(f"bridge: stored {len(rules):,} rules in {time.perf_counter() - t0:.1f}s")
    cfg = tmp / "bridge.toml"
    cfg.write_text(bridge_settings(url, port, base, args.dispatch))
    log = Path(os.environ.get("BENCH_LOG", os.devnull)).open("wb")  # noqa: ASYNC230, SIM115
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cProfile",
        "-o",
        os.environ["PROF_OUT"],
        str(ROOT / "run.py"),
        "--config",
        str(cfg),
        cwd=str(tmp),
        stderr=log,
    )
    webhook = f"http://127.0.0.1:{port}/webhooks/telegram"
    done = False
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(300):
                try:
                    async with http.get(f"http://127.0.0.1:{port}/healthz") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                if proc.returncode is not None:
                    raise RuntimeError("the bridge stopped; run again with BENCH_LOG=bridge.log")
                await asyncio.sleep(0.1)
            else:
                raise RuntimeError("the bridge did not answer /healthz within 30 s")
        # Warm-up: open every chat's thread first (and build the rule matcher), so the flood
        # measures steady-state messages, as bench/inbound.py does.
        warm_texts = ["Hello!"] * args.chats
        warm = [
            telegram_update(10_000_000 + c, FIRST_CHAT + c, text)
            for c, text in enumerate(warm_texts)
        ]
        fakes.answers_wanted = expected_answers(rules, warm_texts)[0]
        await post_all(webhook, warm, args.concurrency, None)
        await asyncio.wait_for(fakes.answered.wait(), 120)
        await fakes.quiet()

        bodies = [
            telegram_update(n, FIRST_CHAT + n % args.chats, text) for n, text in enumerate(texts)
        ]
        wanted, unmatched = expected_answers(rules, texts)
        fakes.answers, fakes.answered = 0, asyncio.Event()
        fakes.answers_wanted = wanted
        t0 = time.perf_counter()
        latencies = await post_all(webhook, bodies, args.concurrency, None)
        stored_elapsed = time.perf_counter() - t0
        stored = count_messages(database)
        inbound_rows = stored.get("in", 0) - len(warm)
        if inbound_rows != len(texts):
            raise RuntimeError(f"{len(texts)} webhooks answered but {inbound_rows} rows stored")
        try:
            await asyncio.wait_for(fakes.answered.wait(), 300)
        except TimeoutError:
            print(f"  (only {fakes.answers} of {wanted} answers reached Telegram in 300 s)")
        answered_elapsed = fakes.last_answer - t0
        stored_per_s = len(texts) / stored_elapsed
        answered_per_s = len(texts) / answered_elapsed
        print(
            f"bridge: {len(texts):,} webhooks from {args.chats} chats at concurrency"
            f" {args.concurrency} (dispatch: {args.dispatch}); {len(texts) - unmatched:,} fit a"
            f" rule, {wanted:,} answers"
        )
        print(
            f"  stored (webhook answered after the commit): {stored_elapsed:.2f}s ="
            f" {stored_per_s:,.0f} messages/s  ack p50 {pct(latencies, 0.5):.1f} ms"
            f"  p99 {pct(latencies, 0.99):.1f} ms"
        )
        print(
            f"  rows: {stored.get('in', 0):,} inbound, {stored.get('out', 0):,} outbound"
            f" (warm-up included)"
        )
        print(
            f"  every answer at the fake Telegram: {answered_elapsed:.2f}s ="
            f" {answered_per_s:,.0f} messages/s ({fakes.answers:,} answers)"
        )
        rss = peak_rss_mb(proc.pid)
        print(f"  bridge peak RSS: {rss:.0f} MB")
        done = True
        return {
            "stored_per_s": stored_per_s,
            "answered_per_s": answered_per_s,
            "unmatched": unmatched,
        }
    finally:
        await stop(proc, "the bridge")
        log.close()
        await runner.cleanup()
        if done:
            shutil.rmtree(tmp, ignore_errors=True)


# -- opsdroid --------------------------------------------------------------------------------

SKILL_MODULE = '''"""1,100 regex skills written by bench/peer_opsdroid.py."""

import sys

from opsdroid.matchers import match_catchall, match_regex

REGEX_CACHE = {cache}
if REGEX_CACHE:
    import regex  # noqa: F401  (loads regex._main)

    for name in ("regex._main", "regex.regex"):
        module = sys.modules.get(name)
        if module is not None and hasattr(module, "_MAXCACHE"):
            module._MAXCACHE = REGEX_CACHE

SKILLS = {skills!r}


def _skill(number):
    async def skill(message):
        await message.respond(f"rule {{number}}: Thanks, {{message.user}}!")

    skill.__name__ = skill.__qualname__ = f"rule_{{number}}"
    return skill


for _number, (_expression, _case_sensitive) in enumerate(SKILLS, 1):
    globals()[f"rule_{{_number}}"] = match_regex(
        _expression, case_sensitive=_case_sensitive, matching_condition="search"
    )(_skill(_number))


@match_catchall(messages_only=True)
async def fallback(message):
    await message.respond(f"fallback: Thanks, {{message.user}}! Someone will answer soon.")
'''


def ensure_opsdroid(venv: Path, spec: str, skip_install: bool) -> str:
    """The installed opsdroid's version; installs it into `venv` when it is missing."""
    python = venv / "bin" / "python"
    probe = [str(python), "-c", "import importlib.metadata as m; print(m.version('opsdroid'))"]

    def version() -> str | None:
        if not python.exists():
            return None
        done = subprocess.run(probe, capture_output=True, text=True, check=False)
        return done.stdout.strip() if done.returncode == 0 else None

    found = version()
    if found is not None:
        return found
    if skip_install:
        sys.exit(f"no opsdroid in {venv}: run without --skip-install to install it")
    print(f"installing {spec} and setuptools<81 into {venv} ...", flush=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    ignore = venv.parent / ".gitignore"
    if not ignore.exists():
        ignore.write_text("*\n")  # the whole directory stays out of git
    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        [str(python), "-m", "pip", "install", "-q", "--upgrade", "pip"],
        [str(python), "-m", "pip", "install", "-q", spec, "setuptools<81"],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            sys.exit(f"{' '.join(step)} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    found = version()
    if found is None:
        sys.exit(f"opsdroid is still not importable in {venv}")
    return found


async def run_opsdroid(
    args: argparse.Namespace, venv: Path, rules: list[Rule], texts: list[str], cache: int
) -> dict[str, float]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-peer-opsdroid-"))
    skills = [opsdroid_expression(r) for r in rules if r.keyword_type in ("contain", "regexp")]
    skill_file = tmp / "bench_skills.py"
    skill_file.write_text(SKILL_MODULE.format(cache=cache, skills=skills))
    port = free_port()
    config = {
        "welcome-message": False,
        "module-path": str(tmp / "modules"),
        "logging": {"level": "warning", "path": str(tmp / "opsdroid.log"), "console": False},
        "web": {"host": "127.0.0.1", "port": port},
        "connectors": {
            "websocket": {"max-connections": args.concurrency + 10, "connection-timeout": 3600}
        },
        "skills": {"bench": {"path": str(skill_file)}},
    }
    cfg = tmp / "configuration.yaml"
    cfg.write_text(json.dumps(config, indent=2))  # JSON is YAML
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = await asyncio.create_subprocess_exec(
        str(venv / "bin" / "opsdroid"),
        "start",
        "-f",
        str(cfg),
        cwd=str(tmp),
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    label = f"opsdroid (regex cache {cache or 'as installed (500)'})"
    try:
        t0 = time.perf_counter()
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            for _ in range(1200):
                try:
                    async with http.get(f"{base}/") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                if proc.returncode is not None:
                    raise RuntimeError(f"opsdroid stopped; see {tmp / 'opsdroid.log'}")
                await asyncio.sleep(0.1)
            else:
                raise RuntimeError(f"opsdroid did not start in 120 s; see {tmp / 'opsdroid.log'}")
            started = time.perf_counter() - t0
            sockets: list[tuple[str, aiohttp.ClientWebSocketResponse]] = []
            for _ in range(args.concurrency):
                async with http.post(f"{base}/connector/websocket") as r:
                    if r.status != 200:
                        raise RuntimeError(f"opsdroid refused a socket: {r.status}")
                    socket_id = json.loads(await r.text())["socket"]
                ws = await http.ws_connect(f"{base}/connector/websocket/{socket_id}")
                sockets.append((socket_id, ws))

            async def talk(items: list[str], budget: float) -> tuple[int, int, float]:
                """Send the texts in order over the sockets until all are answered or `budget`
                seconds have passed; (answered, fallback answers, elapsed s)."""
                queue: asyncio.Queue[str] = asyncio.Queue()
                for text in items:
                    queue.put_nowait(text)
                answered = fallbacks = 0
                begin = time.perf_counter()
                deadline = begin + budget

                async def converse(
                    number: int, socket_id: str, ws: aiohttp.ClientWebSocketResponse
                ) -> None:
                    nonlocal answered, fallbacks
                    user = f"Customer{FIRST_CHAT + number}"
                    while not queue.empty() and time.perf_counter() < deadline:
                        text = queue.get_nowait()
                        payload = {"message": text, "user": user, "socket": socket_id}
                        await ws.send_str(json.dumps(payload))
                        answer = await ws.receive(timeout=300)
                        if answer.type != aiohttp.WSMsgType.TEXT:
                            raise RuntimeError(f"opsdroid closed a socket: {answer.type}")
                        if answer.data.startswith("Whoops"):
                            raise RuntimeError(f"an opsdroid skill failed; see {tmp}/opsdroid.log")
                        answered += 1
                        fallbacks += answer.data.startswith("fallback")

                await asyncio.gather(*(converse(i, s, w) for i, (s, w) in enumerate(sockets)))
                return answered, fallbacks, time.perf_counter() - begin

            await talk(["Hello!"] * len(sockets), 600)  # warm-up: compiles every pattern
            answered, fallbacks, elapsed = await talk(texts, args.opsdroid_seconds)
            for _, ws in sockets:
                await ws.close()
        per_s = answered / elapsed
        rss = peak_rss_mb(proc.pid)
        cut = "" if answered == len(texts) else f" (the first {answered:,}: time budget spent)"
        print(
            f"{label}: started in {started:.1f}s; {len(texts):,} messages over"
            f" {len(sockets)} websockets: {answered:,} answered in {elapsed:.2f}s{cut} ="
            f" {per_s:,.0f} messages/s; {answered - fallbacks:,} fit a skill;"
            f" peak RSS {rss:.0f} MB"
        )
        shutil.rmtree(tmp, ignore_errors=True)
        return {
            "per_s": per_s,
            "unmatched": fallbacks if answered == len(texts) else -1,
        }
    finally:
        await stop(proc, "opsdroid")


# -- main ------------------------------------------------------------------------------------


async def run(args: argparse.Namespace, version: str | None) -> None:
    rules, texts = workload(args.seed, args.contain, args.regexp, args.messages)
    chars = sum(len(t) for t in texts) / max(1, len(texts))
    print(
        f"workload (bench/rules.py, seed {args.seed}): {args.contain:,} contain +"
        f" {args.regexp:,} regexp rules + 1 fallback; {len(texts):,} messages of"
        f" {chars:.0f} characters on average"
    )
    bridge: dict[str, float] | None = None
    peers: list[tuple[int, dict[str, float]]] = []
    if args.only in ("both", "bridge"):
        bridge = await run_bridge(args, rules, texts)
    if args.only in ("both", "opsdroid"):
        print(f"opsdroid {version}, {sys.version.split()[0]} venv at {args.venv}")
        caches = (
            [0, 4096] if args.opsdroid_regex_cache == "both" else [int(args.opsdroid_regex_cache)]
        )
        for cache in caches:
            peers.append((cache, await run_opsdroid(args, args.venv, rules, texts, cache)))
    if bridge is None or not peers:
        return
    cache, best = max(peers, key=lambda p: p[1]["per_s"])
    if best["unmatched"] >= 0 and best["unmatched"] != bridge["unmatched"]:
        print(
            f"note: {bridge['unmatched']:,} messages fit no bridge rule, {best['unmatched']:,} no"
            " opsdroid skill (RE2's \\d \\w \\b are ASCII, the regex module's Unicode)"
        )
    ratio = bridge["stored_per_s"] / best["per_s"]
    print(
        f"ratio: bridge stored {bridge['stored_per_s']:,.0f}/s vs opsdroid"
        f" {best['per_s']:,.0f}/s (regex cache {cache or 'as installed'}) = {ratio:.1f}x"
        f" (target >= 3x); every answer out: {bridge['answered_per_s'] / best['per_s']:.1f}x"
    )
    for other_cache, other in peers:
        if other is not best:
            print(
                f"  against opsdroid with regex cache {other_cache or 'as installed'}:"
                f" {bridge['stored_per_s'] / other['per_s']:.1f}x"
            )
    print(
        f"peer_opsdroid: bridge_msgs_per_s={bridge['stored_per_s']:.0f}"
        f" opsdroid_msgs_per_s={best['per_s']:.0f} ratio={ratio:.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=50, help="webhooks / websockets")
    parser.add_argument("--chats", type=int, default=500, help="bridge: customers writing")
    parser.add_argument("--contain", type=int, default=1000, help="contain rules")
    parser.add_argument("--regexp", type=int, default=100, help="regexp rules")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--dispatch",
        choices=("process", "inline"),
        default="process",
        help="bridge: where the outbox dispatcher runs (as in bench/inbound.py)",
    )
    parser.add_argument(
        "--opsdroid-regex-cache",
        default="both",
        help="compiled patterns the regex module keeps in opsdroid: 0 as installed (500),"
        " N, or both (0 and 4096; the ratio uses the faster)",
    )
    parser.add_argument(
        "--opsdroid-seconds",
        type=float,
        default=120.0,
        help="time budget of each opsdroid run: it gets the messages in order until all are"
        " answered or the budget is spent (opsdroid with its stock regex cache answers a few"
        " messages a second)",
    )
    parser.add_argument("--only", choices=("both", "bridge", "opsdroid"), default="both")
    parser.add_argument("--venv", type=Path, default=VENV, help="opsdroid's virtual environment")
    parser.add_argument("--opsdroid-spec", default=OPSDROID, help="what pip installs")
    parser.add_argument(
        "--skip-install", action="store_true", help="never install opsdroid; fail if missing"
    )
    args = parser.parse_args()
    if args.contain < 1:
        parser.error("--contain must be at least 1 (messages carry the rules' keywords)")
    if args.opsdroid_regex_cache != "both" and not args.opsdroid_regex_cache.isdigit():
        parser.error("--opsdroid-regex-cache takes 0, a number or both")
    version = None
    if args.only != "bridge":
        version = ensure_opsdroid(args.venv, args.opsdroid_spec, args.skip_install)
    asyncio.run(run(args, version))


if __name__ == "__main__":
    if os.name != "posix":
        sys.exit("bench/peer_opsdroid.py reads /proc for the peak RSS: run it on Linux")
    main()
