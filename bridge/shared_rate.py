"""One rate for all processes: token buckets kept in PostgreSQL, spent in slices.

Several bridge processes on one PostgreSQL database send within the same limits: each rate key
has one bucket in the database (`tx.rate_buckets`), refilled by the database's clock. The
dispatcher asks for tokens synchronously in its hot loop, so a process leases a slice of a key's
tokens (about `SLICE_S` seconds of its rate) in one statement, spends it from memory, and leases
again when it runs low; keys that ran low meanwhile go in the same statement. Together the
processes take at most what the bucket gives, and the slices are small enough for all of them to
use nearly all of it. Tokens unspent after `HOLD_S` go back to the bucket (never above its
burst), so a slice taken long ago is not spent on top of a refilled bucket.

A 429 one process sees is written to the key's row (`blocked_until`): every process holds the
key from its next lease on. Keys without a limit (a handler's hold keys) stay in this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from bridge.ratelimit import kept
from bridge.types import RateLimit
from storage import Database, RateGrant, RateSlice, Tx

log = logging.getLogger(__name__)

SLICE_S = 0.1  # a lease asks for this many seconds of a key's rate
HOLD_S = 0.5  # leased tokens unspent this long go back to the bucket
# ... unless a caller waits for them (a recipient's token leased for a send that waits for a task
# slot): a token taken back then would be leased again for the same send.
PROMISED_HOLD_S = 2.0
# What a caller is told to wait while its key's lease is under way; the lease's answer wakes
# the dispatcher sooner (`on_ready`), this is in case it does not.
LEASE_WAIT = 0.05
LEASE_GAP = 0.002  # between two leases: keys wanted meanwhile go in one statement
MAX_WAIT = 1.0  # an empty bucket is asked again at least this often
TIDY_EVERY = 0.25  # how often held tokens are checked for their age
SWEEP_EVERY = 300.0  # how often rows of keys nobody uses are dropped
FORGET_AFTER = 5.0  # a key idle this long is forgotten in memory


@dataclass(slots=True)
class _Key:
    """This process's share of one key: tokens leased and not spent, and what it wants."""

    key: str
    held: float = 0.0
    got_at: float = -math.inf
    give: float = 0.0  # unspent tokens to hand back with the next lease
    wanted: bool = False
    urgent: bool = False  # a caller without a reserve (conversation traffic) wants tokens
    reserve: float = 0.0  # the largest reserve of the callers that want tokens
    retry_at: float = -math.inf  # the bucket was empty: not asked again before this
    inflight: int = 0
    used_at: float = 0.0
    # Tokens promised to callers waiting for a later key's lease (a recipient's, say): others
    # wait for the account's next slice instead of each asking for its own recipient's key.
    pledged: int = 0
    pledges: list[_Key] = field(default_factory=list)  # the keys this one's lease promised


