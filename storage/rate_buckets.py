"""Token buckets shared by the bridge's processes (PostgreSQL): slices leased, 429s recorded.

Every process sends within the same buckets, one row per rate key. A process leases a slice of a
key's tokens in one `UPDATE … RETURNING`: the row is refilled by the time elapsed on the
database's clock (the one clock the processes share), capped at the burst, and gives
min(wanted, available); the row lock makes concurrent leases of one key take turns. Tokens a
process did not spend come back the same way (`give`), never above the burst.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import text

from storage.records import Repository

# Rows untouched this long are dropped: their buckets are full again, the same as no row.
IDLE_S = 3600.0

_REQUESTS = (
    "SELECT * FROM unnest(CAST(:keys AS text[]), CAST(:rates AS float8[]),"
    " CAST(:caps AS float8[]), CAST(:wants AS float8[]), CAST(:keeps AS float8[]),"
    " CAST(:gives AS float8[])) AS r(key, rate, cap, want, keep, give)"
)
_NOW = "SELECT extract(epoch FROM clock_timestamp())::float8 AS t"
# What the bucket holds now: refilled by the elapsed time up to the cap (a bucket above the cap,
# whose cap came down, keeps what it has), plus what the process gives back.
_REFILLED = "least(greatest(b.tokens, r.cap), b.tokens + greatest(0, n.t - b.refilled_at) * r.rate)"
_AVAILABLE = f"greatest({_REFILLED}, least(r.cap, {_REFILLED} + r.give))"
# Whole tokens only, and none while a 429 holds the key; `keep`: tokens to leave to others
# (a broadcast's reserve for replies).
_GRANT = (
    f"CASE WHEN b.blocked_until > n.t OR r.want <= 0 THEN 0"
    f" ELSE greatest(0, least(r.want, floor({_AVAILABLE} - r.keep))) END"
)
# Expressions in SET read the row as it is after the lock is taken: concurrent leases of one
# key see each other's grants (a FROM subquery reading the table would not).
_LEASE = (
    f"WITH r AS ({_REQUESTS}), n AS ({_NOW})"
    f" UPDATE rate_buckets AS b SET tokens = {_AVAILABLE} - {_GRANT}, last_grant = {_GRANT},"
    f" refilled_at = greatest(b.refilled_at, n.t)"
    f" FROM r, n WHERE b.key = r.key"
    f" RETURNING b.key, b.last_grant, b.tokens, greatest(0, b.blocked_until - n.t)"
)
_CREATE = (
    f"WITH r AS ({_REQUESTS}), n AS ({_NOW})"
    " INSERT INTO rate_buckets (key, tokens, refilled_at, blocked_until, last_grant)"
    " SELECT r.key, r.cap, n.t, 0, 0 FROM r, n ON CONFLICT (key) DO NOTHING"
)
_BLOCK = (
    "WITH n AS (" + _NOW + ")"
    " INSERT INTO rate_buckets (key, tokens, refilled_at, blocked_until, last_grant)"
    " SELECT s.key, 0, n.t + s.seconds, n.t + s.seconds, 0"
    " FROM unnest(CAST(:keys AS text[]), CAST(:seconds AS float8[])) AS s(key, seconds), n"
    " ON CONFLICT (key) DO UPDATE SET tokens = 0,"
    " blocked_until = greatest(rate_buckets.blocked_until, excluded.blocked_until),"
    " refilled_at = greatest(rate_buckets.refilled_at, excluded.refilled_at)"
)
_SWEEP = (
    "DELETE FROM rate_buckets WHERE refilled_at < extract(epoch FROM clock_timestamp()) - :idle"
    " AND blocked_until < extract(epoch FROM clock_timestamp())"
)


@dataclass(frozen=True, slots=True)
class RateSlice:
    """A lease asked for: up to `want` tokens of `key` (`rate` a second, at most `cap` saved
    up), leaving `keep` in the bucket; `give`: unspent tokens handed back first."""

    key: str
    rate: float
    cap: float
    want: float
    keep: float = 0.0
    give: float = 0.0


@dataclass(frozen=True, slots=True)
class RateGrant:
    """What a lease got: `granted` tokens, `left` in the bucket after it, and for how many more
    seconds a 429 holds the key (0: it does not)."""

    key: str
    granted: float
    left: float
    blocked: float


class RateBuckets(Repository):
    """The shared token buckets (PostgreSQL only)."""

    def lease(self, slices: Sequence[RateSlice]) -> list[RateGrant]:
        """Take slices of tokens, one per key (a bucket starts full); one answer per slice."""
        if not slices:
            return []
        grants = self._update(slices)
        missing = [s for s in slices if s.key not in grants]
        if missing:
            self.conn.execute(text(_CREATE), _params(missing))
            grants.update(self._update(missing))
        return [grants[s.key] for s in slices]

    def block(self, blocks: Sequence[tuple[str, float]]) -> None:
        """A platform answered 429: hold each key for so many seconds, from an empty bucket."""
        if blocks:
            self.conn.execute(
                text(_BLOCK),
                {"keys": [k for k, _ in blocks], "seconds": [float(s) for _, s in blocks]},
            )

    def sweep(self, idle: float = IDLE_S) -> int:
        """Drop the rows of keys nobody used for `idle` seconds; return how many."""
        return int(self.conn.execute(text(_SWEEP), {"idle": idle}).rowcount or 0)

    def _update(self, slices: Sequence[RateSlice]) -> dict[str, RateGrant]:
        rows = self.conn.execute(text(_LEASE), _params(slices))
        return {
            str(row[0]): RateGrant(str(row[0]), float(row[1]), float(row[2]), float(row[3]))
            for row in rows
        }


def _params(slices: Sequence[RateSlice]) -> dict[str, list[object]]:
    return {
        "keys": [s.key for s in slices],
        "rates": [float(s.rate) for s in slices],
        "caps": [float(s.cap) for s in slices],
        "wants": [float(s.want) for s in slices],
        "keeps": [float(s.keep) for s in slices],
        "gives": [float(s.give) for s in slices],
    }
