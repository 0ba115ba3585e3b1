"""Scale-out benchmark: 1, 2 and 3 bridge processes on one PostgreSQL database, sending one
broadcast while customers flood them with messages. Every process is given the platform's
whole limit, so the figures show how well the processes keep to it together.

A throwaway PostgreSQL cluster is started (tests/pgcluster.py: initdb on a free port, removed
at the end). For each number of processes N, a fresh database gets the schema, `--contacts`
Telegram contacts and a channel `news` holding all of them; N bridges start (`run.py
--config`, each with its own port, all with the bot's limit `rate_global = --limit`) against
bench/broadcast.py's fakes: a Telegram that allows `--limit` sendMessage calls a second (a bucket
of one second's worth) and answers 429 above it, and a Slack. The broadcast is started with
signed slash commands on the first process; meanwhile `--flood` customers write to the
processes in turn, each sending its next message as soon as the last one was acknowledged.

Figures per N:
- the broadcast's steady send rate (from 10% to 90% of the accepted sends, by the fake's clock)
  as a share of the limit, and the 429s the fake answered;
- customer messages acknowledged (webhook answered 200) per second while the broadcast ran.

Ends with one line, for the largest N:
    scale_out: processes=3 rate_pct=N n429=N ack_per_s=N

Usage: python bench/scale_out.py [--contacts 30000] [--processes 1,2,3] [--limit 1000]
                                 [--flood 8]
A process holds up to 2,000 of an account's broadcast rows at a time: with fewer contacts than
2,000 × N, not every process sends part of the broadcast. BENCH_LOG=dir keeps each bridge's log.
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
        sys.exit("bench/scale_out.py needs the project's dependencies: run `make test` first")

import argparse  # noqa: E402
import asyncio  # noqa: E402
import contextlib  # noqa: E402
import itertools  # noqa: E402
import math  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from typing import Any  # noqa: E402

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402

sys.path.insert(0, str(ROOT))

from bench.broadcast import (  # noqa: E402
    ADMIN,
    BOT_ID,
    CHAT_BASE,
    TEXT,
    RateLimitedFakes,
    Staff,
    settings_text,
)
from bench.inbound import SECRET, free_port, update  # noqa: E402
from storage.db import Database  # noqa: E402
from storage.tables import channels, contacts, members  # noqa: E402
from tests.pgcluster import PgCluster  # noqa: E402

FLOOD_BASE = 800_000_000  # the customers who write during the broadcast
FLOOD_CHATS = 500  # distinct customers, in turn
STALL_S = 60.0
STOP_WITHIN = 30.0


@dataclass(frozen=True, slots=True)
class Result:
    """One run's figures."""

    processes: int
    accepted: int
    seconds: float
    rate_pct: float
    n429: int
    acked: int
    ack_per_s: float


async def seed(url: str, count: int) -> None:
    """The schema, `count` Telegram contacts of the bot (chats CHAT_BASE + 1 … + count, named
    as bench/broadcast.py's fake expects) and the channel `news` with all of them."""
    db = Database(url)
    now = datetime.now(UTC)

    def rows(conn: Any) -> None:
        ids = conn.execute(
            contacts.insert().returning(contacts.c.id),
            [
                {
                    "platform": "telegram",
                    "account": BOT_ID,
                    "chat_id": str(CHAT_BASE + n),
                    "display_name": f"Reader{n} X",
                    "language": "en",
                    "first_seen": now,
                    "last_seen": now,
                    "message_count": 1,
                    "opt_in_source": "bench",
                    "opt_in_at": now,
                }
                for n in range(1, count + 1)
            ],
        ).scalars()
        channel = conn.execute(
            channels.insert().values(name="news", created_by=ADMIN, created_at=now)
        ).inserted_primary_key[0]
        conn.execute(
            members.insert(),
            [
                {"channel_id": channel, "contact_id": i, "joined_at": now, "source": "bench"}
                for i in ids
            ],
        )

    try:
        await db.migrate()
        await db.run_write(rows)
    finally:
        await db.close()


async def start_bridges(
    tmp: Path, url: str, fake: str, n: int, limit: float
) -> tuple[list[asyncio.subprocess.Process], list[int]]:
    """N bridge processes, the first alone (it migrates), then the others together."""
    procs: list[asyncio.subprocess.Process] = []
    ports = [free_port() for _ in range(n)]
    logs = os.environ.get("BENCH_LOG")
    for i, port in enumerate(ports):
        cfg = tmp / f"bridge{n}-{i}.toml"
        cfg.write_text(settings_text(url, port, fake, limit))
        log = Path(logs) / f"bridge{n}-{i}.log" if logs else Path(os.devnull)
        with log.open("ab") as out:
            procs.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    str(ROOT / "run.py"),
                    "--config",
                    str(cfg),
                    cwd=str(tmp),
                    stdout=out,
                    stderr=out,
                )
            )
        if i == 0:
            await healthy(procs[0], port)
    await asyncio.gather(*(healthy(p, port) for p, port in zip(procs, ports, strict=True)))
    return procs, ports


async def healthy(proc: asyncio.subprocess.Process, port: int) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(600):
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"http://127.0.0.1:{port}/healthz") as r:
                    if r.status == 200:
                        return
            if proc.returncode is not None:
                raise RuntimeError("a bridge exited at start (BENCH_LOG=dir shows why)")
            await asyncio.sleep(0.1)
    raise RuntimeError("a bridge did not answer /healthz within 60 s")


