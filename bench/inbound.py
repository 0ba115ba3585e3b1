"""Inbound benchmark: signed Telegram webhooks in, Slack threads out.

Starts the bridge as its own process (SQLite, Telegram webhook mode, Slack HTTP mode) against a
minimal, unlimited fake Telegram + Slack served by this process, then:

1. floods webhooks at concurrency C as fast as they are acknowledged: ack/s and latency. With
   `wrk` installed (Debian: apt-get install wrk) wrk generates the flood, so that the load
   generator does not eat the CPU the bridge is measured on; else this script's own client;
2. measures end-to-end mirroring: from the first webhook until every message is in Slack;
3. posts webhooks paced at a fixed rate (default 1,000/s) and reports the ack p99 at that rate.

Before the bridge starts, the same flood (same load generator, body, headers, connections and
duration) goes to a bare aiohttp app in its own process that reads each body and answers 200:
the ceiling, what this machine's Python and aiohttp acknowledge with nothing behind the handler.
`ratio` = ack_per_s / ceiling_per_s is the share of it the bridge reaches; unlike the absolute
rates it does not depend on the machine's speed. Other load still shifts it: on crowded cores the
bridge's three processes (bridge, dispatcher, these fakes) get more CPU than the ceiling's one.

Prints the figures, then one line:
    inbound: ack_per_s=N ack_p99_ms=N mirrored_per_s=N peak_rss_mb=N ceiling_per_s=N ratio=N
(without the last two fields with --no-ceiling).

Usage: python bench/inbound.py [--messages 20000] [--concurrency 50] [--chats 500] [--rate 1000]
                              [--dispatch process|inline] [--load auto|wrk|python] [--no-ceiling]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "123456:BENCH-token"
SECRET = "bench-secret-0123456789"
# The bridge's Telegram webhook route (connectors/telegram.py); wrk's script posts to it too.
WEBHOOK_PATH = "/webhooks/telegram"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_healthy(port: int) -> None:
    """Wait until the server on `port` answers /healthz (up to 30 s)."""
    async with aiohttp.ClientSession() as http:
        for _ in range(300):
            try:
                async with http.get(f"http://127.0.0.1:{port}/healthz") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"nothing answered on port {port} within 30 s")


def serve_ceiling(port: int) -> None:
    """The ceiling server: one POST route that reads the body and answers 200, nothing else."""

    async def webhook(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"ok": True})

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post(WEBHOOK_PATH, webhook)
    app.router.add_get("/healthz", healthz)
    # The same event loop as the bridge (run.py uses uvloop when it is installed).
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


class Fakes:
    """Just enough of Telegram and Slack to let the bridge run, answering instantly."""

    def __init__(self) -> None:
        self.posted = 0
        self.first_post = 0.0
        self.last_post = 0.0
        self.ts = 1_700_000_000_000_000
        self.done = asyncio.Event()
        self.expect = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self.telegram)
        app.router.add_post("/api/{method}", self.slack)
        return app

    async def telegram(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if method == "getMe":
            result: object = {
                "id": 123456,
                "is_bot": True,
                "first_name": "Bench",
                "username": "bench_bot",
            }
        else:
            result = True
        return web.json_response({"ok": True, "result": result})

    async def slack(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if method == "auth.test":
            return web.json_response(
                {"ok": True, "user_id": "UBOT", "bot_id": "BBOT", "team_id": "T1", "user": "bench"}
            )
        body = await request.read()
        self.ts += 100
        ts = f"{self.ts // 1_000_000}.{self.ts % 1_000_000:06d}"
        if method == "chat.postMessage":
            params = json.loads(body) if body.startswith(b"{") else {}
            if params.get("thread_ts"):
                now = time.perf_counter()
                self.first_post = self.first_post or now
                self.last_post = now
                self.posted += len(str(params.get("text", "")).split("\n"))
                if self.expect and self.posted >= self.expect:
                    self.done.set()
            return web.json_response({"ok": True, "channel": "C1", "ts": ts, "message": {"ts": ts}})
        return web.json_response({"ok": True, "channel": "C1", "ts": ts})


def update(n: int, chat: int) -> bytes:
    return json.dumps(
        {
            "update_id": n + 1,
            "message": {
                "message_id": n + 1,
                "from": {
                    "id": chat,
                    "is_bot": False,
                    "first_name": f"Customer{chat}",
                    "language_code": "en",
                },
                "chat": {"id": chat, "type": "private", "first_name": f"Customer{chat}"},
                "date": int(time.time()),
                "text": f"Hello, this is message {n} about my order number {n * 7919 % 100000}.",
            },
        }
    ).encode()


async def post_all(
    url: str, bodies: list[bytes], concurrency: int, rate: float | None
) -> list[float]:
    """POST every body; return per-request latencies in seconds."""
    latencies: list[float] = []
    headers = {"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": SECRET}
    queue: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue()
    for item in enumerate(bodies):
        queue.put_nowait(item)
    start = time.perf_counter()
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def worker() -> None:
            while not queue.empty():
                index, body = queue.get_nowait()
                if rate:
                    due = start + index / rate
                    delay = due - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                t0 = time.perf_counter()
                async with http.post(url, data=body, headers=headers) as response:
                    await response.read()
                    if response.status != 200:
                        raise RuntimeError(f"webhook answered {response.status}")
                latencies.append(time.perf_counter() - t0)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


WRK_SCRIPT = """
counter = 0
math.randomseed(os.time())
local base = math.random(1, 1000000) * 1000000
request = function()
  counter = counter + 1
  local n = base + counter
  local chat = 5000000 + (counter % CHATS)
  local body = string.format('{"update_id": %d, "message": {"message_id": %d, "from": {"id": %d,'
    .. ' "is_bot": false, "first_name": "Customer%d"}, "chat": {"id": %d, "type": "private"},'
    .. ' "date": %d, "text": "Hello, this is message %d about my order number %d."}}',
    n, n, chat, chat, chat, os.time(), counter, (counter * 7919) % 100000)
  return wrk.format("POST", "/webhooks/telegram", HEADERS, body)
