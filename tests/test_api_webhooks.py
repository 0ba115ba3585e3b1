"""Webhook subscriptions through the API (admin): added with the secret in the answer once,
seen by the pipeline at once, listed without the secret, pinged, removed."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from aiohttp import web

from tests.api_kit import Api, make_key
from tests.commands_kit import command
from tests.harness import eventually
from tests.world import free_port

ANNA = 6300001


class Receiver:
    """A CRM's endpoint: keeps every POST with its headers."""

    def __init__(self) -> None:
        self.posts: list[tuple[dict[str, str], bytes]] = []
        self.runner: web.AppRunner | None = None
        self.port = free_port()

    async def _post(self, request: web.Request) -> web.Response:
        self.posts.append((dict(request.headers), await request.read()))
        return web.json_response({"ok": True})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._post)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def events(self, kind: str) -> list[tuple[dict[str, str], bytes]]:
        return [(h, b) for h, b in self.posts if h.get("X-Bridge-Event") == kind]


@pytest.fixture
async def receiver():
    found = Receiver()
    await found.start()
    yield found
    await found.stop()


@pytest.fixture(autouse=True)
def allow_private(receiver):
    """The bridge may reach the receiver's loopback port (and no other)."""
    return [f"127.0.0.1:{receiver.port}"]


@pytest.fixture
async def api(world):
    return Api(world)


@pytest.fixture
async def keys(world):
    return {
        "admin": await make_key(world, "ops", "admin"),
        "manager": await make_key(world, "editor", "manager"),
    }


def signed(secret: str, headers: dict[str, str], body: bytes) -> bool:
    mac = hmac.new(
        secret.encode(), headers["X-Bridge-Timestamp"].encode() + b"." + body, hashlib.sha256
    )
    return hmac.compare_digest("sha256=" + mac.hexdigest(), headers["X-Bridge-Signature"])


async def test_added_webhook_gets_events_at_once_signed_with_its_secret(world, api, keys, receiver):
    body = {"url": receiver.url("/events?token=t0ps3cret"), "events": ["message.received"]}
    assert (await api.post("/webhooks", key=keys["manager"], body=body)).status == 403
    created = await api.post("/webhooks", key=keys["admin"], body=body)
    assert created.status == 201, created.body
    secret, hook = created.body["secret"], created.body["webhook"]
    assert len(secret) == 64 and hook["events"] == ["message.received"]
    assert hook["url"] == receiver.url("/events?…") and hook["created_by"] == "ops (API)"
    # The pipeline knows it at once: the next message goes to it.
    await world.says(ANNA, "Where is my parcel?", first_name="Anna")
    [(headers, raw)] = await eventually(
        lambda: receiver.events("message.received"), message="the event"
    )
    assert signed(secret, headers, raw)
    assert json.loads(raw)["data"]["text"] == "Where is my parcel?"
    listed = await api.get("/webhooks", key=keys["admin"])
    assert listed.body["items"] == [{**hook, "waiting": 0}]
    assert "secret" not in json.dumps(listed.body)
    shown = await api.get(f"/webhooks/{hook['id']}", key=keys["admin"])
    assert shown.body == {**hook, "waiting": 0}
    said = await command(world, "webhook list")
    assert f"*{hook['id']}* {receiver.url('/events?…')}: message.received" in said.lines[0]


async def test_ping_and_remove(world, api, keys, receiver):
    body = {"url": receiver.url("/hook"), "events": ["all"]}
    hook = (await api.post("/webhooks", key=keys["admin"], body=body)).body["webhook"]
    path = f"/webhooks/{hook['id']}"
    ping = await api.post(f"{path}/test", key=keys["admin"])
    assert ping.status == 202 and ping.body["webhook"]["id"] == hook["id"]
    [(headers, raw)] = await eventually(lambda: receiver.events("ping"), message="the ping")
    assert json.loads(raw)["data"] == {"webhook_id": hook["id"], "requested_by": "ops (API)"}
    gone = await api.delete(path, key=keys["admin"])
    assert gone.status == 204 and gone.body is None
    assert (await api.get(path, key=keys["admin"])).status == 404
    assert (await api.delete(path, key=keys["admin"])).status == 404
    assert (await api.post(f"{path}/test", key=keys["admin"])).status == 404
    assert (await api.get("/webhooks", key=keys["admin"])).body["items"] == []
    # Removed: the pipeline stops sending at once.
    await world.says(ANNA, "Hello again", first_name="Anna")
    await world.thread_of(ANNA)
    assert receiver.events("message.received") == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "ftp://crm.example.com/x", "events": ["all"]}, "url"),
        ({"url": "https://", "events": ["all"]}, "url"),
        ({"url": "https://crm.example.com/x y", "events": ["all"]}, "url"),
        ({"url": "https://crm.example.com:http/x", "events": ["all"]}, "url"),
        ({"url": "https://crm.example.com/x", "events": ["message.sent"]}, "events"),
        ({"url": "https://crm.example.com/x", "events": [","]}, "events"),
        ({"url": "https://crm.example.com/x", "events": []}, "events"),
        ({"url": "https://crm.example.com/x"}, "events"),
    ],
)
async def test_unusable_webhooks_are_refused(world, api, keys, body, field):
    answer = await api.post("/webhooks", key=keys["admin"], body=body)
    assert answer.status == 422, answer.body
    assert answer.error["field"] == field
    assert await world.sql("select count(*) from webhooks") == [(0,)]


async def test_webhooks_come_in_pages(world, api, keys):
    for n in range(3):
        body = {"url": f"https://crm.example.com/{n}", "events": ["ping"]}
        if n == 0:
            refused = await api.post("/webhooks", key=keys["admin"], body=body)
            assert refused.status == 422  # ping is sent on request only, nobody subscribes
        body["events"] = ["contact.opted_in", "contact.opted_out"]
        assert (await api.post("/webhooks", key=keys["admin"], body=body)).status == 201
    first = await api.get("/webhooks?limit=2", key=keys["admin"])
    second = await api.get(first.body["next"].removeprefix("/api/v1"), key=keys["admin"])
    urls = [w["url"] for w in first.body["items"] + second.body["items"]]
    assert urls == [f"https://crm.example.com/{n}" for n in range(3)]