async def stop_bridges(procs: list[asyncio.subprocess.Process]) -> None:
    for proc in procs:
        if proc.returncode is None:
            proc.terminate()
    for proc in procs:
        try:
            await asyncio.wait_for(proc.wait(), STOP_WITHIN)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def flood(http: aiohttp.ClientSession, ports: list[int], stop: asyncio.Event, k: int) -> int:
    """One customer after another writes, to the processes in turn; return the messages
    acknowledged."""
    headers = {"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": SECRET}
    acked = 0
    for n in itertools.count():
        if stop.is_set():
            return acked
        number = k * 10_000_000 + n
        chat = FLOOD_BASE + number % FLOOD_CHATS
        url = f"http://127.0.0.1:{ports[n % len(ports)]}/webhooks/telegram"
        with contextlib.suppress(aiohttp.ClientError):
            async with http.post(url, data=update(number, chat), headers=headers) as r:
                await r.read()
                acked += r.status == 200
    raise AssertionError("unreachable")


async def broadcast(staff: Staff, count: int) -> None:
    preview = await staff.command(f'broadcast new news "{TEXT}"')
    found = re.search(r"Broadcast #(\d+) prepared: (\d+) recipients", preview)
    if not found or int(found.group(2)) != count:
        raise RuntimeError(f"unexpected /broadcast new answer: {preview!r}")
    confirmed = await staff.command(f"broadcast confirm {found.group(1)}")
    if f"Broadcast #{found.group(1)} starts" not in confirmed:
        raise RuntimeError(f"unexpected /broadcast confirm answer: {confirmed!r}")


async def until_sent(fakes: RateLimitedFakes) -> bool:
    """Wait for every broadcast send; False when nothing was sent for STALL_S seconds."""
    last, last_t = -1, time.perf_counter()
    while not fakes.bulk_done.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(fakes.bulk_done.wait(), 1.0)
        sent, now = len(fakes.bulk_times), time.perf_counter()
        if sent != last:
            last, last_t = sent, now
        elif now - last_t > STALL_S:
            return False
    return True


async def run(cluster: PgCluster, tmp: Path, n: int, args: argparse.Namespace) -> Result:
    """One broadcast and flood with `n` processes on a fresh database."""
    url = cluster.create_database(f"scale_out_{n}")
    await seed(url, args.contacts)
    fakes = RateLimitedFakes(args.limit, args.limit, 0.0)
    fakes.expect_bulk(args.contacts)
    runner = web.AppRunner(fakes.app(), access_log=None)
    await runner.setup()
    fake_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", fake_port).start()
    fake = f"http://127.0.0.1:{fake_port}"
    procs: list[asyncio.subprocess.Process] = []
    try:
        procs, ports = await start_bridges(tmp, url, fake, n, args.limit)
        async with aiohttp.ClientSession() as http:
            staff = Staff(http, f"http://127.0.0.1:{ports[0]}/slack/events", fakes, fake)
            t0 = time.perf_counter()
            await broadcast(staff, args.contacts)
            stop = asyncio.Event()
            floods = [asyncio.create_task(flood(http, ports, stop, k)) for k in range(args.flood)]
            finished = await until_sent(fakes)
            seconds = time.perf_counter() - t0
            stop.set()
            acked = sum(await asyncio.gather(*floods))
        if not finished:
            print(f"  N={n}: STALLED, nothing sent for {STALL_S:.0f} s", file=sys.stderr)
    finally:
        await stop_bridges(procs)
        await runner.cleanup()
    times = fakes.bulk_times
    accepted = len(times)
    steady = math.nan
    if accepted >= 10:
        lo, hi = times[accepted // 10], times[accepted * 9 // 10]
        steady = (accepted * 9 // 10 - accepted // 10) / max(hi - lo, 1e-9)
    return Result(
        n, accepted, seconds, 100 * steady / args.limit, fakes.n429, acked, acked / seconds
    )


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--contacts", type=int, default=30_000, help="the broadcast's recipients")
    parser.add_argument("--processes", default="1,2,3", help="numbers of processes to run")
    parser.add_argument("--limit", type=float, default=1000.0, help="the fake's sends a second")
    parser.add_argument("--flood", type=int, default=8, help="customers writing at once")
    args = parser.parse_args()
    counts = [int(p) for p in args.processes.split(",")]

    tmp = Path(tempfile.mkdtemp(prefix="bench-scale-out-"))
    (tmp / "pg").mkdir()
    cluster = PgCluster.start(tmp / "pg")
    results: list[Result] = []
    try:
        for n in counts:
            r = await run(cluster, tmp, n, args)
            results.append(r)
            print(
                f"processes={n}: {r.accepted:,} of {args.contacts:,} sent in {r.seconds:.1f}s;"
                f" steady rate {r.rate_pct:.1f}% of {args.limit:,.0f}/s; 429s {r.n429};"
                f" customer messages acknowledged {r.acked:,} ({r.ack_per_s:,.0f}/s)"
            )
    finally:
        cluster.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    last = results[-1]
    print(
        f"scale_out: processes={last.processes} rate_pct={last.rate_pct:.1f} n429={last.n429}"
        f" ack_per_s={last.ack_per_s:.0f}"
    )


if __name__ == "__main__":
    if os.name != "posix":
        sys.exit("bench/scale_out.py starts processes and a PostgreSQL cluster: run it on Linux")
    asyncio.run(main())