end
"""


async def flood_with_wrk(
    url: str, seconds: float, concurrency: int, chats: int, pause_ms: float = 0.0
) -> tuple[int, float, float, float]:
    """Load with wrk (a C load generator): (acknowledged, elapsed s, p50 ms, p99 ms).

    With `pause_ms`, each connection waits that long after each answer (a paced load)."""
    script = Path(tempfile.mkdtemp()) / "telegram.lua"
    headers = (
        f'{{["Content-Type"]="application/json", ["X-Telegram-Bot-Api-Secret-Token"]="{SECRET}"}}'
    )
    pause = f"delay = function() return {pause_ms:.3f} end\n" if pause_ms else ""
    script.write_text(f"CHATS = {chats}\nHEADERS = {headers}\n" + WRK_SCRIPT + pause)
    origin = url.rsplit("/webhooks/", 1)[0]
    proc = await asyncio.create_subprocess_exec(
        "wrk",
        "-t1",
        f"-c{concurrency}",
        f"-d{seconds:g}s",
        "--latency",
        "-s",
        str(script),
        origin,
        stdout=asyncio.subprocess.PIPE,
    )
    out = (await proc.communicate())[0].decode()
    total = int(re.search(r"(\d+) requests in ([\d.]+)(\w+)", out).group(1))
    elapsed = float(re.search(r"requests in ([\d.]+)s", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if bad:
        raise RuntimeError(f"{bad.group(1)} webhooks were not answered 200")

    def latency(label: str) -> float:
        value, unit = re.search(rf"{label}%\s+([\d.]+)(us|ms|s)", out).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    return total, elapsed, latency("50"), latency("99")


def bridge_settings(database: str, port: int, base: str, dispatch: str) -> str:
    """The bridge's settings file for a bench: the fakes at `base`, no rate limits of ours."""
    return f"""
[bridge]
database = "{database}"
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"
log_level = "{os.environ.get("BENCH_LOG_LEVEL", "WARNING")}"
card_refresh_s = 5.0
dispatch = "{dispatch}"
[telegram]
token = "{TOKEN}"
api_base = "{base}"
mode = "webhook"
webhook_secret = "{SECRET}"
rate_global = 100000
rate_per_chat = 100000
burst_per_chat = 100000
[slack]
bot_token = "xoxb-bench"
signing_secret = "bench-signing-secret-0123"
channel = "C1"
api_base = "{base}/api/"
rate_per_channel = 1000000
burst_per_channel = 1000000
rate_updates = 1000000
rate_reactions = 1000000
"""


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def flood_seconds(messages: int) -> float:
    """wrk runs for a time, not a count: about as long as the Python flood of `messages` takes."""
    return max(3.0, messages / 2500)


