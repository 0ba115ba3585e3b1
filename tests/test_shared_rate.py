"""Limiters of several processes on one PostgreSQL database send within one rate: together they
never go faster than the key's limit, they get nearly all of it, and a 429 one of them saw holds
the key for the others."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator

import pytest

from bridge.shared_rate import SharedRateLimiter
from bridge.types import RateLimit
from storage import Database
from tests.harness import eventually

KEY = "telegram:42"
RATE = 200.0
BURST = 200.0
RUN_S = 2.0
_names = itertools.count()


@pytest.fixture
async def pg_url(pg_cluster) -> AsyncIterator[str]:
    url = str(pg_cluster.create_database(f"rate{next(_names)}"))
    db = Database(url)
    await db.migrate()
    await db.close()
    yield url


def limiter(db: Database) -> SharedRateLimiter:
    """One process's limiter (the bridge builds it so on PostgreSQL)."""
    return SharedRateLimiter(
        db, {KEY: RateLimit(rate=RATE, burst=BURST), "slack:chan:*": RateLimit(rate=1, burst=1)}
    )


async def spend(rates: SharedRateLimiter, until: float, sent: list[float]) -> None:
    """Send as fast as the limiter allows: one call per token, recorded when it leaves."""
    while time.monotonic() < until:
        wait, _ = rates.try_acquire([KEY])
        if wait > 0:
            await asyncio.sleep(wait)
            continue
        sent.append(time.monotonic())
        rates.release([KEY])
        await asyncio.sleep(0)


def refused_by_platform(times: list[float]) -> int:
    """Calls a platform enforcing the same bucket (RATE a second, BURST at once) would refuse."""
    tokens, last, refused = BURST, times[0] if times else 0.0, 0
    for t in times:
        tokens = min(BURST, tokens + (t - last) * RATE)
        last = t
        if tokens >= 1.0 - 1e-6:
            tokens -= 1.0
        else:
            refused += 1
    return refused


async def test_three_limiters_on_one_database_share_the_rate(pg_url):
    dbs = [Database(pg_url) for _ in range(3)]
    limiters = [limiter(db) for db in dbs]
    sent: list[list[float]] = [[] for _ in limiters]
    try:
        for rates in limiters:
            await rates.start()
        start = time.monotonic()
        await asyncio.gather(
            *(spend(r, start + RUN_S, out) for r, out in zip(limiters, sent, strict=True))
        )
        elapsed = time.monotonic() - start
    finally:
        for rates in limiters:
            await rates.stop()
        for db in dbs:
            await db.close()
    times = sorted(t for out in sent for t in out)
    # The bucket starts full: its burst, then the rate.
    allowed = BURST + RATE * elapsed
    assert len(times) <= allowed + 1, (len(times), allowed)
    assert refused_by_platform(times) == 0
    # Nearly all of it, shared by all three.
    assert len(times) >= 0.85 * RATE * elapsed, (len(times), allowed)
    assert all(len(out) >= 0.1 * len(times) for out in sent), [len(out) for out in sent]


async def test_a_429_seen_by_one_process_holds_the_key_in_another(pg_url):
    db_a, db_b = Database(pg_url), Database(pg_url)
    first, second = limiter(db_a), limiter(db_b)
    channel = "slack:chan:C1"
    try:
        await first.start()
        await second.start()
        first.block(channel, 30.0)
        first.block(KEY, 30.0)

        def answers() -> list[tuple[float, str]] | None:
            found = [second.try_acquire([KEY]), second.try_acquire(["slack:chan:C9", channel])]
            return found if all(wait > 1.0 for wait, _ in found) else None

        [(key_wait, key), (channel_wait, held)] = await eventually(
            answers, message="the other process to hold the keys"
        )
        assert (key, held) == (KEY, channel)
        assert 20.0 < key_wait <= 30.0 and 20.0 < channel_wait <= 30.0
        # Another channel is not held.
        await eventually(
            lambda: second.try_acquire(["slack:chan:C9"]) == (0.0, ""), message="another channel"
        )
    finally:
        await first.stop()
        await second.stop()
        await db_a.close()
        await db_b.close()
