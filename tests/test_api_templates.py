"""Templates and text blocks through the API, with `/template add`'s and `/textblock add`'s
checks: a manager keeps, changes and deletes them, an agent reads them, and what the API saves
is what the commands (and `!tb` in a thread) use."""

from __future__ import annotations

import pytest

from tests.api_kit import Api, make_key
from tests.commands_kit import AGENT, MANAGER, command, thread_ref
from tests.harness import eventually

ANNA = 6270001


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


ORDER = {"name": "order_update", "language": "en_US", "body": "Hi {{1}}, order {{2}} shipped."}


async def test_templates_are_kept_shown_changed_and_deleted(world, api, keys):
    assert (await api.get("/templates", key=keys["agent"])).body["items"] == []
    assert (await api.post("/templates", key=keys["agent"], body=ORDER)).status == 403
    created = await api.post("/templates", key=keys["manager"], body=ORDER)
    assert created.status == 201, created.body
    template = created.body
    assert template["name"] == "order_update" and template["language"] == "en_US"
    assert template["parameters"] == 2 and template["created_by"] == "editor (API)"
    shown = await api.get("/templates/order_update/en_US", key=keys["agent"])
    assert shown.body == template
    listed = await command(world, "template list", user=AGENT)
    assert "`order_update` (en_US), 2 parameters" in listed.text
    twice = await api.post("/templates", key=keys["manager"], body=ORDER)
    assert twice.status == 409 and twice.error["code"] == "conflict"
    german = {**ORDER, "language": "de", "body": "Hallo {{1}}, Bestellung {{2}} ist unterwegs."}
    assert (await api.post("/templates", key=keys["manager"], body=german)).status == 201
    changed = await api.patch(
        "/templates/order_update/de", key=keys["manager"], body={"body": "Hallo {{1}}!"}
    )
    assert changed.status == 200 and changed.body["parameters"] == 1
    shown = await command(world, "template show order_update de", user=AGENT)
    assert dict(shown.fields)["Body"] == "Hallo {{1}}!"
    missing = await api.patch("/templates/order_update/fr", key=keys["manager"], body={"body": "x"})
    assert missing.status == 404
    one = await api.delete("/templates/order_update/de", key=keys["manager"])
    assert one.status == 204 and one.body is None
    assert (await api.get("/templates/order_update/de", key=keys["agent"])).status == 404
    assert (await api.post("/templates", key=keys["manager"], body=german)).status == 201
    every = await api.delete("/templates/order_update", key=keys["manager"])
    assert every.status == 200
    assert every.body == {"name": "order_update", "languages": ["de", "en_US"]}
    assert (await api.delete("/templates/order_update", key=keys["manager"])).status == 404
    assert await world.sql("select count(*) from templates") == [(0,)]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**ORDER, "name": "Order Update"}, "name"),
        ({**ORDER, "language": "english"}, "language"),
        ({**ORDER, "body": "Hi {{2}}"}, "body"),
        ({**ORDER, "body": "Hi {{name}}"}, "body"),
        ({**ORDER, "body": "   "}, "body"),
        ({**ORDER, "body": "x" * 1025}, "body"),
        ({**ORDER, "footer": "x"}, "footer"),
        ({"name": "order_update", "body": "Hi"}, "language"),
    ],
)
async def test_bad_templates_are_refused_and_change_nothing(world, api, keys, body, field):
    answer = await api.post("/templates", key=keys["manager"], body=body)
    assert answer.status == 422, answer.body
    assert answer.error["field"] == field
    assert await world.sql("select count(*) from templates") == [(0,)]