async def measure_ceiling(args: argparse.Namespace, use_wrk: bool) -> float:
    """The flood's rate against the bare aiohttp app, started as its own process like the bridge."""
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(Path(__file__).resolve()), "--serve-ceiling", str(port)
    )
    url = f"http://127.0.0.1:{port}{WEBHOOK_PATH}"
    try:
        await wait_healthy(port)
        # The same warm-up as the bridge gets, so both floods start on warm connections and code.
        warm = [update(10_000_000 + c, 5_000_000 + c) for c in range(args.chats)]
        await post_all(url, warm, args.concurrency, None)
        if use_wrk:
            seconds = flood_seconds(args.messages)
            count, elapsed, _, _ = await flood_with_wrk(url, seconds, args.concurrency, args.chats)
        else:
            bodies = [update(n, 5_000_000 + n % args.chats) for n in range(args.messages)]
            t0 = time.perf_counter()
            await post_all(url, bodies, args.concurrency, None)
            count, elapsed = len(bodies), time.perf_counter() - t0
    finally:
        proc.terminate()
        await proc.wait()
    return count / elapsed


def parse_args() -> argparse.Namespace:
    """The command line (see the module's docstring)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--chats", type=int, default=500)
    parser.add_argument(
        "--rate", type=float, default=1000.0, help="paced phase: webhooks per second"
    )
    parser.add_argument("--paced-seconds", type=float, default=5.0)
    parser.add_argument(
        "--load",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="flood load generator: wrk when installed (auto), else this script's own client",
    )
    parser.add_argument(
        "--dispatch",
        choices=("process", "inline"),
        default="process",
        help="where the outbox dispatcher runs (the bridge's [bridge] dispatch setting)",
    )
    parser.add_argument(
        "--no-ceiling",
        action="store_true",
        help="skip the bare aiohttp ceiling (and so ceiling_per_s and ratio)",
    )
    # Internal: how measure_ceiling starts the ceiling server in its own process.
    parser.add_argument("--serve-ceiling", type=int, metavar="PORT", help=argparse.SUPPRESS)
    return parser.parse_args()


async def main(args: argparse.Namespace) -> None:
    """Measure the ceiling, then the bridge, and print the figures."""
    use_wrk = args.load == "wrk" or (args.load == "auto" and bool(shutil.which("wrk")))
    # The ceiling goes first, before the bridge and its dispatcher exist, so nothing else runs.
    ceiling = None if args.no_ceiling else await measure_ceiling(args, use_wrk)

    fakes = Fakes()
    runner = web.AppRunner(fakes.app(), access_log=None)
    await runner.setup()
    fake_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", fake_port).start()
    base = f"http://127.0.0.1:{fake_port}"
    port = free_port()
    tmp = Path(tempfile.mkdtemp(prefix="bench-inbound-"))
    cfg = tmp / "bridge.toml"
    cfg.write_text(
        bridge_settings(f"sqlite+aiosqlite:///{tmp / 'bridge.db'}", port, base, args.dispatch)
    )
    log = Path(os.environ.get("BENCH_LOG", os.devnull)).open("wb")  # noqa: ASYNC230, SIM115
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "run.py"),
        "--config",
        str(cfg),
        cwd=str(tmp),
        stderr=log,
    )
    url = f"http://127.0.0.1:{port}{WEBHOOK_PATH}"
    try:
        await wait_healthy(port)
        # Warm-up: open every chat's thread first, so the flood measures steady-state messages.
        warm = [update(10_000_000 + c, 5_000_000 + c) for c in range(args.chats)]
        fakes.expect = len(warm)
        await post_all(url, warm, args.concurrency, None)
        await asyncio.wait_for(fakes.done.wait(), 120)

        fakes.posted, fakes.first_post, fakes.done = 0, 0.0, asyncio.Event()
        t0 = time.perf_counter()
        if use_wrk:
            fakes.expect = 0
            count, ack_elapsed, p50, p99 = await flood_with_wrk(
                url, flood_seconds(args.messages), args.concurrency, args.chats
            )
            fakes.expect = count
            if fakes.posted >= count:
                fakes.done.set()
        else:
            bodies = [update(n, 5_000_000 + n % args.chats) for n in range(args.messages)]
            fakes.expect = count = len(bodies)
            latencies = await post_all(url, bodies, args.concurrency, None)
            ack_elapsed = time.perf_counter() - t0
            p50, p99 = pct(latencies, 0.5), pct(latencies, 0.99)
        await asyncio.wait_for(fakes.done.wait(), 300)
        mirror_elapsed = fakes.last_post - t0
        ack_per_s = count / ack_elapsed
        mirrored_per_s = fakes.posted / mirror_elapsed
        print(
            f"flood: {count} webhooks from {args.chats} chats at concurrency {args.concurrency} "
            f"(load: {'wrk' if use_wrk else 'python'}, dispatch: {args.dispatch})"
        )
        print(f"  acknowledged: {ack_per_s:,.0f}/s  p50 {p50:.1f} ms  p99 {p99:.1f} ms")
        print(
            f"  mirrored end to end: {fakes.posted} in {mirror_elapsed:.2f}s = {mirrored_per_s:,.0f}/s"
        )

        paced_n = int(args.rate * args.paced_seconds)
        fakes.posted, fakes.first_post, fakes.done = 0, 0.0, asyncio.Event()
        if use_wrk:
            # Paced by wrk: each connection pauses after every answer (pause + a typical 6 ms
            # answer = connections / rate), and latency is measured outside this process.
            fakes.expect = 0
            connections = 25
            count, elapsed, paced_p50, p99_paced = await flood_with_wrk(
                url,
                args.paced_seconds,
                connections,
                args.chats,
                pause_ms=max(1.0, 1000 * connections / args.rate - 6.0),
            )
            fakes.expect = count
            if fakes.posted >= count:
                fakes.done.set()
            achieved = count / elapsed
        else:
            paced = [update(20_000_000 + n, 5_000_000 + n % args.chats) for n in range(paced_n)]
            fakes.expect = paced_n
            paced_lat = await post_all(url, paced, args.concurrency, args.rate)
            paced_p50, p99_paced = pct(paced_lat, 0.5), pct(paced_lat, 0.99)
            achieved = args.rate
        await asyncio.wait_for(fakes.done.wait(), 300)
        print(
            f"paced: {achieved:,.0f} webhooks/s (target {args.rate:,.0f}/s): "
            f"ack p50 {paced_p50:.1f} ms  p99 {p99_paced:.1f} ms"
        )
        rss = peak_rss_mb(proc.pid)
        print(f"bridge peak RSS: {rss:.0f} MB")
        summary = (
            f"inbound: ack_per_s={ack_per_s:.0f} ack_p99_ms={p99_paced:.1f} "
            f"mirrored_per_s={mirrored_per_s:.0f} peak_rss_mb={rss:.0f}"
        )
        if ceiling:
            print(
                f"ceiling: bare aiohttp app, same flood: {ceiling:,.0f}/s; "
                f"the bridge acknowledges {ack_per_s / ceiling:.1%} of it"
            )
            summary += f" ceiling_per_s={ceiling:.0f} ratio={ack_per_s / ceiling:.3f}"
        print(summary)
    finally:
        proc.terminate()
        await proc.wait()
        await runner.cleanup()


if __name__ == "__main__":
    if os.name != "posix":
        sys.exit("bench/inbound.py reads /proc for the peak RSS: run it on Linux")
    arguments = parse_args()
    if arguments.serve_ceiling:
        serve_ceiling(arguments.serve_ceiling)
    else:
        asyncio.run(main(arguments))
