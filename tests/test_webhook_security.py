"""Unsigned, wrongly signed, stale or malformed requests are refused and change nothing."""

from __future__ import annotations

import json
import time

import aiohttp

TABLES = ("contacts", "conversations", "messages", "outbox", "staff_refs")


async def counts(world):
    return {t: (await world.sql(f"select count(*) from {t}"))[0][0] for t in TABLES}


async def test_telegram_webhook_refuses_missing_wrong_secret_and_bad_json(world):
    before = await counts(world)
    update = world.tg.text_update(111, "hello")
    assert await world.tg.deliver(update, secret=None) == 401
    assert await world.tg.deliver(update, secret="wrong-secret") == 403
    assert await world.tg.deliver(b"{not json", secret="tg-secret_1-long-enough") == 400
    assert await world.tg.deliver(b'{"update_id": "x"}', secret="tg-secret_1-long-enough") == 400
    assert await world.tg.deliver(b"[1, 2]", secret="tg-secret_1-long-enough") == 400
    assert await counts(world) == before


async def slack_post(world, body: bytes, headers: dict[str, str]) -> int:
    async with aiohttp.ClientSession() as http:
        async with http.post(world.slack.events_url, data=body, headers=headers) as r:
            return r.status


async def test_slack_events_refuse_unsigned_stale_wrong_and_malformed(world):
    await world.says(111, "hi")
    root = await world.thread_of(111)
    before = await counts(world)
    event = world.slack.event_callback(
        {
            "type": "message",
            "channel": root.channel,
            "user": "UAGENT",
            "text": "x",
            "ts": "1800000000.000100",
            "thread_ts": root.ts,
        }
    )
    status, _ = await world.slack.deliver(event, signed=False)
    assert status == 401
    status, _ = await world.slack.deliver(event, timestamp=int(time.time()) - 600)
    assert status == 401
    status, _ = await world.slack.deliver(event, signature="v0=" + "0" * 64)
    assert status == 401
    raw = b'{"type": "event_callback", "event": '
    ts = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": world.slack.sign(int(ts), raw),
    }
    assert await slack_post(world, raw, headers) == 400
    assert await counts(world) == before
    assert world.tg.messages_to(111) == []


async def test_url_verification_is_answered_with_the_challenge(world):
    status, body = await world.slack.deliver(
        {"token": "t", "challenge": "abc123", "type": "url_verification"}
    )
    assert status == 200
    assert "abc123" in body


async def test_healthz_reports_the_database_and_parts(world):
    async with aiohttp.ClientSession() as http:
        async with http.get(world.bridge.url + "/healthz") as r:
            assert r.status == 200
            body = json.loads(await r.text())
    assert body["database"] is True
    assert body["surfaces"] == ["slack"]
    assert body["connectors"] == ["telegram:123456"]
