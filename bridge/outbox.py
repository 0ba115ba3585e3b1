"""The durable delivery queue's dispatcher: ordering, rate limits, retries, status.

Every side effect is an `outbox` row (see storage). The dispatcher keeps a bounded window of
pending rows in memory, grouped into lanes: a lane's rows leave strictly one after another, in
id order (one conversation's messages stay in order), while different lanes run concurrently.
Before a row is attempted its attempt count is committed, so after a crash the handler knows the
row may already have gone out and can look before sending again. A finished row is marked done in
the same transaction as everything it produced (thread ids, staff refs, follow-up rows).

Rows come in two streams. Conversation traffic (replies, mirrors, cards) is read with its own
cursor into its own window, as it always was. Bulk rows (a broadcast's, `NewJob(bulk=True)`) are
read with cursors of their own into a window of their own, so a broadcast of 100,000 rows never
stands between a reply and the dispatcher. Bulk rows are read beside the dispatcher's loop and
never ahead of a backlog of conversation rows; each account (a row's first rate key) holds its
own share of the bulk window, so a slow account's backlog never holds a fast one back; and bulk
jobs have task slots of their own. At each step conversation lanes are launched first, and a
bulk job takes a rate token only when the bucket keeps a reserve for conversation traffic
(`RateLimiter.try_acquire(reserve=...)`): a reply finds a token at once, and a broadcast alone
still gets the whole rate of its account. A lane's bulk rows keep their order per account; one
job per lane name is in flight at a time, whichever stream it belongs to.

The token buckets are in bridge.ratelimit; lanes, streams and the bulk feed in bridge.outbox_lanes.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import math
import os
import random
import secrets
import socket
import time
from collections import deque
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from bridge.errors import Held, PermanentError, RateLimited, TransientError
from bridge.outbox_lanes import BulkFeed, Lane, Stream, account_of, platform_keys
from bridge.ratelimit import RateLimiter
from storage import BatchKind, Completion, Database, Job, Tx, Writer

log = logging.getLogger(__name__)

MAX_BACKOFF = 300.0
COALESCE_AFTER = 0.5
GIVE_UP_AFTER = 24 * 3600.0
# Bulk rows leave this many seconds of each key's rate in its bucket (at least one token, at most
# half the burst) for conversation traffic.
BULK_RESERVE = 0.1
# Rows read per query: conversation rows, and bulk rows (read beside the dispatcher's own loop;
# turning 1,000 rows into jobs holds the event loop for some 10 ms).
LOAD_CHUNK = 1000
BULK_CHUNK = 500
# While every account's share of the bulk window is full, new bulk rows (another account's
# broadcast, say) are looked for this often.
DISCOVER_EVERY = 1.0
# Several processes on one PostgreSQL database: how long a process holds the rows it took
# (renewed every third of it); a process that dies gives its rows up after this long.
LEASE_S = 15.0


def worker_name() -> str:
    """This process among the bridge's processes: host, pid and a random part (pids repeat)."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(3)}"


@dataclass(frozen=True, slots=True)
class Leases:
    """Several processes share the outbox: rows are leased to `worker` before it holds them."""

    worker: str
    seconds: float = LEASE_S


class JobHandler(Protocol):
    """Carries out one kind of outbox row."""

    def coalesce(self, head: Job, following: Sequence[Job]) -> int:
        """How many of `following` may ride along with `head` in one call (0: none)."""
        ...

    async def run(self, jobs: Sequence[Job]) -> Completion:
        """Do it; raise the bridge's delivery errors on failure."""
        ...

    async def failed(self, jobs: Sequence[Job], error: PermanentError) -> Completion:
        """What to record and tell people when it cannot be done."""
        ...


def _claim(tx: Tx, batches: Sequence[Sequence[int]]) -> list[None]:
    tx.claim([i for ids in batches for i in ids])
    return [None] * len(batches)


def _complete(tx: Tx, completions: Sequence[Completion]) -> list[None]:
    tx.apply(completions, time.time())
    return [None] * len(completions)


