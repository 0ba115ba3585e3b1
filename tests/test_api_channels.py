"""Channels and memberships through the API, with `/channel`'s checks and consent rules: a
manager creates and deletes channels and adds members by hand with their consent; an agent
reads; customers who joined by keyword are members like any other."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bridge.types import ContactId
from tests.api_kit import Api, make_key
from tests.commands_kit import MANAGER, command, services_of
from tests.harness import eventually

ANNA, BORIS = 6260001, 6260002


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


async def contact_of(world, chat: int) -> int:
    [(contact_id,)] = await world.sql(f"select id from contacts where chat_id = '{chat}'")
    return int(contact_id)


async def test_create_show_list_and_delete(world, api, keys):
    assert (await api.get("/channels", key=keys["agent"])).body["items"] == []
    body = {"name": "news", "join_keyword": "JOIN-NEWS", "leave_keyword": "LEAVE-NEWS"}
    assert (await api.post("/channels", key=keys["agent"], body=body)).status == 403
    created = await api.post("/channels", key=keys["manager"], body=body)
    assert created.status == 201
    channel = created.body
    assert channel["name"] == "news" and channel["join_keyword"] == "JOIN-NEWS"
    assert channel["created_by"] == "editor (API)" and channel["member_count"] == 0
    shown = await api.get(f"/channels/{channel['id']}", key=keys["agent"])
    assert shown.body == channel
    listed = await command(world, "channel list")
    assert "news" in listed.text and "JOIN-NEWS" in listed.text
    # The pipeline knows the keyword at once: a customer joins with it.
    await world.says(ANNA, "JOIN-NEWS", first_name="Anna")
    await eventually(lambda: world.tg.messages_to(ANNA), message="the confirmation")
    counted = await api.get(f"/channels/{channel['id']}", key=keys["agent"])
    assert counted.body["members"] == {"telegram": 1} and counted.body["member_count"] == 1
    gone = await api.delete(f"/channels/{channel['id']}", key=keys["manager"])
    assert gone.status == 200 and gone.body == {
        "id": channel["id"],
        "name": "news",
        "members_dropped": 1,
    }
    assert (await api.get(f"/channels/{channel['id']}", key=keys["agent"])).status == 404
    assert (await api.delete(f"/channels/{channel['id']}", key=keys["manager"])).status == 404


async def test_pages_of_channels(world, api, keys):
    for name in ("alpha", "beta", "gamma"):
        assert (await api.post("/channels", key=keys["manager"], body={"name": name})).status == 201
    first = await api.get("/channels?limit=2", key=keys["agent"])
    second = await api.get(first.body["next"].removeprefix("/api/v1"), key=keys["agent"])
    assert [c["name"] for c in first.body["items"] + second.body["items"]] == [
        "alpha",
        "beta",
        "gamma",
    ]
    assert second.body["next"] is None


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"name": "two words"}, 422, "name"),
        ({"name": ""}, 422, "name"),
        ({"name": "news", "platform": "fax"}, 422, "platform"),
        ({"name": "news", "join_keyword": "SAME", "leave_keyword": "same"}, 422, "leave_keyword"),
        ({"name": "news", "join_keyword": " JOIN"}, 422, "join_keyword"),
        ({"name": "news", "join_keyword": "STOP"}, 422, None),
        ({"name": "news", "members": []}, 422, "members"),
    ],
)
async def test_bad_channels_are_refused_and_change_nothing(world, api, keys, body, status, field):
    answer = await api.post("/channels", key=keys["manager"], body=body)
    assert answer.status == status, answer.body
    assert answer.error.get("field") == field
    assert await world.sql("select count(*) from channels") == [(0,)]


async def test_names_and_keywords_in_use_are_409(world, api, keys):
    body = {"name": "news", "join_keyword": "JOIN-NEWS"}
    assert (await api.post("/channels", key=keys["manager"], body=body)).status == 201
    twice = await api.post("/channels", key=keys["manager"], body=body)
    assert twice.status == 409 and twice.error["code"] == "conflict"
    taken = {"name": "offers", "leave_keyword": "join-news"}
    clash = await api.post("/channels", key=keys["manager"], body=taken)
    assert clash.status == 409 and "leave" not in clash.error["message"]
    assert clash.error["message"] == "join-news is the join keyword of channel news already."
    assert await world.sql("select name from channels") == [("news",)]


async def test_members_by_hand_need_consent_and_respect_opt_outs(world, api, keys):
    await world.says(ANNA, "Hello", first_name="Anna")
    await world.says(BORIS, "Hi", first_name="Boris")
    await world.thread_of(ANNA)
    await world.thread_of(BORIS)
    anna, boris = await contact_of(world, ANNA), await contact_of(world, BORIS)
    created = await api.post("/channels", key=keys["manager"], body={"name": "news"})
    members = f"/channels/{created.body['id']}/members"
    missing = await api.post(members, key=keys["manager"], body={"contact_id": anna})
    assert missing.status == 422 and missing.error["field"] == "consent"
    blank = await api.post(members, key=keys["manager"], body={"contact_id": anna, "consent": " "})
    assert blank.status == 422 and blank.error["field"] == "consent"
    consent = {"contact_id": anna, "consent": "asked for it by phone"}
    assert (await api.post(members, key=keys["agent"], body=consent)).status == 403
    added = await api.post(members, key=keys["manager"], body=consent)
    assert added.status == 201
    assert added.body["contact_id"] == anna
    assert added.body["source"] == "by hand (editor (API)): asked for it by phone"
    again = await api.post(members, key=keys["manager"], body=consent)
    assert again.status == 200 and again.body == added.body
    now = datetime.now(UTC)
    await services_of(world).write(lambda tx: tx.set_opt_out(ContactId(boris), now, "STOP"))
    refused = await api.post(
        members, key=keys["manager"], body={"contact_id": boris, "consent": "at the counter"}
    )
    assert refused.status == 422 and "opted out" in refused.error["message"]
    nobody = await api.post(
        members, key=keys["manager"], body={"contact_id": 999999, "consent": "yes"}
    )
    assert nobody.status == 404
    listed = await api.get(members, key=keys["agent"])
    assert [m["contact_id"] for m in listed.body["items"]] == [anna]
    assert (await api.delete(f"{members}/{anna}", key=keys["agent"])).status == 403
    removed = await api.delete(f"{members}/{anna}", key=keys["manager"])
    assert removed.status == 204 and removed.body is None
    assert (await api.delete(f"{members}/{anna}", key=keys["manager"])).status == 404
    assert (await api.get(members, key=keys["agent"])).body["items"] == []
    shown = await command(world, f"contact show #{anna}")
    assert "left" in dict(shown.fields)["Channels"]


async def test_members_come_in_pages(world, api, keys):
    created = await api.post(
        "/channels", key=keys["manager"], body={"name": "news", "join_keyword": "JOIN-NEWS"}
    )
    chats = [6260100 + i for i in range(5)]
    for chat in chats:
        await world.says(chat, "JOIN-NEWS", first_name=f"Customer{chat}")
    await eventually(
        lambda: all(world.tg.messages_to(chat) for chat in chats), message="confirmations"
    )
    path, seen = f"/channels/{created.body['id']}/members?limit=2", []
    while path:
        page = await api.get(path, key=keys["agent"])
        assert len(page.body["items"]) <= 2
        seen += [m["contact_id"] for m in page.body["items"]]
        path = page.body["next"] and page.body["next"].removeprefix("/api/v1")
    ids = sorted([await contact_of(world, chat) for chat in chats])
    assert seen == ids
    assert (await api.get("/channels/999999/members", key=keys["agent"])).status == 404
