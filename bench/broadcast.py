"""Broadcast benchmark: one newsletter to a channel of N Telegram contacts, against a fake
Telegram that enforces a global limit of `--limit` sendMessage calls a second (HTTP 429 with
`parameters.retry_after` above it, as Telegram answers).

Prepares a SQLite database with the schema, N contacts (Telegram, the bot's account) and a
channel `news` holding all of them, then starts the bridge as its own process (`run.py
--config`; Telegram webhook mode, Slack HTTP Events API) against minimal fakes served by this
process, and drives it as a manager would: `/broadcast new news "Hello {FIRSTNAME}"` and
`/broadcast confirm <n>` as signed Slack slash commands. While the broadcast runs, customers
write in (a thread opens in the fake Slack) and an agent answers in that thread, every
`--probe-every` seconds.

Figures:
- enqueue: from the confirm command until `broadcasts.queued == N` and `expanded` (the SQLite
  file is polled read-only);
- send rate over the steady part (from 10% to 90% of the accepted sends, by the fake's clock),
  as a percentage of the limit, and the 429s the fake answered;
- agent-reply latency during the broadcast: from posting the agent's message event until the
  fake Telegram receives that chat's sendMessage (median and max of the probes);
- peak RSS of the bridge: the high-water marks (VmHWM) of the bridge process and, with
  `--dispatch process`, of its dispatcher child, added up.

Ends with one line:
    broadcast: enqueue_s=N rate_pct=N n429=N reply_latency_ms=N peak_rss_mb=N
(reply_latency_ms is the worst probe.)

Usage: python bench/broadcast.py [--contacts 100000 | --million] [--dispatch inline|process]
                                 [--limit 1000] [--burst N] [--latency-ms 0] [--probe-every 3]
                                 [--duration 0] [--keep]
`--duration S` stops measuring S seconds after confirm (a 1,000,000 broadcast at 1,000/s
takes 17 minutes or more). BENCH_LOG=file keeps the bridge's log, BENCH_LOG_LEVEL sets it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if __name__ == "__main__":
    from importlib.util import find_spec

    if any(find_spec(m) is None for m in ("aiohttp", "sqlalchemy", "alembic", "slack_bolt")):
        # Started with a bare `python`: the bridge needs the project's venv (`make` builds it).
        VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
        if VENV_PYTHON.exists() and Path(sys.executable).absolute() != VENV_PYTHON.absolute():
            os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), *sys.argv])
        sys.exit(
            "bench/broadcast.py needs the project's dependencies: run `make test` (or"
            " `python3 -m venv .venv && .venv/bin/pip install -e '.[dev]'`) first"
        )

import argparse  # noqa: E402
import asyncio  # noqa: E402
import contextlib  # noqa: E402
import hashlib  # noqa: E402
import hmac  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import sqlite3  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from typing import Any  # noqa: E402
from urllib.parse import urlencode  # noqa: E402

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402

sys.path.insert(0, str(ROOT))

from bench.inbound import SECRET, TOKEN, Fakes, free_port, peak_rss_mb, update  # noqa: E402
from storage.db import Database  # noqa: E402

BOT_ID = TOKEN.partition(":")[0]  # the connector's account: the token's numeric prefix
SIGNING_SECRET = "bench-signing-secret-0123"
CHANNEL = "C1"
ADMIN = "UADMIN"
AGENT = "UAGENT"
CHAT_BASE = 100_000_000  # broadcast recipients: chats CHAT_BASE + 1 … CHAT_BASE + N
PROBE_BASE = 900_000_000  # the customers who write during the broadcast
TEXT = "Hello {FIRSTNAME}, our sale starts on Friday!"
STOP_WITHIN = 30.0


# ------------------------------------------------------------------------------------ fakes


class RateLimitedFakes(Fakes):
    """bench/inbound.py's fakes, with a Telegram that allows `limit` sends a second (a token
    bucket of `burst` tokens) and answers 429 above it, and a Slack that remembers threads."""

    def __init__(self, limit: float, burst: float, latency: float) -> None:
        super().__init__()
        self.limit, self.burst, self.latency = limit, burst, latency
        self.tokens, self.refilled = burst, time.perf_counter()
        self.n429 = 0
        self.n429_probe = 0
        self.times429: list[float] = []
        self.bulk_times: list[float] = []  # accepted broadcast sends, by arrival
        self.expected = 0
        self.seen = bytearray()
        self.duplicates = 0
        self.wrong_text = 0
        self.bulk_done = asyncio.Event()
        self.sample: str | None = None
        self.probe_waiters: dict[str, asyncio.Future[float]] = {}
        self.thread_waiters: dict[str, asyncio.Future[str]] = {}
        self.responses: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.progress: str | None = None
        self.message_id = 0

    def app(self) -> web.Application:
        app = super().app()
        app.router.add_get("/api/{method}", self.slack)  # users.info and the like
        app.router.add_post("/respond/{key}", self.respond)
        return app

    def expect_bulk(self, count: int) -> None:
        self.expected = count
        self.seen = bytearray(count + 1)

    def _take(self) -> bool:
        now = time.perf_counter()
        self.tokens = min(self.burst, self.tokens + (now - self.refilled) * self.limit)
        self.refilled = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    async def telegram(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if method != "sendMessage":
            return await super().telegram(request)
        body = await request.json()
        chat = str(body.get("chat_id"))
        # Counted on arrival; with --latency-ms the answer comes that much later.
        if not self._take():
            # Telegram: integer seconds, at least 1.
            self.n429 += 1
            self.times429.append(time.perf_counter())
            if int(chat) >= PROBE_BASE:
                self.n429_probe += 1
            if self.latency:
                await asyncio.sleep(self.latency)
            return web.json_response(
                {
                    "ok": False,
                    "error_code": 429,
                    "description": "Too Many Requests: retry after 1",
                    "parameters": {"retry_after": 1},
                },
                status=429,
            )
        now = time.perf_counter()
        text = str(body.get("text", ""))
        number = int(chat) - CHAT_BASE
        if 0 < number <= self.expected:
            self.bulk_times.append(now)
            if self.seen[number]:
                self.duplicates += 1
            self.seen[number] = 1
            if text != f"Hello Reader{number}, our sale starts on Friday!":
                self.wrong_text += 1
                self.sample = self.sample or text
            if len(self.bulk_times) - self.duplicates >= self.expected:
                self.bulk_done.set()
        else:
            waiter = self.probe_waiters.pop(chat, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(now)
        self.message_id += 1
        message_id = self.message_id
        if self.latency:
            await asyncio.sleep(self.latency)
        return web.json_response(
            {
                "ok": True,
                "result": {
                    "message_id": message_id,
                    "date": int(time.time()),
                    "chat": {"id": int(chat), "type": "private"},
                    "text": text,
                },
            }
        )

    async def slack(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if method in ("auth.test", "chat.postMessage"):
            if method == "chat.postMessage":
                body = await request.read()
                params = json.loads(body) if body.startswith(b"{") else {}
                thread = params.get("thread_ts")
                if thread:
                    for marker, waiter in list(self.thread_waiters.items()):
                        if marker.encode() in body:
                            del self.thread_waiters[marker]
                            if not waiter.done():
                                waiter.set_result(str(thread))
                elif "Broadcast #" in str(params.get("text", "")):
                    self.progress = str(params.get("text"))
                self.ts += 100
                ts = f"{self.ts // 1_000_000}.{self.ts % 1_000_000:06d}"
                return web.json_response(
                    {"ok": True, "channel": CHANNEL, "ts": ts, "message": {"ts": ts}}
                )
            return await super().slack(request)
        if method == "chat.update":
            body = await request.read()
            text = str(json.loads(body).get("text", "")) if body.startswith(b"{") else ""
            if "Broadcast #" in text:
                self.progress = text
            return web.json_response({"ok": True, "channel": CHANNEL, "ts": "1.0", "text": text})
        if method == "users.info":
            return web.json_response(
                {"ok": True, "user": {"id": AGENT, "profile": {"display_name": "Agent"}}}
            )
        return await super().slack(request)

    async def respond(self, request: web.Request) -> web.Response:
        """A slash command's late answer (Slack's response_url)."""
        waiter = self.responses.get(request.match_info["key"])
        payload = await request.json()
        if waiter is not None and not waiter.done():
            waiter.set_result(payload)
        return web.json_response({"ok": True})


# ------------------------------------------------------------------------------------ data


def sqlite_time(value: datetime) -> str:
    """A datetime as SQLAlchemy stores it on SQLite (naive UTC text)."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


