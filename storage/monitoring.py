"""Figures for monitoring that are read from the database when they are asked for."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select

from storage.records import Repository
from storage.tables import outbox


@dataclass(frozen=True, slots=True)
class Backlog:
    """Pending outbox rows of one kind and stream, and when the oldest of them was queued."""

    kind: str
    bulk: bool
    pending: int
    oldest_created_at: float  # epoch seconds


class Monitoring(Repository):
    """Figures for monitoring, read when they are asked for."""

    def outbox_backlog(self) -> list[Backlog]:
        """Pending outbox rows per kind and stream (bulk or not), in one GROUP BY."""
        # Finished rows stay in the table; the (state, bulk, id) index keeps them out of the scan.
        result = self.conn.execute(
            select(outbox.c.kind, outbox.c.bulk, func.count(), func.min(outbox.c.created_at))
            .where(outbox.c.state == "pending")
            .group_by(outbox.c.kind, outbox.c.bulk)
            .order_by(outbox.c.kind, outbox.c.bulk)
        )
        return [Backlog(str(k), bool(b), int(n), float(oldest)) for k, b, n, oldest in result]
