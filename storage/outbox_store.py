"""Outbox statements: enqueue, pending rows, leases across processes, finish and retry."""

from __future__ import annotations

import json
from collections.abc import Sequence

from sqlalchemy import BigInteger, bindparam, exists, func, select, text, update
from sqlalchemy.dialects import postgresql

from storage.records import (
    Job,
    NewJob,
    TxBase,
    job_record,
)
from storage.tables import (
    outbox,
)


class OutboxQueries(TxBase):
    """Outbox statements of `Tx`."""

    # -- outbox ---------------------------------------------------------------------------

    def enqueue(self, jobs: Sequence[NewJob], now: float) -> int:
        """Add outbox rows; rows whose idempotency key exists already are skipped."""
        if not jobs:
            return 0
        if self.dialect == "sqlite":
            # The other hot insert: plain tuples, no per-row SQL expression processing.
            before = self.conn.connection.dbapi_connection.total_changes  # type: ignore[union-attr]
            self.conn.exec_driver_sql(
                "INSERT INTO outbox (kind, idem_key, lane, rate_keys, payload, state, attempts, "
                "next_at, created_at, bulk) VALUES (?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?) "
                "ON CONFLICT (idem_key) DO NOTHING",
                [
                    (
                        j.kind,
                        j.idem_key,
                        j.lane,
                        " ".join(j.rate_keys),
                        json.dumps(dict(j.payload)),
                        j.next_at,
                        now,
                        1 if j.bulk else 0,
                    )
                    for j in jobs
                ],
            )
            after = self.conn.connection.dbapi_connection.total_changes  # type: ignore[union-attr]
            self.enqueued += after - before
            return int(after - before)
        stmt = self._insert(outbox).on_conflict_do_nothing(index_elements=["idem_key"])
        result = self.conn.execute(
            stmt,
            [
                {
                    "kind": j.kind,
                    "idem_key": j.idem_key,
                    "lane": j.lane,
                    "rate_keys": " ".join(j.rate_keys),
                    "payload": dict(j.payload),
                    "state": "pending",
                    "attempts": 0,
                    "next_at": j.next_at,
                    "created_at": now,
                    "bulk": j.bulk,
                }
                for j in jobs
            ],
        )
        count = int(result.rowcount or 0) if result.rowcount != -1 else len(jobs)
        self.enqueued += count
        return count

    def pending(self, after_id: int, limit: int, *, bulk: bool = False) -> list[Job]:
        """Pending outbox rows of one kind (bulk or not) after an id, oldest first."""
        result = self.conn.execute(
            select(outbox)
            .where(outbox.c.state == "pending", outbox.c.bulk == bulk, outbox.c.id > after_id)
            .order_by(outbox.c.id)
            .limit(limit)
        )
        return [job_record(row) for row in result]

    # -- leases (PostgreSQL, several processes) -------------------------------------------

    def lease_candidates(
        self,
        worker: str,
        limit: int,
        *,
        bulk: bool,
        now: float,
        skip_groups: Sequence[str] = (),
    ) -> list[Job]:
        """The first pending rows of one kind that this worker may take: held by no live
        process, in a lane no other live process holds a row of. `skip_groups`: accounts
        (first rate keys) whose rows are not wanted now."""
        held = outbox.alias("held")
        query = (
            select(outbox)
            .where(
                outbox.c.state == "pending",
                outbox.c.bulk == bulk,
                outbox.c.lease_until < now,
                ~exists().where(
                    held.c.lane == outbox.c.lane,
                    held.c.state == "pending",
                    held.c.id != outbox.c.id,
                    held.c.lease_until >= now,
                    held.c.owner != worker,
                ),
            )
            .order_by(outbox.c.id)
            .limit(limit)
        )
        if skip_groups:
            query = query.where(
                func.split_part(outbox.c.rate_keys, " ", 1).notin_(list(skip_groups))
            )
        return [job_record(row) for row in self.conn.execute(query)]

    def lease(self, worker: str, job_ids: Sequence[int], now: float, until: float) -> set[int]:
        """Take the lease of rows no live process holds, whose lane no other live process holds
        a row of; return the ids taken. A transaction-scoped advisory lock per lane keeps two
        processes from taking rows of one lane at the same moment."""
        if not job_ids:
            return set()
        result = self.conn.execute(
            text(
                "UPDATE outbox AS o SET owner = :worker, lease_until = :until"
                " WHERE o.id = ANY(:ids) AND o.state = 'pending' AND o.lease_until < :now"
                " AND NOT EXISTS (SELECT 1 FROM outbox AS h WHERE h.lane = o.lane"
                " AND h.state = 'pending' AND h.id <> o.id AND h.lease_until >= :now"
                " AND h.owner <> :worker)"
                " AND pg_try_advisory_xact_lock(hashtext(o.lane))"
                " RETURNING o.id"
            ).bindparams(bindparam("ids", type_=postgresql.ARRAY(BigInteger))),
            {"worker": worker, "until": until, "now": now, "ids": list(job_ids)},
        )
        return {int(row[0]) for row in result}

    def renew_leases(self, worker: str, until: float) -> int:
        """Extend the lease of every pending row this worker holds."""
        # Row locks taken in id order, the order the writer's `id IN (…)` updates take them
        # in, so that a renewal and a batch of claims or completions do not deadlock as easily.
        mine = (
            select(outbox.c.id)
            .where(outbox.c.owner == worker, outbox.c.state == "pending")
            .order_by(outbox.c.id)
            .with_for_update()
        )
        result = self.conn.execute(
            update(outbox).where(outbox.c.id.in_(mine.scalar_subquery())).values(lease_until=until)
        )
        return int(result.rowcount or 0)

    def release_leases(self, worker: str) -> None:
        """Give up every pending row this worker holds (another process may take them now)."""
        self.conn.execute(
            update(outbox)
            .where(outbox.c.owner == worker, outbox.c.state == "pending")
            .values(owner=None, lease_until=0.0)
        )

    def claim(self, job_ids: Sequence[int]) -> None:
        """Count an attempt before sending, so a restart knows what may have gone out."""
        if job_ids:
            self.conn.execute(
                update(outbox)
                .where(outbox.c.id.in_(list(job_ids)))
                .values(attempts=outbox.c.attempts + 1)
            )

    def unclaim(self, job_ids: Sequence[int]) -> None:
        """Take back a counted attempt: the row was not sent (a 429, a hold)."""
        if job_ids:
            self.conn.execute(
                update(outbox)
                .where(outbox.c.id.in_(list(job_ids)), outbox.c.attempts > 0)
                .values(attempts=outbox.c.attempts - 1)
            )

    def finish(self, job_ids: Sequence[int], now: float, error: str | None = None) -> None:
        """Mark rows done (or failed, with the reason)."""
        if job_ids and self.dialect == "sqlite":
            marks = ",".join("?" * len(job_ids))
            self.conn.exec_driver_sql(
                f"UPDATE outbox SET state = ?, done_at = ?, last_error = ? WHERE id IN ({marks})",
                ("failed" if error else "done", now, error, *job_ids),
            )
        elif job_ids:
            self.conn.execute(
                update(outbox)
                .where(outbox.c.id.in_(list(job_ids)))
                .values(state="failed" if error else "done", done_at=now, last_error=error)
            )

    def reschedule(self, job_id: int, next_at: float, error: str) -> None:
        """Try a row again later."""
        self.conn.execute(
            update(outbox).where(outbox.c.id == job_id).values(next_at=next_at, last_error=error)
        )

    def outbox_counts(self) -> dict[str, int]:
        """Rows per state."""
        result = self.conn.execute(select(outbox.c.state, func.count()).group_by(outbox.c.state))
        return {row[0]: int(row[1]) for row in result}

    def outbox_pending(self) -> int:
        """Rows still to send: read from the index on state, never from the done rows."""
        query = select(func.count()).select_from(outbox).where(outbox.c.state == "pending")
        return int(self.conn.execute(query).scalar_one())