async def prepare(
    path: Path, count: int, *, account: str = BOT_ID, chat_base: int = CHAT_BASE
) -> tuple[float, float]:
    """The schema, `count` Telegram contacts of `account` (chats chat_base + 1 … + count) and
    the channel `news` with all of them.

    Returns (seconds for the schema, seconds for the rows)."""
    t0 = time.perf_counter()
    db = Database(f"sqlite+aiosqlite:///{path}")
    await db.migrate()
    await db.close()
    t1 = time.perf_counter()
    now = sqlite_time(datetime.now(UTC))
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        with conn:
            conn.executemany(
                "INSERT INTO contacts (id, platform, account, chat_id, display_name, username,"
                " language, first_seen, last_seen, message_count, opt_in_source, opt_in_at)"
                " VALUES (?, 'telegram', ?, ?, ?, NULL, 'en', ?, ?, 1, 'bench', ?)",
                (
                    (n, account, str(chat_base + n), f"Reader{n} X", now, now, now)
                    for n in range(1, count + 1)
                ),
            )
            channel = conn.execute(
                "INSERT INTO channels (name, created_by, created_at) VALUES ('news', ?, ?)",
                (ADMIN, now),
            ).lastrowid
            conn.executemany(
                "INSERT INTO channel_members (channel_id, contact_id, joined_at, source)"
                " VALUES (?, ?, ?, 'bench')",
                ((channel, n, now) for n in range(1, count + 1)),
            )
    finally:
        conn.close()
    return t1 - t0, time.perf_counter() - t1


