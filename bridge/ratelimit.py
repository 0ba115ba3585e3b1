"""Token buckets per rate key, the limits the outbox dispatcher sends within."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

from bridge.types import RateLimit

# Buckets that have filled up again are forgotten (they read as full) once there are this many.
SWEEP_AT = 4096


class RateLimiter:
    """Token buckets per rate key; a 429 blocks a key for the time the platform asked.

    A token taken for a call still in flight counts against the bucket until `release`: the
    platform's bucket has not seen that call yet, so after a stall (the event loop, the database)
    ours must not have filled up to the whole burst while those calls are still to arrive, or
    they and the burst arrive together above the platform's limit and draw 429s.
    """

    def __init__(
        self, limits: Mapping[str, RateLimit], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._limits = dict(limits)
        self._clock = clock
        self._tokens: dict[str, tuple[float, float]] = {}
        self._blocked: dict[str, float] = {}
        self._inflight: dict[str, int] = {}
        self._sweep_at = SWEEP_AT

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

    def acquire(self, keys: Sequence[str], *, reserve: float = 0.0) -> float:
        """Take one token from every key and return 0, or return how long to wait (taking none)."""
        return self.try_acquire(keys, reserve=reserve)[0]

    def try_acquire(self, keys: Sequence[str], *, reserve: float = 0.0) -> tuple[float, str]:
        """Take one token from every key and return (0, ""), or return how long to wait and the
        key that holds the caller back longest (taking none).

        `reserve` (seconds): take a token only if `reserve` seconds of the key's rate stay in the
        bucket afterwards (at least one token, at most half the burst), for callers without one.
        Such a caller alone still gets the key's whole rate once the bucket holds the reserve:
        only the reserve itself, a fraction of a second's worth taken once, stays unused.
        """
        now = self._clock()
        wait, short = 0.0, ""
        state: list[tuple[str, float]] = []
        for key in keys:
            blocked = self._blocked.get(key)
            if blocked is not None:
                if blocked > now:
                    if blocked - now > wait:
                        wait, short = blocked - now, key
                    continue
                del self._blocked[key]
            limit = self.limit(key)
            if limit is None:
                continue
            cap = self._cap(key, limit)
            tokens, last = self._tokens.get(key, (cap, now))
            tokens = min(max(tokens, cap), tokens + max(0.0, now - last) * limit.rate)
            need = 1.0 + _kept(limit, reserve)
            # A hair short (rounding) is enough, and a wait is at least 1 µs: a clock at 1.8e9
            # cannot tell a wait of 1e-17 s from none, and the caller would come back for ever.
            if tokens + 1e-9 < need and max(1e-6, (need - tokens) / limit.rate) > wait:
                wait, short = max(1e-6, (need - tokens) / limit.rate), key
            state.append((key, tokens))
        if wait > 0:
            return wait, short
        for key, tokens in state:
            self._tokens[key] = (tokens - 1.0, now)
            self._inflight[key] = self._inflight.get(key, 0) + 1
        if len(self._tokens) > self._sweep_at:
            self._sweep(now)
        return 0.0, ""

    def release(self, keys: Sequence[str]) -> None:
        """The call a token was taken for has been made (or given up)."""
        for key in keys:
            count = self._inflight.get(key, 0)
            if count > 1:
                self._inflight[key] = count - 1
            elif count:
                del self._inflight[key]

    def block(self, key: str, seconds: float) -> None:
        """Hold a key back after the platform answered 429; it starts again from an empty bucket
        (a full one would send a burst to a platform that has just said it had enough)."""
        until = max(self._blocked.get(key, 0.0), self._clock() + seconds)
        self._blocked[key] = until
        self._tokens[key] = (0.0, until)

    def _cap(self, key: str, limit: RateLimit) -> float:
        """What the bucket may fill up to: the burst less the calls still in flight. One token
        at least: this trims the bursts after a stall, it never limits the calls in flight."""
        return max(1.0, limit.burst - self._inflight.get(key, 0))

    def _sweep(self, now: float) -> None:
        # One bucket per recipient adds up over a broadcast; a full bucket is the same as none.
        for key, (tokens, last) in list(self._tokens.items()):
            limit = self.limit(key)
            if limit is None or tokens + (now - last) * limit.rate >= self._cap(key, limit):
                del self._tokens[key]
        self._sweep_at = max(SWEEP_AT, 2 * len(self._tokens))


def _kept(limit: RateLimit, reserve: float) -> float:
    """Tokens a caller with this reserve must leave in the bucket."""
    if reserve <= 0:
        return 0.0
    # At most half of what the bucket holds beyond one token: the rest is the caller's room to
    # be late without letting the bucket overflow (a token lost).
    return max(0.0, min((limit.burst - 1.0) / 2, max(1.0, reserve * limit.rate)))
