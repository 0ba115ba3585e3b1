"""Finished outbox rows carried whole messages (texts, chat ids, names) and kept them for ever.
The payload of a row done for longer than `[outbox] keep_payload_days` is emptied; recent
and pending rows keep theirs (they are still to be sent, or may still be looked at)."""

from __future__ import annotations

import json

from sqlalchemy import insert, select

from bridge.app import RETENTION
from bridge.config import Settings
from bridge.retention import PayloadRetention
from storage.models import OutboxRow
from tests.world import start_world, stop_world

NOW = 1_900_000_000.0
DAY = 86_400.0
PAYLOAD = {"chat": "4915177452290", "text": "my address is Ottilienweg 917"}


async def a_row(db, key: str, state: str, done_days_ago: float | None) -> None:
    done_at = None if done_days_ago is None else NOW - done_days_ago * DAY

    def write(conn) -> None:
        conn.execute(
            insert(OutboxRow).values(
                kind="customer.send",
                idem_key=key,
                lane=f"lane-{key}",
                rate_keys="",
                payload=PAYLOAD,
                state=state,
                attempts=1,
                next_at=0.0,
                created_at=(done_at or NOW) - 5,
                done_at=done_at,
            )
        )

    await db.run_write(write)


async def payloads(db) -> dict[str, dict]:
    def read(conn) -> dict[str, dict]:
        rows = conn.execute(select(OutboxRow.idem_key, OutboxRow.payload))
        return {k: p if isinstance(p, dict) else json.loads(p) for k, p in rows}

    return await db.run_read(read)


async def test_done_rows_older_than_the_setting_lose_their_payload(database):
    await a_row(database, "old", "done", 8)
    await a_row(database, "ancient", "done", 400)
    await a_row(database, "recent", "done", 6)
    await a_row(database, "pending", "pending", None)

    emptied = await PayloadRetention(database, keep_days=7, clock=lambda: NOW).sweep()

    assert emptied == 2
    assert await payloads(database) == {
        "old": {},
        "ancient": {},
        "recent": PAYLOAD,
        "pending": PAYLOAD,
    }
    # A second sweep finds nothing more to do.
    assert await PayloadRetention(database, keep_days=7, clock=lambda: NOW).sweep() == 0


def test_payloads_are_kept_a_week_unless_set_otherwise():
    assert Settings().outbox.keep_payload_days == 7
    assert (
        Settings.model_validate({"outbox": {"keep_payload_days": 1}}).outbox.keep_payload_days == 1
    )


async def test_the_running_bridge_sweeps_with_the_setting(tmp_path):
    world = await start_world(tmp_path, sections={"outbox": {"keep_payload_days": 2}})
    try:
        assert world.bridge.app[RETENTION].keep_days == 2
    finally:
        await stop_world(world)