def settings_text(
    database: str, port: int, fake: str, limit: float, dispatch: str | None = None
) -> str:
    """A bridge's settings against the fakes at `fake`, sending at most `limit` a second."""
    dispatched = f'dispatch = "{dispatch}"\n' if dispatch else ""
    return f"""
[bridge]
database = "{database}"
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"
log_level = "{os.environ.get("BENCH_LOG_LEVEL", "WARNING")}"
{dispatched}admins = ["{ADMIN}"]
[telegram]
token = "{TOKEN}"
api_base = "{fake}"
mode = "webhook"
webhook_secret = "{SECRET}"
rate_global = {limit:g}
[slack]
bot_token = "xoxb-bench"
signing_secret = "{SIGNING_SECRET}"
channel = "{CHANNEL}"
api_base = "{fake}/api/"
"""


# ------------------------------------------------------------------------------------ driving


class Staff:
    """Signed Slack requests to the bridge: slash commands and message events."""

    def __init__(self, http: aiohttp.ClientSession, url: str, fakes: RateLimitedFakes, fake: str):
        self.http, self.url, self.fakes, self.fake = http, url, fakes, fake
        self.ts = time.time()

    def _headers(self, raw: bytes, ctype: str) -> dict[str, str]:
        stamp = str(int(time.time()))
        digest = hmac.new(
            SIGNING_SECRET.encode(), b"v0:" + stamp.encode() + b":" + raw, hashlib.sha256
        ).hexdigest()
        return {
            "Content-Type": ctype,
            "X-Slack-Request-Timestamp": stamp,
            "X-Slack-Signature": "v0=" + digest,
        }

    async def command(self, text: str, timeout: float = 600) -> str:
        """Run `/<text>` as the admin; return the answer's text (waits for a late answer)."""
        name, _, rest = text.partition(" ")
        key = uuid.uuid4().hex
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.fakes.responses[key] = waiter
        form = {
            "token": "bench",
            "team_id": "T1",
            "team_domain": "bench",
            "channel_id": CHANNEL,
            "channel_name": "support",
            "user_id": ADMIN,
            "user_name": "admin",
            "command": f"/{name}",
            "text": rest,
            "api_app_id": "A1",
            "is_enterprise_install": "false",
            "response_url": f"{self.fake}/respond/{key}",
            "trigger_id": f"{uuid.uuid4().int % 10**12}.1.{key}",
        }
        raw = urlencode(form).encode()
        headers = self._headers(raw, "application/x-www-form-urlencoded")
        async with self.http.post(self.url, data=raw, headers=headers) as response:
            body = await response.text()
            if response.status != 200:
                raise RuntimeError(f"/{name} answered HTTP {response.status}: {body[:300]}")
        answer = json.loads(body) if body else {}
        text_out = answer_text(answer)
        if text_out.startswith("Working on"):
            text_out = answer_text(await asyncio.wait_for(waiter, timeout))
        self.fakes.responses.pop(key, None)
        return text_out

    async def says(self, thread_ts: str, text: str) -> None:
        """An agent writes in a thread (an Events API message event)."""
        self.ts = max(self.ts + 0.001, time.time())
        ts = f"{self.ts:.6f}"
        event = {
            "type": "message",
            "channel": CHANNEL,
            "user": AGENT,
            "text": text,
            "ts": ts,
            "thread_ts": thread_ts,
            "parent_user_id": "UBOT",
            "event_ts": ts,
            "channel_type": "channel",
            "client_msg_id": str(uuid.uuid4()),
            "team": "T1",
        }
        body = {
            "token": "bench",
            "team_id": "T1",
            "api_app_id": "A1",
            "event": event,
            "type": "event_callback",
            "event_id": f"Ev{uuid.uuid4().hex[:12]}",
            "event_time": int(time.time()),
            "authorizations": [{"team_id": "T1", "user_id": "UBOT", "is_bot": True}],
        }
        raw = json.dumps(body).encode()
        async with self.http.post(
            self.url, data=raw, headers=self._headers(raw, "application/json")
        ) as response:
            await response.read()
            if response.status != 200:
                raise RuntimeError(f"the agent's message event answered HTTP {response.status}")


