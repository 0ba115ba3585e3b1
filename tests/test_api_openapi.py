"""The OpenAPI document is valid OpenAPI 3.1, documents every route the API serves (and
nothing else), and every operation's real answers fit the schemas it gives."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from aiohttp import web
from openapi_spec_validator import validate

from bridge.app import API
from tests.api_kit import PREFIX, Api, make_key
from tests.commands_kit import command
from tests.harness import eventually

ANNA = 8280001


@pytest.fixture
async def api(world):
    return Api(world)


def served_routes(world) -> set[tuple[str, str]]:
    """(method, path below the prefix) of every route of the API's sub-application."""
    [subapp] = [
        r for r in world.bridge.app.router.resources() if isinstance(r, web.PrefixedSubAppResource)
    ]
    found = set()
    for route in subapp:
        path = route.resource.canonical.removeprefix(PREFIX)
        found.add((route.method, path))
    return found


async def test_the_document_is_valid_openapi_3_1_and_needs_no_key(world, api):
    answer = await api.raw("GET", "/openapi.json")
    assert answer.status == 200
    document = answer.body
    assert document["openapi"].startswith("3.1")
    validate(document)
    assert document["servers"] == [{"url": PREFIX}]
    assert document["paths"]["/openapi.json"]["get"]["security"] == []


