"""Keeping less: finished outbox rows lose their payloads (the messages they carried)."""

from __future__ import annotations

from sqlalchemy import Text, cast, select, update
from sqlalchemy.engine import Connection

from storage.tables import outbox

EMPTY = "{}"


def empty_done_payloads(
    conn: Connection, before: float, after_id: int, limit: int
) -> tuple[int, int] | None:
    """Empty the payloads of up to `limit` rows done before `before`, in id order from above
    `after_id`; returns the last id emptied and how many (None: none are left)."""
    ids = list(
        conn.execute(
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
    conn.execute(update(outbox).where(outbox.c.id.in_(ids)).values(payload={}))
    return int(ids[-1]), len(ids)