def answer_text(answer: dict[str, Any]) -> str:
    """A slash command answer's text, from its blocks when it has any."""
    parts = []
    for block in answer.get("blocks") or []:
        text = block.get("text")
        if isinstance(text, dict):
            parts.append(str(text.get("text", "")))
        for element in block.get("elements") or []:
            if isinstance(element, dict) and "text" in element:
                inner = element["text"]
                parts.append(str(inner.get("text", "") if isinstance(inner, dict) else inner))
    return "\n".join(parts) if parts else str(answer.get("text", ""))


async def probe(
    http: aiohttp.ClientSession,
    webhook: str,
    staff: Staff,
    fakes: RateLimitedFakes,
    k: int,
) -> tuple[float, float, float]:
    """A customer writes, a thread opens, an agent answers: (mirror s, reply s, reply sent at)."""
    chat = PROBE_BASE + k
    loop = asyncio.get_running_loop()
    marker = f"message {7_000_000 + k} about"
    thread: asyncio.Future[str] = loop.create_future()
    fakes.thread_waiters[marker] = thread
    t0 = time.perf_counter()
    headers = {"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": SECRET}
    async with http.post(webhook, data=update(7_000_000 + k, chat), headers=headers) as r:
        await r.read()
        if r.status != 200:
            raise RuntimeError(f"the customer's webhook answered HTTP {r.status}")
    thread_ts = await asyncio.wait_for(thread, 120)
    mirrored = time.perf_counter() - t0
    sent: asyncio.Future[float] = loop.create_future()
    fakes.probe_waiters[str(chat)] = sent
    t1 = time.perf_counter()
    await staff.says(thread_ts, f"Thanks, looking into it ({k})")
    arrived = await asyncio.wait_for(sent, 120)
    return mirrored, arrived - t1, t1


# ------------------------------------------------------------------------------------ memory


