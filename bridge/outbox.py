"""The durable delivery queue's dispatcher: ordering, rate limits, retries, status.

Every side effect is an `outbox` row (see storage). The dispatcher keeps a bounded window of
pending rows in memory, grouped into lanes: a lane's rows leave strictly one after another, in
id order (one conversation's messages stay in order), while different lanes run concurrently.
Before a row is attempted its attempt count is committed, so after a crash the handler knows the
row may already have gone out and can look before sending again. A finished row is marked done in
the same transaction as everything it produced (thread ids, staff refs, follow-up rows).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import random
import secrets
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from bridge.errors import PermanentError, RateLimited, TransientError
from bridge.types import RateLimit
from storage import BatchKind, Completion, Database, Job, Tx, Writer

log = logging.getLogger(__name__)

MAX_BACKOFF = 300.0
COALESCE_AFTER = 0.5
GIVE_UP_AFTER = 24 * 3600.0


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


class RateLimiter:
    """Token buckets per rate key; a 429 blocks a key for the time the platform asked."""

    def __init__(
        self, limits: Mapping[str, RateLimit], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._limits = dict(limits)
        self._clock = clock
        self._tokens: dict[str, tuple[float, float]] = {}
        self._blocked: dict[str, float] = {}

    def update(self, limits: Mapping[str, RateLimit]) -> None:
        """Add limits (connectors and surfaces contribute theirs at start)."""
        self._limits.update(limits)

    def limit(self, key: str) -> RateLimit | None:
        """The limit of a key: exact, or with its last segment as `*`."""
        found = self._limits.get(key)
        if found is None:
            head, sep, _ = key.rpartition(":")
            if sep:
                found = self._limits.get(f"{head}:*")
        return found

    def acquire(self, keys: Sequence[str]) -> float:
        """Take one token from every key and return 0, or return how long to wait (taking none)."""
        now = self._clock()
        wait = 0.0
        state: list[tuple[str, float, RateLimit]] = []
        for key in keys:
            blocked = self._blocked.get(key, 0.0)
            if blocked > now:
                wait = max(wait, blocked - now)
                continue
            limit = self.limit(key)
            if limit is None:
                continue
            tokens, last = self._tokens.get(key, (limit.burst, now))
            tokens = min(limit.burst, tokens + (now - last) * limit.rate)
            if tokens < 1.0:
                wait = max(wait, (1.0 - tokens) / limit.rate)
            state.append((key, tokens, limit))
        if wait > 0:
            return wait
        for key, tokens, _ in state:
            self._tokens[key] = (tokens - 1.0, now)
        return 0.0

    def block(self, key: str, seconds: float) -> None:
        """Hold a key back after the platform answered 429."""
        until = self._clock() + seconds
        self._blocked[key] = max(self._blocked.get(key, 0.0), until)
        self._tokens.pop(key, None)


def _claim(tx: Tx, batches: Sequence[Sequence[int]]) -> list[None]:
    tx.claim([i for ids in batches for i in ids])
    return [None] * len(batches)


def _complete(tx: Tx, completions: Sequence[Completion]) -> list[None]:
    tx.apply(completions, time.time())
    return [None] * len(completions)


def _reschedule(tx: Tx, items: Sequence[tuple[int, float, str]]) -> list[None]:
    for job_id, next_at, error in items:
        tx.reschedule(job_id, next_at, error)
    return [None] * len(items)


CLAIM: BatchKind[Sequence[int], None] = BatchKind("outbox.claim", _claim)
COMPLETE: BatchKind[Completion, None] = BatchKind("outbox.complete", _complete)
RESCHEDULE: BatchKind[tuple[int, float, str], None] = BatchKind("outbox.reschedule", _reschedule)


@dataclass(slots=True)
class _Lane:
    jobs: deque[Job]
    busy: bool = False
    waited: bool = False


class Dispatcher:
    """Sends pending outbox rows through their handlers, in order per lane, within limits."""

    def __init__(
        self,
        db: Database,
        writer: Writer,
        handlers: Mapping[str, JobHandler],
        limiter: RateLimiter,
        *,
        window: int = 5000,
        concurrency: int = 64,
        poll_interval: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._db = db
        self._writer = writer
        self._handlers = handlers
        self._limiter = limiter
        self._window = window
        self._concurrency = concurrency
        self._poll = poll_interval
        self._clock = clock
        self._lanes: dict[str, _Lane] = {}
        self._heap: list[tuple[float, int, str]] = []
        self._seq = 0
        self._cursor = 0
        self._loaded = 0
        self._more = True
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._main: asyncio.Task[None] | None = None
        self.sent = 0
        self.rate_limited = 0

    def notify(self, _added: int = 0) -> None:
        """New rows were committed: look for them."""
        self._more = True
        self._wake.set()

    async def start(self) -> None:
        """Start dispatching."""
        self._main = asyncio.create_task(self._run(), name="outbox-dispatcher")

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

    async def _load(self) -> None:
        room = self._window - self._loaded
        if room <= 0:
            return
        cursor, limit = self._cursor, min(room, 1000)
        jobs = await self._db.run_read(lambda conn: Tx(conn).pending(cursor, limit))
        self._more = len(jobs) == min(room, 1000)
        for job in jobs:
            self._cursor = max(self._cursor, job.id)
            lane = self._lanes.get(job.lane)
            if lane is None:
                lane = self._lanes[job.lane] = _Lane(deque())
            lane.jobs.append(job)
            self._loaded += 1
            if len(lane.jobs) == 1 and not lane.busy:
                self._schedule(job.lane, job.next_at)

    def _schedule(self, lane: str, at: float) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (at, self._seq, lane))
        self._wake.set()

    async def _run(self) -> None:
        while True:
            try:
                if self._more and self._loaded < self._window // 2 or not self._loaded:
                    await self._load()
                self._launch_ready()
            except Exception:
                log.exception("outbox dispatcher step failed; retrying")
                await asyncio.sleep(1.0)
            delay = self._poll
            if self._heap:
                delay = min(delay, max(0.0, self._heap[0][0] - self._clock()))
            if len(self._tasks) >= self._concurrency:
                delay = self._poll
            self._wake.clear()
            if delay > 0:
                try:
                    await asyncio.wait_for(self._wake.wait(), delay)
                except TimeoutError:
                    # Rows may come from another process, which cannot notify us: look again.
                    self._more = True

    def _launch_ready(self) -> None:
        now = self._clock()
        while self._heap and self._heap[0][0] <= now and len(self._tasks) < self._concurrency:
            _, _, name = heapq.heappop(self._heap)
            lane = self._lanes.get(name)
            if lane is None or lane.busy or not lane.jobs:
                continue
            head = lane.jobs[0]
            if head.next_at > now:
                self._schedule(name, head.next_at)
                continue
            wait = self._limiter.acquire(head.rate_keys)
            if wait > 0:
                lane.waited = True
                self._schedule(name, now + wait)
                continue
            handler = self._handlers.get(head.kind)
            if handler is None:
                log.error("no handler for outbox row %s of kind %s", head.id, head.kind)
                lane.jobs.popleft()
                self._loaded -= 1
                continue
            batch = [head]
            # A backlog is worth joining: the head waited for a rate token, is already late, or
            # the dispatcher itself is saturated.
            behind = lane.waited or now - head.created_at > COALESCE_AFTER
            if len(lane.jobs) > 1 and (behind or len(self._tasks) >= self._concurrency // 2):
                rest = [j for j in list(lane.jobs)[1:] if j.next_at <= now]
                batch.extend(rest[: handler.coalesce(head, rest)])
            lane.busy = True
            lane.waited = False
            task = asyncio.create_task(self._execute(name, lane, handler, batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _execute(self, name: str, lane: _Lane, handler: JobHandler, jobs: list[Job]) -> None:
        ids = [j.id for j in jobs]
        try:
            await self._writer.submit(CLAIM, ids)
            completion: Completion | None
            try:
                completion = await handler.run(jobs)
            except RateLimited as exc:
                self.rate_limited += 1
                keys = jobs[0].rate_keys
                # Rate keys run from the account's to the recipient's (see Connector.rate_keys).
                key = (keys[-1] if exc.per_recipient else keys[0]) if keys else None
                if key is not None:
                    self._limiter.block(key, exc.retry_after)
                self._retry(lane, jobs, exc.retry_after, persist=False, error=str(exc))
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
                for _ in jobs:
                    lane.jobs.popleft()
                self._loaded -= len(jobs)
                self.sent += len(jobs)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("outbox bookkeeping for %s failed; will retry", ids)
            self._retry(lane, jobs, 1.0, persist=False, error="bookkeeping failed")
        finally:
            lane.busy = False
            if lane.jobs:
                self._schedule(name, lane.jobs[0].next_at)
            else:
                self._lanes.pop(name, None)
            if self._more:
                self._wake.set()

    async def _transient(
        self, lane: _Lane, handler: JobHandler, jobs: list[Job], exc: TransientError
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

    def _retry(
        self, lane: _Lane, jobs: list[Job], delay: float, *, persist: bool, error: str
    ) -> None:
        next_at = self._clock() + delay
        # Only the head keeps its place and waits; jobs that rode along stay behind it.
        head = lane.jobs[0]
        lane.jobs[0] = replace(head, next_at=next_at, attempts=head.attempts + 1)
        if persist:
            task = asyncio.create_task(
                self._writer.submit(RESCHEDULE, (head.id, next_at, error[:500]))
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
