"""Input built to trip the parsers (deep nesting, huge numbers in paths) is a 4xx, never a 500."""

from __future__ import annotations

import time
from urllib.parse import urlencode

import aiohttp
import pytest

from tests.api_kit import PREFIX, make_key
from tests.fakes.messenger import FakeMessenger
from tests.fakes.twilio import FakeTwilio
from tests.fakes.whatsapp import FakeWhatsApp
from tests.world import start_world, stop_world

DEEP = 5000
# Deep enough for the recursion limit of any JSON reader, closed or not.
NESTED = [b"[" * DEEP, b"[" * DEEP + b"]" * DEEP, b'{"a":' * DEEP + b"1" + b"}" * DEEP]


@pytest.fixture
async def world(tmp_path):
    w = await start_world(
        tmp_path, whatsapp=FakeWhatsApp(), messenger=FakeMessenger(), sms=FakeTwilio()
    )
    yield w
    await stop_world(w)


async def slack_post(world, raw: bytes, content_type: str) -> int:
    ts = int(time.time())
    headers = {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": str(ts),
        "X-Slack-Signature": world.slack.sign(ts, raw),
    }
    async with aiohttp.ClientSession() as http:
        async with http.post(world.slack.events_url, data=raw, headers=headers) as r:
            return r.status


@pytest.mark.parametrize("body", NESTED, ids=["open", "closed", "objects"])
async def test_deeply_nested_json_to_the_api_is_a_documented_400(world, body):
    key = await make_key(world, role="manager")
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{world.bridge.url}{PREFIX}/blacklist", data=body, headers=headers
        ) as r:
            status, answer = r.status, await r.json()
    assert status == 400
    assert answer["error"]["code"] == "malformed_json"
    assert set(answer["error"]) >= {"code", "message"}


@pytest.mark.parametrize("body", NESTED, ids=["open", "closed", "objects"])
async def test_deeply_nested_json_to_every_webhook_is_a_400(world, body):
    answers = {
        "telegram": await world.tg.deliver(body),
        "whatsapp": await world.wa.deliver(body),
        "messenger": await world.fb.deliver(body),
        "slack events": await slack_post(world, body, "application/json"),
        "slack interaction": await slack_post(
            world,
            urlencode({"payload": body.decode()}).encode(),
            "application/x-www-form-urlencoded",
        ),
    }
    assert answers == dict.fromkeys(answers, 400)
    assert await world.sql("select count(*) from messages") == [(0,)]


@pytest.mark.parametrize(
    "path",
    [
        "/media/" + "9" * DEEP + "/1/abcd/x.png",
        "/media/1/" + "9" * DEEP + "/abcd/x.png",
        "/media/" + "9" * 30 + "/" + "9" * 30 + "/abcd/x.png",
    ],
    ids=["id", "expiry", "both-long"],
)
async def test_huge_numbers_in_a_media_path_are_a_4xx(world, path):
    async with aiohttp.ClientSession() as http:
        async with http.get(world.bridge.url + path) as r:
            assert 400 <= r.status < 500, r.status