async def test_every_route_is_documented_and_every_operation_routed(world, api):
    document = await api.document()
    documented = {
        (method.upper(), path) for path, item in document["paths"].items() for method in item
    }
    assert served_routes(world) == documented
    operations = world.bridge.app[API].operations
    assert {(op.method, op.path) for op in operations} == documented
    ids = [op["operationId"] for item in document["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))
    for path, item in document["paths"].items():
        for method, op in item.items():
            assert op["summary"], (method, path)
            assert "default" in op["responses"]
            if op.get("security") != []:
                assert "401" in op["responses"], (method, path)


async def test_roles_and_idempotency_are_documented(world, api):
    document = await api.document()
    send = document["paths"]["/contacts/{contact_id}/messages"]["post"]
    assert "agent role" in send["description"]
    assert any(p["name"] == "Idempotency-Key" and p["in"] == "header" for p in send["parameters"])
    forget = document["paths"]["/contacts/{contact_id}"]["delete"]
    assert "admin role" in forget["description"] and "403" in forget["responses"]
    listed = document["paths"]["/contacts"]["get"]
    limit = next(p for p in listed["parameters"] if p["name"] == "limit")
    assert limit["schema"]["maximum"] == 500 and limit["schema"]["default"] == 50


async def test_a_wrong_answer_would_not_fit(world, api):
    """The check is strict: a record with a field missing or of the wrong type fails it."""
    document = await api.document()
    from tests.api_kit import _check

    schema = {"$ref": "#/components/schemas/ContactSummary"}
    good = {
        "id": 1,
        "platform": "telegram",
        "account": "1",
        "chat_id": "5",
        "display_name": "A",
        "username": None,
        "last_seen": None,
    }
    _check(document, schema, good)
    for bad in ({**good, "id": "1"}, {k: v for k, v in good.items() if k != "username"}):
        with pytest.raises(AssertionError):
            _check(document, schema, bad)


@pytest.fixture
def allow_private():
    """The webhook below goes to a loopback port nobody listens on; the guard lets it be."""
    return ["127.0.0.1:9"]


async def test_every_operation_answers_what_its_document_says(allow_private, world, api):
    """One call to every operation (each validated by the client); none is left out."""
    from tests.api_kit import CHECKED

    CHECKED.seen.clear()
    admin = await make_key(world, "ops", "admin")
    await world.says(ANNA, "Hello", first_name="Anna", last_name="Schmidt")
    await world.thread_of(ANNA)
    [(contact,)] = await world.sql("select id from contacts")
    assert (await api.get("/openapi.json")).status == 200
    assert (await api.get("/me", key=admin)).status == 200
    assert (await api.get("/contacts?q=anna", key=admin)).status == 200
    assert (await api.get(f"/contacts/{contact}", key=admin)).status == 200
    assert (
        await api.patch(f"/contacts/{contact}", key=admin, body={"remark": "CRM-1"})
    ).status == 200
    assert (await api.get(f"/contacts/{contact}/export", key=admin)).status == 200
    conversations = await api.get(f"/contacts/{contact}/conversations", key=admin)
    conversation = conversations.body["items"][0]["id"]
    assert (await api.get(f"/conversations/{conversation}", key=admin)).status == 200
    sent = await api.post(f"/contacts/{contact}/messages", key=admin, body={"text": "Hi Anna"})
    assert sent.status == 202
    await eventually(lambda: world.tg.messages_to(ANNA), message="the message")
    assert (await api.get(f"/messages/{sent.body['id']}", key=admin)).status == 200
    assert (await api.get(f"/conversations/{conversation}/messages", key=admin)).status == 200
    channel = await api.post("/channels", key=admin, body={"name": "news"})
    assert channel.status == 201
    channel_id = channel.body["id"]
    assert (await api.get("/channels", key=admin)).status == 200
    assert (await api.get(f"/channels/{channel_id}", key=admin)).status == 200
    member = {"contact_id": contact, "consent": "by phone"}
    assert (await api.post(f"/channels/{channel_id}/members", key=admin, body=member)).status in (
        200,
        201,
    )
    assert (await api.get(f"/channels/{channel_id}/members", key=admin)).status == 200
    assert (await api.delete(f"/channels/{channel_id}/members/{contact}", key=admin)).status == 204
    assert (await api.delete(f"/channels/{channel_id}", key=admin)).status == 200
    assert (await api.post("/blacklist", key=admin, body={"contact_id": contact})).status == 201
    assert (await api.get("/blacklist", key=admin)).status == 200
    assert (await api.delete(f"/blacklist/{contact}", key=admin)).status == 204
    created = await api.post("/api-keys", key=admin, body={"name": "crm", "role": "agent"})
    assert created.status == 201
    assert (await api.get("/api-keys", key=admin)).status == 200
    assert (await api.delete(f"/api-keys/{created.body['api_key']['id']}", key=admin)).status == 200
    await every_new_operation(api, admin)
    assert (await api.delete(f"/contacts/{contact}", key=admin)).status == 200
    # And the errors, in their format.
    assert (await api.get("/contacts/999", key=admin)).status == 404
    assert (await api.get("/contacts")).status == 401
    assert (await api.post("/channels", key=admin, body={"name": "a b"})).status == 422
    document = await api.document()
    every = {(method.upper(), path) for path, item in document["paths"].items() for method in item}
    assert {(method, path) for method, path, _ in CHECKED.seen} == every
    assert (await command(world, "apikey list")).ok


async def every_new_operation(api, admin):
    """Templates, text blocks, rules, broadcasts, short links, statistics and webhooks."""
    template = {"name": "order_update", "language": "en_US", "body": "Hi {{1}}"}
    assert (await api.post("/templates", key=admin, body=template)).status == 201
    assert (await api.get("/templates", key=admin)).status == 200
    one = "/templates/order_update/en_US"
    assert (await api.get(one, key=admin)).status == 200
    assert (await api.patch(one, key=admin, body={"body": "Hello {{1}}"})).status == 200
    assert (await api.delete(one, key=admin)).status == 204
    assert (await api.post("/templates", key=admin, body=template)).status == 201
    assert (await api.delete("/templates/order_update", key=admin)).status == 200
    block = {"name": "hours", "body": "Open 9 to 17, {FIRSTNAME}."}
    assert (await api.post("/text-blocks", key=admin, body=block)).status == 201
    assert (await api.get("/text-blocks", key=admin)).status == 200
    assert (await api.get("/text-blocks/hours", key=admin)).status == 200
    assert (await api.patch("/text-blocks/hours", key=admin, body={"body": "9-17"})).status == 200
    assert (await api.delete("/text-blocks/hours", key=admin)).status == 204
    rule = {
        "name": "hours",
        "keyword_type": "contain",
        "pattern": "open",
        "actions": [{"do": "answer", "text": "We open at 8."}],
    }
    created = await api.post("/rules", key=admin, body=rule)
    assert created.status == 201
    path = f"/rules/{created.body['id']}"
    assert (await api.get("/rules", key=admin)).status == 200
    assert (await api.get(path, key=admin)).status == 200
    assert (await api.patch(path, key=admin, body={"priority": 3})).status == 200
    assert (await api.post(f"{path}/disable", key=admin)).status == 200
    assert (await api.post(f"{path}/enable", key=admin)).status == 200
    tested = await api.post("/rules/test", key=admin, body={"text": "open?"})
    assert tested.status == 200
    assert (await api.delete(path, key=admin)).status == 204
    drafted = await api.post(
        "/broadcasts", key=admin, body={"platforms": ["telegram"], "text": "Hello {NAME}"}
    )
    assert drafted.status == 201
    path = f"/broadcasts/{drafted.body['broadcast']['id']}"
    assert (await api.get("/broadcasts", key=admin)).status == 200
    assert (await api.get(path, key=admin)).status == 200
    assert (await api.get(f"{path}/preview", key=admin)).status == 200
    later = {"scheduled_at": (datetime.now(UTC) + timedelta(hours=1)).isoformat()}
    assert (await api.post(f"{path}/confirm", key=admin, body=later)).status == 202
    assert (await api.post(f"{path}/pause", key=admin)).status == 200
    assert (await api.post(f"{path}/resume", key=admin)).status == 200
    assert (await api.post(f"{path}/cancel", key=admin)).status == 200
    link = await api.post("/links", key=admin, body={"url": "https://example.org/a"})
    assert link.status == 201
    assert (await api.get("/links", key=admin)).status == 200
    assert (await api.get(f"/links/{link.body['id']}", key=admin)).status == 200
    assert (await api.get("/stats?days=7", key=admin)).status == 200
    hook = {"url": "http://127.0.0.1:9/events", "events": ["all"]}
    created = await api.post("/webhooks", key=admin, body=hook)
    assert created.status == 201
    path = f"/webhooks/{created.body['webhook']['id']}"
    assert (await api.get("/webhooks", key=admin)).status == 200
    assert (await api.get(path, key=admin)).status == 200
    assert (await api.post(f"{path}/test", key=admin)).status == 202
    assert (await api.delete(path, key=admin)).status == 204