class SharedRateLimiter:
    """Token buckets shared through the database, leased in slices (see the module docstring).

    Same calls as `bridge.ratelimit.RateLimiter`; `start` runs the lease loop beside the
    dispatcher, `stop` ends it and gives back what this process holds.
    """

    def __init__(
        self,
        db: Database,
        limits: Mapping[str, RateLimit],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db = db
        self._limits = dict(limits)
        self._clock = clock
        self._keys: dict[str, _Key] = {}
        self._blocked: dict[str, float] = {}
        self._due: set[str] = set()  # keys wanted or with tokens to give back
        self._blocks: dict[str, float] = {}  # 429s to write: seconds per key
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._ready: Callable[[Sequence[str]], None] = _nobody
        self._owns_db = False
        self.leases = 0  # statements run (for tests and benchmarks)

    def update(self, limits: Mapping[str, RateLimit]) -> None:
        """Add limits (connectors and surfaces contribute theirs at start)."""
        self._limits.update(limits)

    @classmethod
    def own_pool(cls, url: str, limits: Mapping[str, RateLimit]) -> SharedRateLimiter:
        """A limiter with a connection pool of its own (closed by `stop`): a lease never waits
        for a connection behind the bridge's other work, which would hold every send back."""
        rates = cls(Database(url), limits)
        rates._owns_db = True
        return rates

    def on_ready(self, ready: Callable[[Sequence[str]], None]) -> None:
        """Call `ready` with the keys a lease has answered for (the dispatcher tries again the
        callers that wait for them)."""
        self._ready = ready

    def limit(self, key: str) -> RateLimit | None:
        """The limit of a key: exact, or with its last segment as `*`."""
        found = self._limits.get(key)
        if found is None:
            head, sep, _ = key.rpartition(":")
            if sep:
                found = self._limits.get(f"{head}:*")
        return found

    def try_acquire(self, keys: Sequence[str], *, reserve: float = 0.0) -> tuple[float, str]:
        """Take one token from every key and return (0, ""), or return how long to wait and the
        key that holds the caller back longest (taking none).

        A key whose slice is spent is leased again; the caller is told to come back when the
        lease answers. Keys after one that holds the caller back are not leased, and while a
        later key is leased the tokens found in the earlier ones are promised to the caller
        (a recipient's key is leased only for a caller the account has a token for, and that
        token waits for it). `reserve`: see `RateLimiter.try_acquire`; here the bucket in the
        database keeps it.
        """
        now = self._clock()
        wait, short = 0.0, ""
        found: list[tuple[_Key, RateLimit]] = []
        for key in keys:
            blocked = self._blocked.get(key)
            if blocked is not None:
                if blocked > now:
                    if blocked - now > wait:
                        wait, short = blocked - now, key
                    continue
                del self._blocked[key]
            limit = self.limit(key)
            if limit is not None:
                found.append((self._state(key, now), limit))
        if wait > 0:
            return wait, short
        # Tokens promised to this caller: those its keys' leases were promised.
        mine = Counter(other.key for state, _ in found for other in state.pledges)
        for i, (state, _) in enumerate(found):
            if state.held - state.pledged + mine[state.key] < 1.0 - 1e-9:
                return self._want(state, now, reserve, found[:i]), state.key
        for state, limit in found:
            self._settle(state)
            state.held -= 1.0
            state.inflight += 1
            if state.held < _slice(limit) / 2 and not state.wanted:
                self._want(state, now, reserve, ())  # the next slice, before this one ends
        return 0.0, ""

    def release(self, keys: Sequence[str]) -> None:
        """The call a token was taken for has been made (or given up)."""
        for key in keys:
            state = self._keys.get(key)
            if state is not None and state.inflight > 0:
                state.inflight -= 1

    def block(self, key: str, seconds: float) -> None:
        """Hold a key back after the platform answered 429, here at once and in every process
        from its next lease (a key with a limit; others stay in this process)."""
        until = max(self._blocked.get(key, 0.0), self._clock() + seconds)
        self._blocked[key] = until
        state = self._keys.get(key)
        if state is not None:
            state.held = 0.0  # the platform has had enough: these are not worth giving back
        if self.limit(key) is not None:
            self._blocks[key] = max(self._blocks.get(key, 0.0), seconds)
            self._wake.set()

    async def start(self) -> None:
        """Start leasing."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="rate-leases")

    async def stop(self) -> None:
        """Stop leasing; give back the tokens this process holds, write its last 429s."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for key, state in self._keys.items():
            if state.held > 0:
                state.give += state.held
                state.held = 0.0
                self._due.add(key)
        for state in self._keys.values():
            state.wanted = False
        try:
            await self._lease()
        except Exception:
            log.warning("could not give back the rate tokens this process held", exc_info=True)
        if self._owns_db:
            await self._db.close()

    # -- the lease loop -------------------------------------------------------------------

    def _state(self, key: str, now: float) -> _Key:
        state = self._keys.get(key)
        if state is None:
            state = self._keys[key] = _Key(key)
        state.used_at = now
        if state.held > 0 and now - state.got_at > _hold(state):
            self._expire(key, state)
        return state

    def _expire(self, key: str, state: _Key) -> None:
        state.give += state.held
        state.held = 0.0
        self._due.add(key)
        self._ready(self._settle(state))  # what was promised with it is free again

    def _want(
        self,
        state: _Key,
        now: float,
        reserve: float,
        earlier: Sequence[tuple[_Key, RateLimit]],
    ) -> float:
        """Ask for a slice of a key; return how long the caller should wait for it. The tokens
        the caller found in `earlier` keys are promised to it until the lease answers."""
        if reserve <= 0:
            state.urgent = True
        else:
            state.reserve = max(state.reserve, reserve)
        if state.retry_at > now:
            return state.retry_at - now  # its bucket is empty until then
        if not state.wanted:
            state.wanted = True
            self._due.add(state.key)
            self._wake.set()
        if not state.pledges:
            for other, _ in earlier:
                other.pledged += 1
                state.pledges.append(other)
        return LEASE_WAIT

    async def _run(self) -> None:
        tidied = swept = self._clock()
        while True:
            now = self._clock()
            if now - tidied >= TIDY_EVERY:
                tidied = now
                self._tidy(now)
            if now - swept >= SWEEP_EVERY:
                swept = now
                await self._sweep()
            timeout = self._next_due(now, tidied)
            if timeout > 0:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)
            try:
                await self._lease()
            except Exception:
                log.warning("leasing rate tokens failed; retrying", exc_info=True)
                await asyncio.sleep(0.5)
            await asyncio.sleep(LEASE_GAP)

    def _next_due(self, now: float, tidied: float) -> float:
        """Seconds until the loop has something to do (0: now)."""
        due = tidied + TIDY_EVERY - now
        if self._blocks:
            return 0.0
        for key in self._due:
            state = self._keys.get(key)
            if state is None or state.give > 0:
                return 0.0
            if state.wanted:
                due = min(due, state.retry_at - now)
        return max(0.0, due)

    def _tidy(self, now: float) -> None:
        """Give back tokens held too long; forget keys nobody used for a while."""
        for key, state in list(self._keys.items()):
            if state.held > 0 and now - state.got_at > _hold(state):
                self._expire(key, state)
            elif (
                state.held <= 0
                and not state.wanted
                and not state.pledged
                and not state.inflight
                and state.give <= 0
                and now - state.used_at > FORGET_AFTER
            ):
                del self._keys[key]
                self._due.discard(key)

    async def _sweep(self) -> None:
        try:
            await self._db.write_tx(lambda tx: tx.rate_buckets.sweep())
        except Exception:
            log.warning("dropping idle rate buckets failed", exc_info=True)

    def _slices(self, now: float) -> list[RateSlice]:
        """One slice per key due now: wanted (its bucket not known empty), or giving back."""
        slices: list[RateSlice] = []
        for key in sorted(self._due):
            state, limit = self._keys.get(key), self.limit(key)
            if state is None or limit is None:
                self._due.discard(key)
                continue
            want = state.wanted and state.retry_at <= now
            if not want and state.give <= 0:
                if not state.wanted:
                    self._due.discard(key)
                continue
            keep = 0.0 if state.urgent or not want else kept(limit, state.reserve)
            cap = _cap(limit, state.inflight)
            size = _slice(limit) if want else 0.0
            slices.append(RateSlice(key, limit.rate, cap, size, keep, state.give))
            state.give = 0.0
            if not state.wanted:
                self._due.discard(key)
        return slices

    async def _lease(self) -> None:
        """One statement: the 429s seen since the last one, and the slices due."""
        slices = self._slices(self._clock())
        blocks = list(self._blocks.items())
        self._blocks.clear()
        if not slices and not blocks:
            return

        def run(tx: Tx) -> list[RateGrant]:
            tx.rate_buckets.block(blocks)
            return tx.rate_buckets.lease(slices)

        self.leases += 1
        try:
            grants = await self._db.write_tx(run)
        except BaseException:
            for asked in slices:
                state = self._keys.get(asked.key)
                if state is not None:
                    self._settle(state)
                    state.wanted = False  # asked again by the next caller
            raise
        now = self._clock()
        answered: set[str] = set()
        for asked, grant in zip(slices, grants, strict=True):
            state = self._keys.get(asked.key)
            if state is not None and asked.want > 0:
                answered.add(asked.key)
                if grant.granted <= 0:
                    # Nothing for its callers yet: what was promised to them is free again.
                    answered.update(self._settle(state))
                self._apply(state, asked, grant, now)
            elif grant.blocked > 0:
                self._blocked[asked.key] = max(
                    self._blocked.get(asked.key, 0.0), now + grant.blocked
                )
        if answered:
            self._ready(sorted(answered))

    def _settle(self, state: _Key) -> list[str]:
        """End what was promised to the callers of this key (taken, or free again); return the
        keys it was promised from."""
        keys = [other.key for other in state.pledges]
        for other in state.pledges:
            other.pledged -= 1
        state.pledges.clear()
        return keys

    def _apply(self, state: _Key, asked: RateSlice, grant: RateGrant, now: float) -> None:
        if grant.blocked > 0:
            self._blocked[asked.key] = max(self._blocked.get(asked.key, 0.0), now + grant.blocked)
        if grant.granted > 0:
            state.held += grant.granted
            state.got_at = now
            state.wanted = state.urgent = False
            state.reserve = 0.0
            self._due.discard(asked.key)
        elif grant.blocked <= 0:
            # Empty: ask again when the bucket should hold a token beyond what it keeps.
            rate = max(asked.rate, 1e-9)
            state.retry_at = now + min(
                MAX_WAIT, max(LEASE_GAP, (1.0 + asked.keep - grant.left) / rate)
            )
        else:
            state.retry_at = now + grant.blocked


def _hold(state: _Key) -> float:
    """How long leased tokens of a key may be spent."""
    return PROMISED_HOLD_S if state.pledges else HOLD_S


def _nobody(_keys: Sequence[str]) -> None:
    """Nobody to tell yet."""


def _cap(limit: RateLimit, inflight: int) -> float:
    """What the bucket may fill up to: the burst less this process's calls in flight (see
    `RateLimiter`), and less one slice when the burst holds several. A slice is spent a lease's
    round trip after the database counted it, and round trips vary: tokens counted apart may
    arrive together, and the platform's bucket, never quite emptied by our burst, absorbs that."""
    margin = _slice(limit) if limit.burst >= 4 * _slice(limit) else 0.0
    return max(1.0, limit.burst - inflight - margin)


def _slice(limit: RateLimit) -> float:
    """Tokens a lease asks for: `SLICE_S` of the rate, at least one, at most the burst."""
    return float(max(1, min(math.ceil(limit.rate * SLICE_S), math.floor(max(1.0, limit.burst)))))
