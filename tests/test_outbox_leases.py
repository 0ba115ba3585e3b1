"""Several processes share one PostgreSQL outbox: each row is carried out by one of them, the
rows of a lane in order even when the processes take turns, and the rows of a process that
dies are taken over once its leases lapse."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import Counter, defaultdict

import pytest

from bridge.outbox import Dispatcher, Leases
from bridge.ratelimit import RateLimiter
from storage import Database, Job, NewJob, Tx, Writer
from tests.harness import eventually
from tests.test_outbox_bulk import Recorder, send

_names = itertools.count()


@pytest.fixture
async def pg(pg_cluster):
    url = str(pg_cluster.create_database(f"lease{next(_names)}"))
    db = Database(url)
    await db.migrate()
    yield url
    await db.close()


class Worker:
    """One process's share: its own connections, writer and dispatcher."""

    def __init__(self, url: str, name: str, handler: Recorder, *, lease: float = 15.0) -> None:
        self.db = Database(url)
        self.writer = Writer(self.db)
        self.handler = handler
        self.dispatcher = Dispatcher(
            self.db,
            self.writer,
            {"send": handler, "reply": handler},
            RateLimiter({}),
            poll_interval=0.05,
            leases=Leases(name, lease),
        )

    async def start(self) -> None:
        await self.writer.start()
        self.writer.set_on_commit(self.dispatcher.notify)
        await self.dispatcher.start()

    async def stop(self) -> None:
        await self.dispatcher.stop()
        await self.writer.stop()
        await self.db.close()

    async def die(self) -> None:
        """Stop without giving up its leases, as a killed process would."""
        self.dispatcher._leases = None  # noqa: SLF001 - a crash does not release anything
        await self.dispatcher.stop()
        await self.writer.stop()
        await self.db.close()


class Slow(Recorder):
    """A recorder whose sends take a while, so that work is spread over the processes."""

    def __init__(self, name: str, log: list[tuple[str, Job]], delay: float = 0.002) -> None:
        super().__init__()
        self.name, self.log, self.delay = name, log, delay

    async def run(self, jobs):
        [job] = jobs
        await asyncio.sleep(self.delay)
        self.log.append((self.name, job))
        return await super().run(jobs)


def message(lane: int, n: int) -> NewJob:
    return NewJob(kind="reply", idem_key=f"m:{lane}:{n}", lane=f"c{lane}", payload={"n": n})


async def enqueue(url: str, jobs: list[NewJob]) -> None:
    db = Database(url)
    try:
        await db.run_write(lambda conn: Tx(conn).enqueue(jobs, 0.0))
    finally:
        await db.close()


async def test_two_processes_share_the_rows_each_once_and_each_lane_in_order(pg):
    log: list[tuple[str, Job]] = []
    workers = [Worker(pg, f"w{i}", Slow(f"w{i}", log)) for i in range(2)]
    for w in workers:
        await w.start()
    try:
        # 40 conversations of 10 messages, added in rounds while both run, and a broadcast.
        # A process leases every due row it finds (up to a thousand), so a round goes to
        # whichever polls first after it arrives; rounds a poll interval apart give each
        # process its chances, however the machine's load staggers their polls.
        for n in range(10):
            await enqueue(pg, [message(lane, n) for lane in range(40)])
            await asyncio.sleep(0.06)
        await enqueue(pg, [send(i) for i in range(300)])
        await eventually(lambda: len(log) >= 700, timeout=60, message="every row carried out")
        await asyncio.sleep(0.3)
    finally:
        for w in workers:
            await w.stop()
    counted = Counter(job.idem_key for _, job in log)
    assert len(counted) == 700 and max(counted.values()) == 1
    by_worker = Counter(name for name, _ in log)
    assert by_worker["w0"] > 0 and by_worker["w1"] > 0, by_worker
    order: dict[str, list[int]] = defaultdict(list)
    for _, job in log:
        if not job.bulk:
            order[job.lane].append(int(job.payload["n"]))
    assert all(ns == sorted(ns) for ns in order.values())
    assert all(h.handler.overlaps == [] for h in workers)


async def test_a_dead_processs_rows_are_taken_over_when_its_leases_lapse(pg):
    log: list[tuple[str, Job]] = []
    dying = Worker(pg, "dying", Slow("dying", log, delay=0.05), lease=1.0)
    await dying.start()
    await enqueue(pg, [message(lane, n) for lane in range(5) for n in range(20)])
    await eventually(lambda: len(log) >= 5, message="the first process at work")
    await dying.die()
    done_by_dying = len(log)
    assert done_by_dying < 100
    survivor = Worker(pg, "survivor", Slow("survivor", log), lease=1.0)
    await survivor.start()
    try:
        await eventually(lambda: len(log) >= 100, timeout=30, message="the rest taken over")
    finally:
        await survivor.stop()
    assert Counter(name for name, _ in log)["survivor"] == 100 - done_by_dying
    order: dict[str, list[int]] = defaultdict(list)
    for _, job in log:
        order[job.lane].append(int(job.payload["n"]))
    assert all(ns == sorted(ns) for ns in order.values())


async def test_a_stopping_process_hands_its_rows_over_at_once(pg):
    log: list[tuple[str, Job]] = []
    first = Worker(pg, "first", Slow("first", log, delay=0.05), lease=60.0)
    await first.start()
    await enqueue(pg, [message(lane, n) for lane in range(5) for n in range(20)])
    await eventually(lambda: len(log) >= 5, message="the first process at work")
    await first.stop()  # gives its leases up: no need to wait a minute
    second = Worker(pg, "second", Slow("second", log), lease=60.0)
    await second.start()
    try:
        await eventually(lambda: len(log) >= 100, timeout=10, message="the rest")
    finally:
        with contextlib.suppress(Exception):
            await second.stop()
    assert len({job.idem_key for _, job in log}) == 100


async def test_a_reply_row_done_is_not_taken_again(pg):
    """Rows finished by one process are not picked up by another."""
    log: list[tuple[str, Job]] = []
    a = Worker(pg, "a", Slow("a", log))
    await a.start()
    await enqueue(pg, [message(1, n) for n in range(5)])
    await eventually(lambda: len(log) == 5, message="done by a")
    await a.stop()
    b = Worker(pg, "b", Slow("b", log))
    await b.start()
    await asyncio.sleep(0.5)
    await b.stop()
    assert len(log) == 5


async def test_a_process_whose_lease_renewals_fail_sends_no_row_twice(pg, monkeypatch):
    """Renewals can fail (a deadlock, a lost connection); the rows' leases then lapse while the
    process still holds them, and its next read finds them free again."""

    def refuse(self, worker, until):
        raise RuntimeError("deadlock detected")

    monkeypatch.setattr(Tx, "renew_leases", refuse)
    log: list[tuple[str, Job]] = []
    # One lane of slow sends: most rows wait in memory past their one-second lease.
    only = Worker(pg, "only", Slow("only", log, delay=0.1), lease=1.0)
    await only.start()
    try:
        await enqueue(pg, [message(1, n) for n in range(30)])
        await eventually(lambda: len(log) >= 30, timeout=30, message="every row carried out")
        await asyncio.sleep(1.5)  # more reads after the leases lapsed
    finally:
        await only.stop()
    counted = Counter(job.idem_key for _, job in log)
    assert max(counted.values()) == 1, counted.most_common(3)
    assert [int(job.payload["n"]) for _, job in log] == list(range(30))