def _unclaim(tx: Tx, batches: Sequence[Sequence[int]]) -> list[None]:
    tx.unclaim([i for ids in batches for i in ids])
    return [None] * len(batches)


def _reschedule(tx: Tx, items: Sequence[tuple[int, float, str]]) -> list[None]:
    for job_id, next_at, error in items:
        tx.reschedule(job_id, next_at, error)
    return [None] * len(items)


CLAIM: BatchKind[Sequence[int], None] = BatchKind("outbox.claim", _claim)
COMPLETE: BatchKind[Completion, None] = BatchKind("outbox.complete", _complete)
RESCHEDULE: BatchKind[tuple[int, float, str], None] = BatchKind("outbox.reschedule", _reschedule)
UNCLAIM: BatchKind[Sequence[int], None] = BatchKind("outbox.unclaim", _unclaim)


class Dispatcher:
    """Sends pending outbox rows through their handlers, in order per lane, within limits.

    `window`, `concurrency`: rows held and jobs in flight of conversation traffic; `bulk_window`
    (per account), `bulk_concurrency` (default: `concurrency`): the same for bulk rows;
    `bulk_reserve`: seconds of each rate key's rate that bulk rows leave for the others.
    """

    def __init__(
        self,
        db: Database,
        writer: Writer,
        handlers: Mapping[str, JobHandler],
        limiter: RateLimiter,
        *,
        window: int = 5000,
        concurrency: int = 64,
        bulk_window: int = 2000,
        bulk_concurrency: int | None = None,
        bulk_reserve: float = BULK_RESERVE,
        poll_interval: float = 1.0,
        clock: Callable[[], float] = time.time,
        leases: Leases | None = None,
    ) -> None:
        self._db = db
        self._leases = leases
        self._renewer: asyncio.Task[None] | None = None
        self._writer = writer
        self._handlers = handlers
        self._limiter = limiter
        self._poll = poll_interval
        self._clock = clock
        self._normal = Stream(bulk=False, window=window, concurrency=concurrency, reserve=0.0)
        self._bulk = Stream(
            bulk=True,
            window=bulk_window,
            concurrency=concurrency if bulk_concurrency is None else bulk_concurrency,
            reserve=bulk_reserve,
        )
        self._streams = (self._normal, self._bulk)  # the order of launching
        self._feed = BulkFeed(bulk_window)
        self._bulk_reading: asyncio.Task[None] | None = None
        self._bulk_retry_at = -math.inf
        self._seq = 0
        self._notified = 0
        # Lane names with a job in flight, and lanes of the other stream waiting for them.
        self._running: set[str] = set()
        # Ids of the rows in memory. A row whose lease lapsed while this process still holds it
        # (its renewals failed) is free to lease again: reading it twice would send it twice.
        self._holding: set[int] = set()
        self._waiting: dict[str, list[tuple[Stream, str]]] = {}
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._writes: set[asyncio.Task[None]] = set()
        self._main: asyncio.Task[None] | None = None
        self.sent = 0
        self.sent_bulk = 0
        self.rate_limited = 0

    def notify(self, _added: int = 0) -> None:
        """New rows were committed: look for them."""
        self._notified += 1
        self._wake.set()

    async def start(self) -> None:
        """Start dispatching."""
        self._main = asyncio.create_task(self._run(), name="outbox-dispatcher")
        if self._leases is not None:
            self._renewer = asyncio.create_task(self._renew(self._leases), name="outbox-leases")

    async def stop(self) -> None:
        """Stop; rows in flight finish or stay pending for the next start."""
        if self._main is not None:
            self._main.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._main
            self._main = None
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._writes:
            # Bookkeeping already decided (a retry's time, an attempt taken back) is written,
            # not dropped: the next start must not take a refused send for one that went out.
            await asyncio.wait(list(self._writes), timeout=5.0)
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
            self._renewer = None
        if self._leases is not None:
            worker = self._leases.worker
            try:
                # What this process held goes to the others now, not when the leases lapse.
                await self._db.write_tx(lambda tx: tx.release_leases(worker))
            except Exception:
                log.warning("could not give up the outbox rows this process held", exc_info=True)

    async def _renew(self, leases: Leases) -> None:
        """Keep the rows this process holds leased to it."""

        def renew(tx: Tx) -> int:
            return tx.renew_leases(leases.worker, time.time() + leases.seconds)

        pause = leases.seconds / 3
        while True:
            await asyncio.sleep(pause)
            try:
                await self._db.write_tx(renew)
            except Exception:
                # A deadlock with the writer's updates of the same rows, say: try again soon,
                # before the leases lapse and another process takes the rows over.
                log.warning("renewing the outbox leases failed; retrying", exc_info=True)
                pause = min(0.5, leases.seconds / 10)
            else:
                pause = leases.seconds / 3

    # -- reading --------------------------------------------------------------------------

    def _normal_due(self, now: float) -> float:
        """Seconds until conversation rows should be read (0: now)."""
        n = self._normal
        if n.loaded >= max(1, n.window // 2):
            return math.inf  # a finished job wakes the loop
        if n.more or n.seen != self._notified:
            return 0.0
        return max(0.0, n.polled + self._poll - now)

    def _bulk_due(self, now: float) -> tuple[float, int]:
        """Seconds until bulk rows should be read (0: now), and after which id."""
        b, feed = self._bulk, self._feed
        if self._bulk_reading is not None:
            return math.inf, 0  # its end wakes the loop
        if now < self._bulk_retry_at:
            return self._bulk_retry_at - now, 0
        if self._leases is not None:
            if b.more:
                return 0.0, 0
            if feed.has_room():
                if b.seen != self._notified:
                    return 0.0, 0
                return max(0.0, b.polled + self._poll - now), 0
            return max(0.0, b.polled + max(self._poll, DISCOVER_EVERY) - now), 0
        again = feed.lagging()
        if again is not None:
            return 0.0, again
        if b.more:
            return 0.0, feed.frontier
        if feed.room_at_frontier():
            if b.seen != self._notified:
                return 0.0, feed.frontier
            return max(0.0, b.polled + self._poll - now), feed.frontier
        # Every account is full: look past them now and then, for rows of another account.
        return max(0.0, b.polled + max(self._poll, DISCOVER_EVERY) - now), feed.frontier

    async def _load(self) -> None:
        now = self._clock()
        if self._normal_due(now) <= 0:
            await self._load_normal(now)
            now = self._clock()
            if self._normal.more and self._normal_due(now) <= 0:
                return  # a backlog of conversation rows is read before any bulk row
        due, start = self._bulk_due(now)
        if due <= 0:
            # Read beside the loop, which goes on reading conversation rows and launching.
            task = asyncio.create_task(self._load_bulk(start, now), name="outbox-bulk-read")
            self._bulk_reading = task
            self._tasks.add(task)
            task.add_done_callback(self._bulk_read)

    def _bulk_read(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._bulk_reading = None
        if not task.cancelled() and task.exception() is not None:
            log.error("reading bulk outbox rows failed; retrying", exc_info=task.exception())
            self._bulk_retry_at = self._clock() + 1.0
        self._wake.set()

    async def _load_normal(self, now: float) -> None:
        n = self._normal
        cursor, limit, notified = n.cursor, min(n.window - n.loaded, LOAD_CHUNK), self._notified
        n.polled = now
        if self._leases is not None:
            candidates = await self._candidates(self._leases, limit, bulk=False)
            jobs = await self._lease(self._leases, candidates)
            n.seen = notified
            n.more = len(candidates) == limit
            for job in jobs:
                self._hold(n, job.lane, job, "")
            return
        jobs = await self._db.read_tx(lambda tx: tx.pending(cursor, limit))
        n.seen = notified
        n.more = len(jobs) == limit
        for job in jobs:
            n.cursor = max(n.cursor, job.id)
            self._hold(n, job.lane, job, "")

    async def _candidates(self, leases: Leases, limit: int, *, bulk: bool) -> list[Job]:
        """Pending rows this process may lease (several processes share the outbox)."""
        now = time.time()
        full = self._feed.full() if bulk else []
        return await self._db.read_tx(
            lambda tx: tx.lease_candidates(
                leases.worker, limit, bulk=bulk, now=now, skip_groups=full
            )
        )

    async def _lease(self, leases: Leases, jobs: Sequence[Job]) -> list[Job]:
        """The rows of `jobs` this process won the lease of (others may have been faster)."""
        now = time.time()
        ids = [j.id for j in jobs]
        won = await self._db.write_tx(
            lambda tx: tx.lease(leases.worker, ids, now, now + leases.seconds)
        )
        # Leasing a row already held again only extends its lease; it is not a new row.
        return [j for j in jobs if j.id in won and j.id not in self._holding]

    async def _load_bulk_leased(self, leases: Leases, now: float) -> None:
        b, feed = self._bulk, self._feed
        notified = self._notified
        b.polled = now
        candidates = await self._candidates(leases, BULK_CHUNK, bulk=True)
        picked = feed.pick(candidates)
        try:
            jobs = await self._lease(leases, picked)
        except BaseException:
            for job in picked:
                feed.done(account_of(job), 1)
            raise
        won = {j.id for j in jobs}
        for job in picked:
            if job.id not in won:
                feed.done(account_of(job), 1)
        b.seen = notified
        b.more = len(candidates) == BULK_CHUNK
        for job in jobs:
            group = account_of(job)
            self._hold(b, f"{group}\x00{job.lane}", job, group)

    async def _load_bulk(self, start: int, now: float) -> None:
        if self._leases is not None:
            await self._load_bulk_leased(self._leases, now)
            return
        b, feed = self._bulk, self._feed
        new, notified = start >= feed.frontier, self._notified
        if new:
            b.polled = now
        jobs = await self._db.read_tx(lambda tx: tx.pending(start, BULK_CHUNK, bulk=True))
        if new:
            b.seen = notified
            b.more = len(jobs) == BULK_CHUNK
        for job in feed.take(jobs, start, complete=len(jobs) < BULK_CHUNK):
            group = account_of(job)
            self._hold(b, f"{group}\x00{job.lane}", job, group)

    def _hold(self, s: Stream, key: str, job: Job, group: str) -> None:
        self._holding.add(job.id)
        lane = s.lanes.get(key)
        if lane is None:
            lane = s.lanes[key] = Lane(deque(), job.lane, group)
        lane.jobs.append(job)
        s.loaded += 1
        if len(lane.jobs) == 1 and not lane.busy:
            self._push(s, key, job.next_at)

    # -- scheduling -----------------------------------------------------------------------

    def _push(self, s: Stream, key: str, at: float) -> None:
        self._seq += 1
        heapq.heappush(s.heap, (at, self._seq, False, key))
        self._wake.set()

    def _arm(self, s: Stream, rate_key: str, at: float) -> None:
        if rate_key not in s.armed:
            s.armed.add(rate_key)
            self._seq += 1
            heapq.heappush(s.heap, (at, self._seq, True, rate_key))

    def _park(self, s: Stream, key: str, wait: float, rate_key: str, now: float) -> None:
        s.parked.setdefault(rate_key, deque()).append(key)
        self._arm(s, rate_key, now + wait)

    async def _run(self) -> None:
        while True:
            try:
                await self._load()
                self._launch_ready()
            except Exception:
                log.exception("outbox dispatcher step failed; retrying")
                await asyncio.sleep(1.0)
            now = self._clock()
            delay = min(self._poll, self._normal_due(now), self._bulk_due(now)[0])
            for s in self._streams:
                if s.heap and s.running < s.concurrency:
                    delay = min(delay, max(0.0, s.heap[0][0] - now))
            self._wake.clear()
            if delay > 0:
                # Not asyncio.wait_for: on Python 3.11 it can swallow a cancellation that comes
                # as the wait ends, and this loop wakes hundreds of times a second under a
                # broadcast; stop() would then wait for ever.
                timer = asyncio.get_running_loop().call_later(delay, self._wake.set)
                try:
                    await self._wake.wait()
                finally:
                    timer.cancel()

    def _launch_ready(self) -> None:
        now = self._clock()
        for s in self._streams:
            heap = s.heap
            while heap and heap[0][0] <= now and s.running < s.concurrency:
                _, _, is_key, name = heapq.heappop(heap)
                if is_key:
                    s.armed.discard(name)
                    self._release(s, name, now)
                    continue
                short = self._try(s, name, now)
                if short is not None:
                    self._park(s, name, short[0], short[1], now)

    def _release(self, s: Stream, rate_key: str, now: float) -> None:
        """A rate key may have tokens again: try its waiting lanes in order until one must wait."""
        queue = s.parked.get(rate_key)
        while queue:
            if s.running >= s.concurrency:
                self._arm(s, rate_key, now)  # again when a job finishes
                return
            key = queue[0]
            short = self._try(s, key, now)
            if short is None:
                queue.popleft()
                continue
            wait, other = short
            if other == rate_key:
                self._arm(s, rate_key, now + wait)
                return
            queue.popleft()
            self._park(s, key, wait, other, now)
        s.parked.pop(rate_key, None)

    def _try(self, s: Stream, key: str, now: float) -> tuple[float, str] | None:
        """Launch the lane's head if it may go; or return how long which rate key holds it back.

        None also when the lane has nothing to do now: it is scheduled again by whatever changes
        that (its time, the end of the job in flight in its lane)."""
        lane = s.lanes.get(key)
        if lane is None or lane.busy or not lane.jobs:
            return None
        head = lane.jobs[0]
        if head.next_at > now:
            self._push(s, key, head.next_at)
            return None
        if lane.name in self._running:
            # The other stream's lane of the same name is sending; it wakes this one when done.
            self._waiting.setdefault(lane.name, []).append((s, key))
            return None
        wait, rate_key = self._limiter.try_acquire(head.rate_keys, reserve=s.reserve)
        if wait > 0:
            lane.waited = True
            return wait, rate_key
        handler = self._handlers.get(head.kind)
        if handler is None:
            log.error("no handler for outbox row %s of kind %s", head.id, head.kind)
            self._drop(s, lane, 1)
            if lane.jobs:
                self._push(s, key, lane.jobs[0].next_at)
            else:
                del s.lanes[key]
            return None
        batch = [head]
        # A backlog is worth joining: the head waited for a rate token, is already late, or
        # the dispatcher itself is saturated.
        behind = lane.waited or now - head.created_at > COALESCE_AFTER
        if len(lane.jobs) > 1 and (behind or s.running >= s.concurrency // 2):
            rest = [j for j in list(lane.jobs)[1:] if j.next_at <= now]
            batch.extend(rest[: handler.coalesce(head, rest)])
        lane.busy = True
        lane.waited = False
        s.running += 1
        self._running.add(lane.name)
        task = asyncio.create_task(self._execute(s, key, lane, handler, batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return None

    def _drop(self, s: Stream, lane: Lane, count: int) -> None:
        """The lane's first `count` jobs are finished."""
        for _ in range(count):
            self._holding.discard(lane.jobs.popleft().id)
        s.loaded -= count
        if s.bulk:
            self._feed.done(lane.group, count)

    # -- running --------------------------------------------------------------------------

    async def _execute(
        self, s: Stream, key: str, lane: Lane, handler: JobHandler, jobs: list[Job]
    ) -> None:
        ids = [j.id for j in jobs]
        try:
            await self._writer.submit(CLAIM, ids)
            completion: Completion | None
            try:
                completion = await handler.run(jobs)
            except RateLimited as exc:
                self.rate_limited += 1
                keys = platform_keys(jobs[0].rate_keys)
                # Rate keys run from the account's to the recipient's (see Connector.rate_keys).
                rate_key = (keys[-1] if exc.per_recipient else keys[0]) if keys else None
                if rate_key is not None:
                    self._limiter.block(rate_key, exc.retry_after)
                self._retry(
                    lane, jobs, exc.retry_after, persist=False, error=str(exc), counted=False
                )
                # A 429 means the call was refused: after a crash the row is not one that
                # may have gone out.
                self._unclaim(ids)
                completion = None
            except Held as exc:
                self._limiter.block(exc.key, exc.retry_after)
                self._retry(
                    lane, jobs, exc.retry_after, persist=False, error=str(exc), counted=False
                )
                self._unclaim(ids)
                completion = None
            except PermanentError as exc:
                log.warning("outbox %s %s failed for good: %s", jobs[0].kind, ids, exc)
                completion = await handler.failed(jobs, exc)
                completion.failed_reason = completion.failed_reason or str(exc)
            except TransientError as exc:
                completion = await self._transient(lane, handler, jobs, exc)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                ref = secrets.token_hex(3)
                log.exception("outbox %s %s raised unexpectedly (ref %s)", jobs[0].kind, ids, ref)
                completion = await self._transient(
                    lane, handler, jobs, TransientError(f"internal error (ref {ref}): {exc}")
                )
            if completion is not None:
                await self._writer.submit(COMPLETE, completion)
                self._drop(s, lane, len(jobs))
                self.sent += len(jobs)
                if s.bulk:
                    self.sent_bulk += len(jobs)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("outbox bookkeeping for %s failed; will retry", ids)
            self._retry(lane, jobs, 1.0, persist=False, error="bookkeeping failed")
        finally:
            self._limiter.release(jobs[0].rate_keys)
            lane.busy = False
            s.running -= 1
            self._running.discard(lane.name)
            if lane.jobs:
                self._push(s, key, lane.jobs[0].next_at)
            elif s.lanes.get(key) is lane:
                del s.lanes[key]
            for other, other_key in self._waiting.pop(lane.name, ()):
                self._push(other, other_key, 0.0)
            self._wake.set()

    async def _transient(
        self, lane: Lane, handler: JobHandler, jobs: list[Job], exc: TransientError
    ) -> Completion | None:
        head = jobs[0]
        if self._clock() - head.created_at > GIVE_UP_AFTER:
            return await handler.failed(
                jobs, PermanentError("timeout", f"gave up after 24 hours: {exc}")
            )
        backoff = min(MAX_BACKOFF, 2.0 ** min(head.attempts, 12)) * random.uniform(0.8, 1.2)
        log.info("outbox %s %s will retry in %.1fs: %s", head.kind, head.id, backoff, exc)
        self._retry(lane, jobs, backoff, persist=True, error=str(exc))
        return None

    def _unclaim(self, ids: list[int]) -> None:
        self._write(self._writer.submit(UNCLAIM, ids))

    def _write(self, write: Coroutine[Any, Any, None]) -> None:
        """Bookkeeping written beside the dispatcher (awaited by stop, never cancelled)."""
        task = asyncio.create_task(write)
        self._writes.add(task)
        task.add_done_callback(self._written)

    def _written(self, task: asyncio.Task[None]) -> None:
        self._writes.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("outbox bookkeeping write failed: %s", task.exception())

    def _retry(
        self,
        lane: Lane,
        jobs: list[Job],
        delay: float,
        *,
        persist: bool,
        error: str,
        counted: bool = True,
    ) -> None:
        next_at = self._clock() + delay
        # Only the head keeps its place and waits; jobs that rode along stay behind it.
        head = lane.jobs[0]
        # A 429 or a hold is taken back from the row (unclaimed): it is no attempt in memory
        # either, or a handler would take a row that never went out for one that may have.
        attempts = head.attempts + 1 if counted else head.attempts
        lane.jobs[0] = replace(head, next_at=next_at, attempts=attempts)
        if persist:
            self._write(self._writer.submit(RESCHEDULE, (head.id, next_at, error[:500])))