async def test_templates_come_in_pages_by_name_and_language(world, api, keys):
    made = [
        ("alpha", "de"),
        ("alpha", "en_US"),
        ("alpha0", "de"),
        ("beta", "fr"),
        ("beta_x", "de"),
    ]
    for name, language in reversed(made):
        body = {"name": name, "language": language, "body": "Hello"}
        assert (await api.post("/templates", key=keys["manager"], body=body)).status == 201
    path, seen = "/templates?limit=2", []
    while path:
        page = await api.get(path, key=keys["agent"])
        assert len(page.body["items"]) <= 2
        seen += [(t["name"], t["language"]) for t in page.body["items"]]
        path = page.body["next"] and page.body["next"].removeprefix("/api/v1")
    assert seen == made
    alpha = await api.get("/templates?name=alpha", key=keys["agent"])
    assert [t["language"] for t in alpha.body["items"]] == ["de", "en_US"]
    bad = await api.get("/templates?cursor=eyJhZnRlciI6IDF9", key=keys["agent"])
    assert bad.status == 400 and bad.error["code"] == "bad_cursor"


async def test_text_blocks_are_saved_shown_changed_and_deleted(world, api, keys):
    body = {"name": "Hours", "body": "Hi {FIRSTNAME}, we are open 9 to 17. {AGENT}"}
    assert (await api.post("/text-blocks", key=keys["agent"], body=body)).status == 403
    created = await api.post("/text-blocks", key=keys["manager"], body=body)
    assert created.status == 201, created.body
    block = created.body
    assert block["name"] == "hours" and block["placeholders"] == ["AGENT", "FIRSTNAME"]
    assert (await api.get("/text-blocks/HOURS", key=keys["agent"])).body == block
    shown = await command(world, "textblock show hours", user=AGENT)
    assert dict(shown.fields)["Text"] == body["body"]
    twice = await api.post("/text-blocks", key=keys["manager"], body=body)
    assert twice.status == 409
    changed = await api.patch(
        "/text-blocks/hours", key=keys["manager"], body={"body": "Open 9 to 17, {NAME}."}
    )
    assert changed.status == 200 and changed.body["placeholders"] == ["NAME"]
    # `!tb` in a thread sends what the API saved.
    await world.says(ANNA, "When are you open?", first_name="Anna", last_name="Schmidt")
    root = await world.thread_of(ANNA)
    ref = f"{root.channel}/1700000000.000001"
    reply = await command(world, "!tb hours", user=AGENT, thread=thread_ref(root), ref=ref)
    assert reply.ok, reply.text
    await eventually(lambda: world.tg.messages_to(ANNA), message="the text block")
    assert [m.text for m in world.tg.messages_to(ANNA)] == ["Open 9 to 17, Anna Schmidt."]
    gone = await api.delete("/text-blocks/hours", key=keys["manager"])
    assert gone.status == 204
    assert (await api.get("/text-blocks/hours", key=keys["agent"])).status == 404
    assert (await api.delete("/text-blocks/hours", key=keys["manager"])).status == 404
    assert (await api.patch("/text-blocks/hours", key=keys["manager"], body=body)).status == 422
    assert (
        await api.patch("/text-blocks/hours", key=keys["manager"], body={"body": "x"})
    ).status == 404
    assert (await api.get("/text-blocks/not a name", key=keys["agent"])).status == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "two words", "body": "Hello"}, "name"),
        ({"name": "hello", "body": "Hi {VORNAME}"}, "body"),
        ({"name": "hello", "body": " "}, "body"),
        ({"name": "hello", "body": "x" * 4097}, "body"),
        ({"name": "hello"}, "body"),
    ],
)
async def test_bad_text_blocks_are_refused(world, api, keys, body, field):
    answer = await api.post("/text-blocks", key=keys["manager"], body=body)
    assert answer.status == 422, answer.body
    assert answer.error["field"] == field
    assert await world.sql("select count(*) from text_blocks") == [(0,)]


async def test_text_blocks_come_in_pages_by_name(world, api, keys):
    names = ["a-1", "a_2", "b", "hours", "thanks"]
    for name in reversed(names):
        body = {"name": name, "body": f"Text {name}"}
        assert (await api.post("/text-blocks", key=keys["manager"], body=body)).status == 201
    first = await api.get("/text-blocks?limit=3", key=keys["agent"])
    second = await api.get(first.body["next"].removeprefix("/api/v1"), key=keys["agent"])
    assert [b["name"] for b in first.body["items"] + second.body["items"]] == sorted(names)
    assert second.body["next"] is None
