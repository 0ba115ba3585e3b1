"""The blacklist through the API, with `/blacklist`'s rules: a manager blocks (permanently, for
a while or until a time) and unblocks; the contact's thread is told; an agent reads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.api_kit import Api, make_key
from tests.commands_kit import MANAGER, command
from tests.harness import eventually

ANNA, BORIS = 7270001, 7270002


@pytest.fixture
async def api(world):
    assert (await command(world, f"user role {MANAGER} manager")).ok
    return Api(world)


@pytest.fixture
async def keys(world):
    return {
        "agent": await make_key(world, "reader", "agent"),
        "manager": await make_key(world, "editor", "manager"),
    }


async def contacts(world) -> tuple[int, int]:
    await world.says(ANNA, "Hello", first_name="Anna")
    await world.says(BORIS, "Hi", first_name="Boris")
    await world.thread_of(ANNA)
    await world.thread_of(BORIS)
    rows = dict(await world.sql("select chat_id, id from contacts"))
    return int(rows[str(ANNA)]), int(rows[str(BORIS)])


async def test_block_list_and_unblock(world, api, keys):
    anna, boris = await contacts(world)
    body = {"contact_id": anna, "direction": "out", "duration": "7d", "reason": "spam links"}
    assert (await api.post("/blacklist", key=keys["agent"], body=body)).status == 403
    blocked = await api.post("/blacklist", key=keys["manager"], body=body)
    assert blocked.status == 201
    entry = blocked.body
    assert entry["contact_id"] == anna and entry["direction"] == "out"
    assert entry["reason"] == "spam links" and entry["created_by"] == "editor (API)"
    until = datetime.fromisoformat(entry["until"])
    assert timedelta(days=6, hours=23) < until - datetime.now(UTC) <= timedelta(days=7)
    root = await world.thread_of(ANNA)
    await eventually(
        lambda: any("blocked outbound" in t and "editor (API)" in t for t in world.texts(root)),
        message="the notice in the thread",
    )
    forever = await api.post("/blacklist", key=keys["manager"], body={"contact_id": boris})
    assert forever.body["direction"] == "both" and forever.body["until"] is None
    listed = await api.get("/blacklist?limit=1", key=keys["agent"])
    assert [e["contact_id"] for e in listed.body["items"]] == [anna]
    rest = await api.get(listed.body["next"].removeprefix("/api/v1"), key=keys["agent"])
    assert [e["contact_id"] for e in rest.body["items"]] == [boris]
    assert "2 blocked contacts" in (await command(world, "blacklist list")).title
    assert (await api.delete(f"/blacklist/{anna}", key=keys["agent"])).status == 403
    lifted = await api.delete(f"/blacklist/{anna}", key=keys["manager"])
    assert lifted.status == 204
    again = await api.delete(f"/blacklist/{anna}", key=keys["manager"])
    assert again.status == 404 and "not on the blacklist" in again.error["message"]
    listed = await api.get("/blacklist", key=keys["agent"])
    assert [e["contact_id"] for e in listed.body["items"]] == [boris]


async def test_until_is_a_moment_in_the_next_ten_years(world, api, keys):
    anna, _ = await contacts(world)
    soon = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0)
    ok = await api.post(
        "/blacklist",
        key=keys["manager"],
        body={"contact_id": anna, "until": soon.isoformat().replace("+00:00", "Z")},
    )
    assert ok.status == 201 and datetime.fromisoformat(ok.body["until"]) == soon
    for until, field in (
        ("2001-01-01T00:00:00Z", "until"),
        ("2999-01-01T00:00:00Z", "until"),
        ("next week", "until"),
    ):
        answer = await api.post(
            "/blacklist", key=keys["manager"], body={"contact_id": anna, "until": until}
        )
        assert answer.status == 422 and answer.error["field"] == field, answer.body


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"contact_id": 999999}, 404, None),
        ({"direction": "out"}, 422, "contact_id"),
        ({"contact_id": 1, "direction": "sideways"}, 422, "direction"),
        ({"contact_id": 1, "duration": "7 days"}, 422, "duration"),
        ({"contact_id": 1, "duration": "0d"}, 422, "duration"),
        ({"contact_id": 1, "duration": "7d", "until": "2030-01-01T00:00:00Z"}, 422, "body"),
        ({"contact_id": 1, "reason": "x" * 501}, 422, "reason"),
        # Offsets that would move the time off the calendar, and ids no database keeps.
        ({"contact_id": 1, "until": "9999-12-31T23:59:59-23:59"}, 422, "until"),
        ({"contact_id": 1, "until": "0001-01-01T00:00:00+23:59"}, 422, "until"),
        ({"contact_id": 1, "until": 1900000000}, 422, "until"),
        ({"contact_id": 2**63}, 422, "contact_id"),
        ({"contact_id": "1"}, 422, "contact_id"),
    ],
)
async def test_bad_blocks_are_refused(world, api, keys, body, status, field):
    await contacts(world)
    answer = await api.post("/blacklist", key=keys["manager"], body=body)
    assert answer.status == status, answer.body
    assert answer.error.get("field") == field
    assert await world.sql("select count(*) from blacklist") == [(0,)]
