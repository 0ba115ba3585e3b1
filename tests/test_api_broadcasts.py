"""Broadcasts through the API, as `/broadcast` does them: a draft with its audience and who is
skipped, confirmed once (a repeat with the same Idempotency-Key sends nothing more), the
figures of `/broadcast status`, scheduling, cancel, pause and resume, and the refusals."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from tests.api_kit import Api, make_key
from tests.broadcast_kit import newsletters, subscribers
from tests.commands_kit import MANAGER, command
from tests.harness import eventually


@pytest.fixture
async def api(world):
    assert (await command(world, f"user role {MANAGER} manager")).ok
    assert (await command(world, "channel create news --join JOIN-NEWS --leave LEAVE-NEWS")).ok
    return Api(world)


@pytest.fixture
async def keys(world):
    return {
        "agent": await make_key(world, "reader", "agent"),
        "manager": await make_key(world, "editor", "manager"),
    }


async def channel_id(world) -> int:
    [(found,)] = await world.sql("select id from channels where name = 'news'")
    return int(found)


async def test_created_and_confirmed_it_reaches_each_subscriber_once(world, api, keys):
    chats = await subscribers(world, 6)
    [(blocked,)] = await world.sql(f"select id from contacts where chat_id = '{chats[0]}'")
    assert (await command(world, f"blacklist add #{blocked} out", user=MANAGER)).ok
    news = await channel_id(world)
    body = {"channel_ids": [news], "text": "Sale for you, {FIRSTNAME}!"}
    assert (await api.post("/broadcasts", key=keys["agent"], body=body)).status == 403
    created = await api.post("/broadcasts", key=keys["manager"], body=body)
    assert created.status == 201, created.body
    draft = created.body
    assert draft["recipients"] == 5
    assert draft["audience"] == [
        {"platform": "telegram", "recipients": 5, "skipped": {"blacklisted": 1}}
    ]
    assert draft["sample"] == "Sale for you, Anna!"
    assert draft["publish_problems"] == []
    b = draft["broadcast"]
    assert b["state"] == "draft" and b["channel_ids"] == [news] and b["queued"] == 0
    assert b["created_by"] == "editor (API)" and "nothing is sent" in b["summary"]
    await asyncio.sleep(0.3)
    assert sum(len(newsletters(world, c)) for c in chats) == 0  # nothing before confirm
    confirm = f"/broadcasts/{b['id']}/confirm"
    key = {"Idempotency-Key": "newsletter-2026-12"}
    assert (await api.post(confirm, key=keys["agent"], headers=key)).status == 403
    started = await api.post(confirm, key=keys["manager"], headers=key)
    assert started.status == 202, started.body
    assert started.body["state"] == "scheduled" and started.body["id"] == b["id"]
    await eventually(
        lambda: all(newsletters(world, c) for c in chats[1:]), timeout=20, message="newsletters"
    )
    for chat in chats[1:]:
        assert newsletters(world, chat) == [f"Sale for you, Reader{chat % 1000}!"]
    assert newsletters(world, chats[0]) == []
    # The same request again: the first answer, and nobody gets anything more.
    repeated = await api.post(confirm, key=keys["manager"], headers=key)
    assert repeated.status == 202 and repeated.body == started.body
    assert repeated.headers.get("Idempotent-Replayed") == "true"
    other = await api.post(
        confirm, key=keys["manager"], headers=key, body={"scheduled_at": "2099-01-01T00:00:00Z"}
    )
    assert other.status == 422 and other.error["code"] == "idempotency_key_reused"
    fresh = await api.post(confirm, key=keys["manager"], headers={"Idempotency-Key": "other"})
    assert fresh.status == 409 and "only a prepared one starts" in fresh.error["message"]
    assert (await api.post(confirm, key=keys["manager"])).status == 409

    async def done():
        shown = await api.get(f"/broadcasts/{b['id']}", key=keys["agent"])
        return shown.body["state"] == "done" and shown.body

    status = await eventually(done, timeout=20, message="the broadcast done")
    # The blacklisted member is queued and skipped when its turn comes (checked at send time).
    assert status["counts"] == {"telegram": {"sent": 5, "skipped": 1}}
    assert status["totals"] == {"sent": 5, "skipped": 1}
    assert status["queued"] == 6 and status["waiting"] == 0
    assert status["summary"].startswith(f"Broadcast #{b['id']} is done")
    assert "5 of 6 delivered to the platforms; 0 failed, 1 skipped" in status["summary"]
    said = await command(world, f"broadcast status {b['id']}")
    assert said.title == status["summary"].split("\n")[0]
    await asyncio.sleep(0.5)
    assert all(len(newsletters(world, c)) == 1 for c in chats[1:])
    listed = await api.get("/broadcasts", key=keys["agent"])
    [line] = listed.body["items"]
    assert line["id"] == b["id"] and line["state"] == "done" and line["handled"] == 6


async def test_links_become_short_links_whose_clicks_count(world, api, keys):
    await subscribers(world, 2)
    body = {"channel_ids": [await channel_id(world)], "text": "Sale: https://shop.example.org/a"}
    created = await api.post("/broadcasts", key=keys["manager"], body=body)
    text = created.body["broadcast"]["text"]
    assert "/s/" in text and "shop.example.org" not in text
    short = await api.get("/links", key=keys["agent"])
    [link] = short.body["items"]
    assert link["broadcast_id"] == created.body["broadcast"]["id"]
    assert link["url"] == "https://shop.example.org/a"


async def test_a_scheduled_broadcast_waits_and_can_be_cancelled(world, api, keys):
    chats = await subscribers(world, 3)
    body = {"channel_ids": [await channel_id(world)], "text": "Sale later"}
    created = await api.post("/broadcasts", key=keys["manager"], body=body)
    number = created.body["broadcast"]["id"]
    at = (datetime.now(UTC) + timedelta(hours=2)).replace(microsecond=0)
    confirmed = await api.post(
        f"/broadcasts/{number}/confirm",
        key=keys["manager"],
        body={"scheduled_at": at.isoformat()},
    )
    assert confirmed.status == 202, confirmed.body
    assert confirmed.body["state"] == "scheduled"
    assert confirmed.body["scheduled_at"].startswith(at.strftime("%Y-%m-%dT%H:%M:%S"))
    assert "is scheduled for" in confirmed.body["summary"]
    paused = await api.post(f"/broadcasts/{number}/pause", key=keys["manager"])
    assert paused.status == 200 and paused.body["state"] == "paused"
    assert (await api.post(f"/broadcasts/{number}/pause", key=keys["manager"])).status == 409
    resumed = await api.post(f"/broadcasts/{number}/resume", key=keys["manager"])
    assert resumed.status == 200 and resumed.body["state"] == "running"
    assert (await api.post(f"/broadcasts/{number}/cancel", key=keys["agent"])).status == 403
    cancelled = await api.post(f"/broadcasts/{number}/cancel", key=keys["manager"])
    assert cancelled.status == 200 and cancelled.body["state"] == "cancelled"
    again = await api.post(f"/broadcasts/{number}/cancel", key=keys["manager"])
    assert again.status == 409 and again.error["message"] == f"broadcast #{number} is cancelled"
    await asyncio.sleep(0.5)
    assert sum(len(newsletters(world, c)) for c in chats) == 0


async def test_cancel_halfway_stops_what_is_not_sent(world, api, keys):
    chats = await subscribers(world, 12)
    world.tg.set_rate_limits(None, 4)  # the platform slows down: about 4 messages a second
    body = {"channel_ids": [await channel_id(world)], "text": "Sale now"}
    number = (await api.post("/broadcasts", key=keys["manager"], body=body)).body["broadcast"]["id"]
    assert (await api.post(f"/broadcasts/{number}/confirm", key=keys["manager"])).status == 202
    await eventually(
        lambda: sum(len(newsletters(world, c)) for c in chats) >= 2, timeout=20, message="a few"
    )
    cancelled = await api.post(f"/broadcasts/{number}/cancel", key=keys["manager"])
    assert cancelled.status == 200 and cancelled.body["state"] == "cancelled"
    await asyncio.sleep(1.5)
    sent = sum(len(newsletters(world, c)) for c in chats)
    assert 2 <= sent < 12
    await asyncio.sleep(1.5)
    assert sum(len(newsletters(world, c)) for c in chats) == sent
    shown = await api.get(f"/broadcasts/{number}", key=keys["agent"])
    assert shown.body["summary"].startswith(f"Broadcast #{number} was cancelled")


@pytest.mark.parametrize(
    ("body", "field", "status"),
    [
        ({"text": "Hello"}, "channel_ids", 422),
        ({"channel_ids": [999], "text": "Hello"}, "channel_ids", 422),
        ({"platforms": ["telegram"]}, "text", 422),
        ({"platforms": ["fax"], "text": "Hello"}, "platforms.0", 422),
        ({"platforms": ["telegram"], "text": "Hello {VORNAME}"}, "text", 422),
        (
            {"platforms": ["telegram"], "text": "Hi", "scheduled_at": "2020-01-01T00:00:00Z"},
            "scheduled_at",
            422,
        ),
        (
            {"platforms": ["telegram"], "text": "Hi", "scheduled_at": "9999-12-31T23:59:59-23:59"},
            "scheduled_at",
            422,
        ),
        ({"platforms": ["telegram"], "text": "Hi", "publish": ["x"]}, None, 422),
        ({"platforms": ["whatsapp"], "template": {"name": "Order Update"}}, "template.name", 422),
        ({"platforms": ["telegram"], "text": "Hi", "audience": "all"}, "audience", 422),
    ],
)
async def test_what_cannot_go_is_refused_and_nothing_is_kept(world, api, keys, body, field, status):
    answer = await api.post("/broadcasts", key=keys["manager"], body=body)
    assert answer.status == status, answer.body
    assert answer.error.get("field") == field
    assert await world.sql("select count(*) from broadcasts") == [(0,)]


async def test_whatsapp_without_a_template_is_skipped_with_the_reason(world, api, keys):
    await subscribers(world, 1)
    body = {"platforms": ["telegram", "whatsapp"], "text": "Hello {NAME}"}
    created = await api.post("/broadcasts", key=keys["manager"], body=body)
    assert created.status == 201
    assert created.body["audience"] == [{"platform": "telegram", "recipients": 1, "skipped": {}}]
    preview = await api.get(
        f"/broadcasts/{created.body['broadcast']['id']}/preview", key=keys["agent"]
    )
    assert preview.body["recipients"] == 1
    template = {
        "platforms": ["whatsapp"],
        "template": {"name": "order_update", "language": "en-us", "params": ["{FIRSTNAME}"]},
    }
    with_template = await api.post("/broadcasts", key=keys["manager"], body=template)
    assert with_template.status == 201, with_template.body
    assert with_template.body["broadcast"]["template"] == {
        "name": "order_update",
        "language": "en_US",
        "params": ["{FIRSTNAME}"],
    }
    assert with_template.body["broadcast"]["text"] == "[template order_update] {FIRSTNAME}"


async def test_broadcasts_come_in_pages_and_unknown_ones_are_404(world, api, keys):
    for n in range(3):
        body = {"platforms": ["telegram"], "text": f"Number {n}"}
        assert (await api.post("/broadcasts", key=keys["manager"], body=body)).status == 201
    first = await api.get("/broadcasts?limit=2", key=keys["agent"])
    second = await api.get(first.body["next"].removeprefix("/api/v1"), key=keys["agent"])
    assert [b["text"] for b in first.body["items"] + second.body["items"]] == [
        "Number 0",
        "Number 1",
        "Number 2",
    ]
    for path in ("/broadcasts/999", "/broadcasts/999/preview"):
        assert (await api.get(path, key=keys["agent"])).status == 404
    for action in ("confirm", "cancel", "pause", "resume"):
        assert (await api.post(f"/broadcasts/999/{action}", key=keys["manager"])).status == 404
