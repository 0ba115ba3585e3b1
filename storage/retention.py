"""Keeping less: finished outbox rows lose their payloads (the messages they carried)."""

from __future__ import annotations

from sqlalchemy import Text, cast, select, update

from storage.records import Repository
from storage.tables import outbox

EMPTY = "{}"


class Retention(Repository):
    """Keeping less of what is finished."""

    def empty_done_payloads(
        self, before: float, after_id: int, limit: int
    ) -> tuple[int, int] | None:
        """Empty the payloads of up to `limit` rows done before `before`, in id order from above
        `after_id`; returns the last id emptied and how many (None: none are left)."""
        ids = list(
            self.conn.execute(
                select(outbox.c.id)
                .where(
                    outbox.c.state == "done",
                    outbox.c.id > after_id,
                    outbox.c.done_at < before,
                    cast(outbox.c.payload, Text) != EMPTY,
                )
                .order_by(outbox.c.id)
                .limit(limit)
            ).scalars()
        )
        if not ids:
            return None
        self.conn.execute(update(outbox).where(outbox.c.id.in_(ids)).values(payload={}))
        return int(ids[-1]), len(ids)
