"""The Slack fake speaks the wire format the real slack-sdk and slack-bolt expect."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs

import aiohttp
import pytest
from aiohttp import web
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.app.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient

from tests.fakes.slack import FakeSlack


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    slack = FakeSlack()
    await slack.start()
    try:
        yield slack
    finally:
        await slack.stop()


def web_client(fake: FakeSlack, **kwargs: Any) -> AsyncWebClient:
    return AsyncWebClient(token=fake.bot_token, base_url=fake.base_url, **kwargs)


class Receiver:
    """A tiny events endpoint that verifies Slack signatures like a bridge would."""

    def __init__(self, signing_secret: str) -> None:
        self.verifier = SignatureVerifier(signing_secret)
        self.got: list[tuple[dict[str, str], bytes]] = []
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        if not self.verifier.is_valid_request(raw, dict(request.headers)):
            return web.Response(status=401, text="invalid signature")
        self.got.append((dict(request.headers), raw))
        if request.content_type == "application/json":
            body = json.loads(raw)
            if body.get("type") == "url_verification":
                return web.Response(text=body["challenge"])
        return web.Response(text="acked")

    async def __aenter__(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/slack/events", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/slack/events"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


async def test_web_api_messages_reactions_users(fake: FakeSlack) -> None:
    client = web_client(fake)
    auth = await client.auth_test()
    assert (auth["user_id"], auth["bot_id"], auth["team_id"]) == ("UBOT", "BBOT", "T0001")

    root = await client.chat_postMessage(
        channel="C0001",
        text="New conversation",
        blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": "*New*"}}],
    )
    assert root["ok"] and root["channel"] == "C0001"
    assert root["message"]["subtype"] == "bot_message"
    assert root["message"]["bot_id"] == "BBOT"
    reply = await client.chat_postMessage(
        channel="C0001",
        thread_ts=root["ts"],
        text="hello from customer",
        username="Alice (Telegram)",
        icon_url="https://example.com/a.png",
        reply_broadcast=False,
    )
    assert reply["message"]["thread_ts"] == root["ts"]
    assert reply["message"]["username"] == "Alice (Telegram)"
    assert float(reply["ts"]) > float(root["ts"])

    assert [m.ts for m in fake.roots("C0001")] == [root["ts"]]
    (stored,) = fake.replies("C0001", root["ts"])
    assert stored.text == "hello from customer"
    assert stored.username == "Alice (Telegram)"
    assert stored.icon_url == "https://example.com/a.png"
    assert fake.find("C0001", root["ts"]).blocks[0]["type"] == "section"  # type: ignore[union-attr]

    updated = await client.chat_update(channel="C0001", ts=reply["ts"], text="edited")
    assert updated["text"] == "edited"
    assert stored.text == "edited" and stored.history == ["hello from customer"]
    with pytest.raises(SlackApiError) as err:
        await client.chat_update(channel="C0001", ts="1.000001", text="x")
    assert err.value.response["error"] == "message_not_found"

    await client.reactions_add(channel="C0001", timestamp=reply["ts"], name="white_check_mark")
    assert stored.reactions == ["white_check_mark"]
    with pytest.raises(SlackApiError) as err:
        await client.reactions_add(channel="C0001", timestamp=reply["ts"], name="white_check_mark")
    assert err.value.response["error"] == "already_reacted"

    with pytest.raises(SlackApiError) as err:
        await client.users_info(user="UAGENT")
    assert err.value.response["error"] == "user_not_found"
    fake.add_user("UAGENT", "Agent Smith", "smith")
    profile = (await client.users_info(user="UAGENT"))["user"]["profile"]
    assert (profile["real_name"], profile["display_name"]) == ("Agent Smith", "smith")
    assert profile["image_72"].startswith("https://")

    link = await client.chat_getPermalink(channel="C0001", message_ts=root["ts"])
    assert (
        link["permalink"] == f"https://fake.slack.com/archives/C0001/p{root['ts'].replace('.', '')}"
    )
    await client.chat_delete(channel="C0001", ts=reply["ts"])
    assert fake.replies("C0001", root["ts"]) == [] and stored.deleted

    # How AsyncWebClient sends things: JSON body for chat.postMessage, query params elsewhere.
    assert fake.count("chat.postMessage") == 2
    assert fake.calls[1][1]["blocks"][0]["type"] == "section"
    assert fake.count("users.info") == 2

    bad = AsyncWebClient(token="xoxb-wrong", base_url=fake.base_url)
    with pytest.raises(SlackApiError) as err:
        await bad.auth_test()
    assert err.value.response["error"] == "invalid_auth"
    with pytest.raises(SlackApiError) as err:
        await AsyncWebClient(base_url=fake.base_url).auth_test()
    assert err.value.response["error"] == "not_authed"


async def test_files_upload_v2_into_thread(fake: FakeSlack) -> None:
    client = web_client(fake)
    root = await client.chat_postMessage(channel="C0001", text="root")
    content = b"%PDF-1.4 fake invoice"
    result = await client.files_upload_v2(
        channel="C0001",
        thread_ts=root["ts"],
        content=content,
        filename="invoice.pdf",
        title="Invoice",
        initial_comment="Customer sent a file",
    )
    file_id = result["file"]["id"]
    assert fake.uploaded[file_id] == ("invoice.pdf", content)
    assert [
        fake.count(m) for m in ("files.getUploadURLExternal", "files.completeUploadExternal")
    ] == [
        1,
        1,
    ]
    (msg,) = fake.replies("C0001", root["ts"])
    assert msg.text == "Customer sent a file"
    assert msg.files[0]["id"] == file_id and msg.files[0]["mimetype"] == "application/pdf"
    assert msg.files[0]["size"] == len(content) and msg.files[0]["title"] == "Invoice"

    info = await client.files_info(file=file_id)
    assert info["file"]["shares"]["public"]["C0001"][0]["ts"] == msg.ts
    url = info["file"]["url_private_download"]
    async with aiohttp.ClientSession() as http:
        async with http.get(url, headers={"Authorization": f"Bearer {fake.bot_token}"}) as resp:
            assert resp.status == 200 and await resp.read() == content
        async with http.get(url) as resp:
            assert resp.status == 403 and resp.content_type == "text/html"


async def test_rate_limit_per_channel_and_storm(fake: FakeSlack) -> None:
    client = web_client(fake)
    fake.set_rate_limit("chat.postMessage", per_channel=1, burst=1)
    await client.chat_postMessage(channel="C0001", text="one")
    with pytest.raises(SlackApiError) as err:
        await client.chat_postMessage(channel="C0001", text="two")
    assert err.value.response.status_code == 429
    assert err.value.response.headers["Retry-After"] == "1"
    assert err.value.response["error"] == "ratelimited"
    await client.chat_postMessage(channel="C0002", text="other channel has its own bucket")
    assert fake.rate_limited_count == 1
    fake.set_rate_limit("chat.postMessage", None)

    fake.storm(2.5)
    with pytest.raises(SlackApiError) as err:
        await client.reactions_add(channel="C0001", timestamp="1.1", name="x")
    assert err.value.response.status_code == 429
    assert err.value.response.headers["Retry-After"] == "3"
    assert (await client.auth_test())["ok"]  # auth.test is never stormed
    fake.storm(0.2, methods={"chat.postMessage"})
    await client.reactions_add(channel="C0001", timestamp=fake.roots("C0001")[0].ts, name="eyes")
    # The SDK's opt-in retry handler honours Retry-After (ceil(0.2) -> 1 s).
    retrying = web_client(fake, retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=2)])
    ok = await retrying.chat_postMessage(channel="C0001", text="after the storm")
    assert ok["ok"] and fake.rate_limited_count == 3

    fake.fail_next("chat.update", "cant_update_message", times=1)
    with pytest.raises(SlackApiError) as err:
        await client.chat_update(channel="C0001", ts=ok["ts"], text="x")
    assert err.value.response["error"] == "cant_update_message"
    assert (await client.chat_update(channel="C0001", ts=ok["ts"], text="x"))["ok"]


async def test_http_delivery_is_signed_like_slack(fake: FakeSlack) -> None:
    async with Receiver(fake.signing_secret) as receiver:
        fake.events_url = receiver.url
        assert await fake.deliver(
            {"token": "t", "challenge": "abc", "type": "url_verification"}
        ) == (200, "abc")

        body = fake.event_callback({"type": "app_mention", "text": "hi", "channel": "C0001"})
        assert body["type"] == "event_callback" and body["event_id"].startswith("Ev")
        assert body["authorizations"][0]["user_id"] == "UBOT"
        status, _ = await fake.deliver(body, retry_num=1, retry_reason="http_timeout")
        assert status == 200
        headers, raw = receiver.got[-1]
        assert json.loads(raw)["event_id"] == body["event_id"]
        assert headers["X-Slack-Retry-Num"] == "1"
        assert headers["X-Slack-Retry-Reason"] == "http_timeout"
        assert headers["X-Slack-Signature"].startswith("v0=")

        assert await fake.slash_command("/close", "resolved") == (200, "acked")
        headers, raw = receiver.got[-1]
        assert headers["Content-Type"] == "application/x-www-form-urlencoded"
        form = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
        assert form["command"] == "/close" and form["text"] == "resolved"
        assert {"team_id", "channel_id", "user_id", "response_url", "trigger_id"} <= set(form)
        async with (
            aiohttp.ClientSession() as http,
            http.post(form["response_url"], json={"text": "done"}) as resp,
        ):
            assert resp.status == 200
        assert fake.responses == [{"text": "done"}]

        await fake.interaction({"type": "block_actions", "actions": [{"action_id": "close"}]})
        form = {k: v[0] for k, v in parse_qs(receiver.got[-1][1].decode()).items()}
        assert json.loads(form["payload"])["type"] == "block_actions"

        assert (await fake.deliver(body, signed=False))[0] == 401
        stale = int(time.time()) - 600
        assert (await fake.deliver(body, timestamp=stale))[0] == 401
        assert (await fake.deliver(body, signature="v0=deadbeef"))[0] == 401

        # A staff file is served only with the bot token.
        ts = await fake.agent_says(
            "C0001", None, "see photo", files=[("photo.jpg", b"\xff\xd8jpeg", "image/jpeg")]
        )
        event = json.loads(receiver.got[-1][1])["event"]
        assert event["ts"] == ts and event["user"] == "UAGENT"
        assert event["files"][0]["mimetype"] == "image/jpeg"
        url = event["files"][0]["url_private_download"]
        async with aiohttp.ClientSession() as http:
            auth = {"Authorization": f"Bearer {fake.bot_token}"}
            async with http.get(url, headers=auth) as resp:
                assert await resp.read() == b"\xff\xd8jpeg"


async def test_socket_mode_client_receives_and_acks(fake: FakeSlack) -> None:
    seen: list[SocketModeRequest] = []

    async def listener(client: SocketModeClient, req: SocketModeRequest) -> None:
        seen.append(req)
        await client.send_socket_mode_response(
            SocketModeResponse(envelope_id=req.envelope_id, payload={"got": req.type})
        )

    client = SocketModeClient(
        app_token=fake.app_token, web_client=AsyncWebClient(base_url=fake.base_url)
    )
    client.socket_mode_request_listeners.append(listener)  # type: ignore[arg-type]
    try:
        await client.connect()
        await asyncio.wait_for(fake.socket_connected.wait(), 2)
        body = fake.event_callback({"type": "message", "text": "hi", "channel": "C0001"})
        assert await fake.deliver(body) == (200, '{"got": "events_api"}')
        assert seen[0].payload["event_id"] == body["event_id"]
        assert seen[0].retry_attempt == 0
        assert fake.acks[-1]["envelope_id"] == seen[0].envelope_id

        # Slack asks to refresh: the SDK reconnects through apps.connections.open.
        await fake.disconnect_socket()
        for _ in range(100):
            if fake.socket_connect_count == 2 and fake.socket_connections == 1:
                break
            await asyncio.sleep(0.02)
        assert fake.socket_connect_count == 2
        assert fake.count("apps.connections.open") == 2
        assert (await fake.slash_command("/who", ""))[0] == 200
        assert seen[-1].type == "slash_commands" and seen[-1].accepts_response_payload
    finally:
        await client.close()


async def test_bolt_app_over_socket_mode(fake: FakeSlack) -> None:
    app = AsyncApp(
        client=AsyncWebClient(token=fake.bot_token, base_url=fake.base_url),
        signing_secret=fake.signing_secret,
    )
    received: list[dict[str, Any]] = []

    @app.message()
    async def on_message(message: dict[str, Any], say: Any) -> None:
        received.append(message)
        await say(text=f"echo: {message['text']}", thread_ts=message.get("thread_ts"))

    @app.command("/close")
    async def on_close(ack: Any) -> None:
        await ack("closing")

    fake.echo_bot_messages = True
    root = await web_client(fake).chat_postMessage(channel="C0001", text="root")
    handler = AsyncSocketModeHandler(app, fake.app_token)
    try:
        await handler.connect_async()
        await asyncio.wait_for(fake.socket_connected.wait(), 2)
        ts = await fake.agent_says("C0001", root["ts"], "hello customer")
        for _ in range(100):
            if fake.replies("C0001", root["ts"])[1:]:
                break
            await asyncio.sleep(0.02)
        await fake.wait_idle()
        assert [m["ts"] for m in received] == [ts]  # the bot's own echo was ignored
        assert received[0]["thread_ts"] == root["ts"]
        agent_msg, bot_reply = fake.replies("C0001", root["ts"])
        assert agent_msg.user == "UAGENT" and bot_reply.text == "echo: hello customer"
        assert fake.deliveries[-1][2] == 200  # bolt acked the echo, too
        assert fake.count("auth.test") == 1  # called lazily at the first event, then cached

        status, text = await fake.slash_command("/close", "")
        assert (status, json.loads(text)) == (200, {"text": "closing"})
    finally:
        await handler.close_async()
