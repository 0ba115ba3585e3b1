"""With PostgreSQL, one process at a time runs the polling loops: the others wait, and one of
them takes over within seconds when the leader goes away, even without saying goodbye."""

from __future__ import annotations

import asyncio
import itertools

import asyncpg

from bridge.leader import Leadership
from storage.db import asyncpg_dsn
from tests.harness import eventually

_names = itertools.count()


class Loops:
    """What a process runs as leader: a record of starts and stops."""

    def __init__(self) -> None:
        self.events: list[str] = []

    async def lead(self) -> None:
        self.events.append("lead")

    async def follow(self) -> None:
        self.events.append("follow")


async def test_one_process_leads_and_another_takes_over_when_it_stops(pg_cluster):
    url = str(pg_cluster.create_database(f"lead{next(_names)}"))
    a_loops, b_loops = Loops(), Loops()
    a = Leadership(url, a_loops.lead, a_loops.follow, interval=0.2)
    b = Leadership(url, b_loops.lead, b_loops.follow, interval=0.2)
    await a.start()
    await eventually(lambda: a.leading, message="the first process leading")
    await b.start()
    try:
        await asyncio.sleep(1.0)  # b keeps asking and keeps being told no
        assert not b.leading and b_loops.events == []
        await a.stop()
        assert a_loops.events == ["lead", "follow"]
        await eventually(lambda: b.leading, timeout=5, message="the second process taking over")
        assert b_loops.events == ["lead"]
    finally:
        await b.stop()
        await a.stop()
    assert b_loops.events == ["lead", "follow"]


async def test_a_leader_whose_connection_is_killed_stops_its_loops_and_is_replaced(pg_cluster):
    url = str(pg_cluster.create_database(f"lead{next(_names)}"))
    a_loops, b_loops = Loops(), Loops()
    a = Leadership(url, a_loops.lead, a_loops.follow, interval=0.2)
    b = Leadership(url, b_loops.lead, b_loops.follow, interval=0.2)
    await a.start()
    await eventually(lambda: a.leading, message="the first process leading")
    await b.start()
    admin = await asyncpg.connect(asyncpg_dsn(url))
    try:
        # The leader's session disappears (its process died, or the network dropped it).
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_locks"
            " WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid()"
        )
        await eventually(lambda: "follow" in a_loops.events, message="the old leader stepping down")
        # One of them leads again (whichever asked first), never both.
        await eventually(lambda: a.leading or b.leading, timeout=5, message="a new leader")
        assert not (a.leading and b.leading)
    finally:
        await admin.close()
        await a.stop()
        await b.stop()
