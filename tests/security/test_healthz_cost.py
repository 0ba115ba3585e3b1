"""/healthz is open to anyone who reaches the listener: one call must not cost a scan of the
whole outbox (which keeps every row ever sent), only a look at what is still pending."""

from __future__ import annotations

import json

import aiohttp
import pytest
from sqlalchemy import event

from tests.world import start_world, stop_world


@pytest.fixture
async def world(tmp_path):
    w = await start_world(tmp_path)
    yield w
    await stop_world(w)


async def health(world) -> dict[str, object]:
    async with aiohttp.ClientSession() as http:
        async with http.get(world.bridge.url + "/healthz") as r:
            assert r.status == 200
            return json.loads(await r.text())


async def test_healthz_still_shows_the_pending_outbox(world):
    await world.customer(world.tg.text_update(111, "Hello"))
    await world.thread_of(111)
    count = "select count(*) from outbox where state = 'pending'"
    before = (await world.sql(count))[0][0]
    body = await health(world)
    after = (await world.sql(count))[0][0]
    assert body["status"] == "ok" and body["database"] is True
    assert body["connectors"] == ["telegram:123456"] and body["surfaces"] == ["slack"]
    # Nothing new arrives, so the dispatcher only empties the outbox meanwhile.
    assert after <= body["outbox"]["pending"] <= before


async def test_healthz_reads_only_pending_outbox_rows(world):
    await world.customer(world.tg.text_update(111, "Hello"))
    await world.thread_of(111)
    statements: list[tuple[str, object]] = []

    def seen(conn, cursor, statement, parameters, context, executemany):
        if "outbox" in statement:
            statements.append((statement, parameters))

    engine = world.bridge.db.read_engine.sync_engine
    event.listen(engine, "before_cursor_execute", seen)
    try:
        await health(world)
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert statements, "healthz no longer reads the outbox"
    for statement, parameters in statements:
        async with world.bridge.db.read() as conn:
            rows = await conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)
            plan = [str(row[-1]) for row in rows]
        scans = [line for line in plan if line.startswith("SCAN") and "pending" not in line]
        assert scans == [], (statement, plan)