def children(pid: int) -> list[int]:
    """Child processes (the dispatcher process), from /proc."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def cpu_seconds(pids: list[int]) -> float:
    """CPU time (user + system) the processes used so far, from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def machine_busy_seconds() -> float:
    """CPU time every core spent on anything but idling, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(values) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")


class CpuWatch:
    """Cores used by the bridge (with its dispatcher process), by this process, and by others."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.start = self._now()

    def _now(self) -> tuple[float, float, float, float]:
        pids = [self.pid, *children(self.pid)]
        return (
            time.perf_counter(),
            cpu_seconds(pids),
            cpu_seconds([os.getpid()]),
            machine_busy_seconds(),
        )

    def report(self) -> str:
        t1, bridge1, own1, busy1 = self._now()
        t0, bridge0, own0, busy0 = self.start
        wall = max(t1 - t0, 1e-9)
        bridge, own = (bridge1 - bridge0) / wall, (own1 - own0) / wall
        others = max(0.0, (busy1 - busy0) / wall - bridge - own)
        return (
            f"bridge {bridge:.2f} cores, this benchmark (fakes) {own:.2f}, other processes"
            f" {others:.2f}, of {os.cpu_count()}"
        )


class MemoryWatch:
    """The bridge's and its children's RSS: sampled total and each process's high-water mark."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_total = self.now_total = 0.0
        self.hwm: dict[int, float] = {}

    def sample(self) -> None:
        pids = [self.pid, *children(self.pid)]
        self.now_total = sum(rss_mb(p) for p in pids)
        self.peak_total = max(self.peak_total, self.now_total)
        for p in pids:
            with contextlib.suppress(OSError):
                self.hwm[p] = max(self.hwm.get(p, 0.0), peak_rss_mb(p))

    def hwm_total(self) -> float:
        return sum(self.hwm.values())

    async def run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(0.25)


# ------------------------------------------------------------------------------------ main


def db_row(db: sqlite3.Connection, sql: str, *args: Any) -> Any:
    while True:
        try:
            return db.execute(sql, args).fetchone()
        except sqlite3.OperationalError as exc:  # a checkpoint in progress, say
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            time.sleep(0.005)


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--million", action="store_true", help="1,000,000 contacts")
    parser.add_argument("--dispatch", choices=("inline", "process"), default="inline")
    parser.add_argument("--limit", type=float, default=1000.0, help="the fake's sends a second")
    parser.add_argument(
        "--burst", type=float, default=None, help="the fake's bucket (default: one second's)"
    )
    parser.add_argument(
        "--latency-ms", type=float, default=0.0, help="the fake Telegram answers this much later"
    )
    parser.add_argument(
        "--probe-every", type=float, default=3.0, help="seconds between agent-reply probes"
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=0.0,
        help="stop measuring this many seconds after confirm (0: when every message is sent)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    count = 1_000_000 if args.million else args.contacts

    tmp = Path(tempfile.mkdtemp(prefix="bench-broadcast-"))
    path = tmp / "bridge.db"
    schema_s, rows_s = await prepare(path, count)
    print(
        f"setup: schema {schema_s:.2f}s, {count:,} contacts + channel members in {rows_s:.2f}s"
        f" ({path.stat().st_size / 2**20:.0f} MiB)"
    )

    fakes = RateLimitedFakes(args.limit, args.burst or args.limit, args.latency_ms / 1000)
    fakes.expect_bulk(count)
    runner = web.AppRunner(fakes.app(), access_log=None)
    await runner.setup()
    fake_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", fake_port).start()
    fake = f"http://127.0.0.1:{fake_port}"
    port = free_port()
    cfg = tmp / "bridge.toml"
    cfg.write_text(
        settings_text(
            f"sqlite+aiosqlite:///{tmp / 'bridge.db'}", port, fake, args.limit, args.dispatch
        )
    )
    log = Path(os.environ.get("BENCH_LOG", os.devnull)).open("wb")  # noqa: ASYNC230, SIM115
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "run.py"), "--config", str(cfg), cwd=str(tmp), stderr=log
    )
    memory = MemoryWatch(proc.pid)
    watcher = asyncio.create_task(memory.run())
    base = f"http://127.0.0.1:{port}"
    webhook = f"{base}/webhooks/telegram"
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    probes: set[asyncio.Task[tuple[float, float, float]]] = set()
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(600):
                try:
                    async with http.get(f"{base}/healthz") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                if proc.returncode is not None:
                    raise RuntimeError("the bridge exited at start (BENCH_LOG=file shows why)")
                await asyncio.sleep(0.1)
            else:
                raise RuntimeError("the bridge did not answer /healthz within 60 s")
            staff = Staff(http, f"{base}/slack/events", fakes, fake)
            await asyncio.sleep(0.5)
            memory.sample()
            print(f"bridge started ({args.dispatch} dispatch): RSS {memory.hwm_total():.0f} MB")

            t = time.perf_counter()
            preview = await staff.command(f'broadcast new news "{TEXT}"')
            preview_s = time.perf_counter() - t
            found = re.search(r"Broadcast #(\d+) prepared: (\d+) recipients", preview)
            if not found:
                raise RuntimeError(f"unexpected /broadcast new answer: {preview!r}")
            number, recipients = int(found.group(1)), int(found.group(2))
            if recipients != count:
                raise RuntimeError(f"the preview counts {recipients} recipients, not {count}")
            memory.sample()
            print(
                f"/broadcast new: preview of {recipients:,} recipients in {preview_s:.2f}s"
                f" (bridge RSS high-water mark now {memory.hwm_total():.0f} MB)"
            )

            t_confirm = time.perf_counter()
            confirmed = await staff.command(f"broadcast confirm {number}")
            confirm_s = time.perf_counter() - t_confirm
            if f"Broadcast #{number} starts" not in confirmed:
                raise RuntimeError(f"unexpected /broadcast confirm answer: {confirmed!r}")

            # Agent-reply probes every few seconds, from now until the broadcast is sent.
            finished = asyncio.Event()

            async def probing() -> None:
                k = 0
                while not finished.is_set():
                    task = asyncio.create_task(probe(http, webhook, staff, fakes, k))
                    probes.add(task)
                    k += 1
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(finished.wait(), args.probe_every)

            prober = asyncio.create_task(probing())

            enqueue_s = math.nan
            while True:
                queued, expanded = db_row(
                    db, "SELECT queued, expanded FROM broadcasts WHERE id = ?", number
                )
                if expanded:
                    enqueue_s = time.perf_counter() - t_confirm
                    break
                if time.perf_counter() - t_confirm > 600:
                    break
                await asyncio.sleep(0.005)
            first_sends = len(fakes.bulk_times)
            memory.sample()
            print(
                f"enqueue: {queued:,} recipients queued in {enqueue_s:.2f}s after /broadcast"
                f" confirm (its answer took {confirm_s * 1000:.0f} ms;"
                f" {first_sends:,} already sent meanwhile; RSS high-water mark now"
                f" {memory.hwm_total():.0f} MB)"
            )

            last, last_t, stalled, cut = -1, time.perf_counter(), False, False
            cpu = CpuWatch(proc.pid)
            next_print = time.perf_counter() + 10
            while not fakes.bulk_done.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(fakes.bulk_done.wait(), 1.0)
                now = time.perf_counter()
                sent = len(fakes.bulk_times)
                if sent != last:
                    last, last_t = sent, now
                elif now - last_t > 60:
                    stalled = True
                    break
                if args.duration and now - t_confirm > args.duration:
                    cut = True
                    break
                if now >= next_print:
                    next_print = now + 10
                    print(
                        f"  … {sent:,} of {count:,} sent, {fakes.n429} 429s,"
                        f" {len(probes)} probes, rss {memory.peak_total:.0f} MB",
                        file=sys.stderr,
                    )
            t_end = time.perf_counter()
            cpu_report = cpu.report()
            finished.set()
            await prober
            gathered = await asyncio.gather(*probes, return_exceptions=True)
            results = [r for r in gathered if isinstance(r, tuple)]
            lost = len(gathered) - len(results)
            memory.sample()

            # The broadcast's own bookkeeping: outcomes and the progress message.
            done_state = None
            for _ in range(0 if cut or stalled else 100):
                done_state = db_row(db, "SELECT state FROM broadcasts WHERE id = ?", number)[0]
                if done_state == "done":
                    break
                await asyncio.sleep(0.2)
            outcomes = dict(
                db.execute(
                    "SELECT state, count(*) FROM broadcast_sends WHERE broadcast_id = ?"
                    " GROUP BY state",
                    (number,),
                ).fetchall()
            )
            memory.sample()

        times = fakes.bulk_times
        accepted = len(times)
        if accepted >= 10:
            lo, hi = times[accepted // 10], times[accepted * 9 // 10]
            steady = (accepted * 9 // 10 - accepted // 10) / max(hi - lo, 1e-9)
        else:
            steady = math.nan
        overall = accepted / max((times[-1] if times else t_end) - t_confirm, 1e-9)
        rate_pct = 100 * steady / args.limit
        print(
            f"send: {accepted:,} accepted ({fakes.duplicates} repeated,"
            f" {fakes.wrong_text} with a wrong text{': ' + repr(fakes.sample) if fakes.sample else ''})"
            f"{' — STALLED: nothing sent for 60 s' if stalled else ''}"
            f"{f' — measured for {args.duration:g}s only (--duration)' if cut else ''}"
        )
        print(
            f"  steady rate (10%→90%): {steady:,.0f}/s = {rate_pct:.1f}% of {args.limit:,.0f}/s;"
            f" confirm→last send {overall:,.0f}/s ({(times[-1] - t_confirm) if times else 0:.1f}s)"
        )
        print(f"  CPU while sending: {cpu_report}")
        when = ", ".join(f"{t - t_confirm:.1f}" for t in fakes.times429[:12])
        print(
            f"  429s from the fake: {fakes.n429} ({fakes.n429_probe} of them agent replies)"
            f"{f'; at +s after confirm: {when}' if when else ''}"
            f"{' …' if fakes.n429 > 12 else ''}"
        )
        print(
            f"  broadcast #{number}: state {done_state}, outcomes"
            f" {', '.join(f'{k} {v:,}' for k, v in sorted(outcomes.items())) or 'none'}"
        )
        if fakes.progress:
            print("  progress message: " + " | ".join(fakes.progress.splitlines()))
        replies = sorted(r[1] * 1000 for r in results)
        mirrors = sorted(r[0] * 1000 for r in results)
        reply_max = max(replies) if replies else math.nan
        if lost:
            print(f"agent reply probes without an answer within 120 s: {lost}")
            reply_max = max(reply_max if replies else 0.0, 120_000.0)
        if replies:
            print(
                f"agent reply → Telegram during the broadcast ({len(replies)} probes):"
                f" median {statistics.median(replies):.0f} ms, max {reply_max:.0f} ms"
                f" (+{max(results, key=lambda r: r[1])[2] - t_confirm:.1f}s after confirm)"
            )
            print(
                f"customer message → Slack thread during the broadcast:"
                f" median {statistics.median(mirrors):.0f} ms, max {max(mirrors):.0f} ms"
            )
        hwm = memory.hwm
        peak = memory.hwm_total()
        parts = ", ".join(
            f"{'bridge' if p == proc.pid else 'dispatcher'} {v:.0f}" for p, v in hwm.items()
        )
        print(
            f"bridge peak RSS: {peak:.0f} MB ({parts}; highest sampled total"
            f" {memory.peak_total:.0f} MB, at the end {memory.now_total:.0f} MB)"
        )
        print(
            f"broadcast: enqueue_s={enqueue_s:.2f} rate_pct={rate_pct:.1f} n429={fakes.n429}"
            f" reply_latency_ms={reply_max:.0f} peak_rss_mb={peak:.0f}"
        )
    finally:
        watcher.cancel()
        for task in probes:
            task.cancel()
        db.close()
        if proc.returncode is None:
            # The fakes keep answering meanwhile: the bridge stops as it would in production.
            t_stop = time.perf_counter()
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), STOP_WITHIN)
                print(f"bridge stopped {time.perf_counter() - t_stop:.1f}s after SIGTERM")
            except TimeoutError:
                print(f"bridge still running {STOP_WITHIN:.0f}s after SIGTERM: killed")
                proc.kill()
                await proc.wait()
        await runner.cleanup()
        log.close()
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    if os.name != "posix":
        sys.exit("bench/broadcast.py reads /proc for the peak RSS: run it on Linux")
    asyncio.run(main())
