"""Input built to trip the parsers (deep nesting, huge numbers in paths) is a 4xx, never a 500.

The fixed shapes of the report come first; the property tests after them try the same shapes at
every depth and length (JSON nested past any reader's limit, ids and expiries far past 64 bits
and past Python's int conversion limit) against the API and the media URLs."""

from __future__ import annotations

import re
import time
from urllib.parse import urlencode

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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


async def post_blacklist(world, key: str, body: str) -> tuple[int, dict]:
    """POST a raw body to the API's blacklist resource; the status and the JSON answer."""
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{world.bridge.url}{PREFIX}/blacklist", data=body, headers=headers
        ) as r:
            return r.status, await r.json()


@pytest.mark.parametrize("body", NESTED, ids=["open", "closed", "objects"])
async def test_deeply_nested_json_to_the_api_is_a_documented_400(world, body):
    key = await make_key(world, role="manager")
    status, answer = await post_blacklist(world, key, body)
    # Past the reader's limit the body is malformed (400); within it, no blacklist entry (422).
    assert (status, answer["error"]["code"]) in {(400, "malformed_json"), (422, "invalid")}
    assert set(answer["error"]) >= {"code", "message"}, answer
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


# ------------------------------------------------------------------------ the same, as properties

# Bounded and reproducible: the same examples on every run, through real HTTP.
PROPERTY = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# A number past 64 bits, up to past the interpreter's int conversion limit (4300 digits).
long_numbers = st.builds(
    lambda lead, rest, length: lead + rest * (length - 1),
    st.sampled_from("123456789"),
    st.sampled_from("0123456789"),
    st.integers(min_value=20, max_value=6_000),
)
numbers = st.one_of(st.integers(min_value=1, max_value=10**6).map(str), long_numbers)
_OPENERS = {"[": "]", '{"a":': "}", '{"items":[': "]}"}
# From a little nesting to far past any reader's limit, closed or cut off.
nested_json = st.builds(
    lambda depth, opener, closed: (
        opener * depth + "1" + (_OPENERS[opener] * depth if closed else "")
    ).encode(),
    st.integers(min_value=2, max_value=20_000),
    st.sampled_from(sorted(_OPENERS)),
    st.booleans(),
)


@pytest.fixture
async def keyed(world):
    key = await make_key(world, role="manager")
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{world.bridge.url}{PREFIX}/openapi.json") as r:
            document = await r.json()
    id_paths = sorted(
        path
        for path, item in document["paths"].items()
        if "get" in item and re.search(r"\{\w+_id\}", path)
    )
    assert id_paths
    return world, key, id_paths


@PROPERTY
@given(media_id=numbers, expires=numbers, data=st.data())
async def test_any_long_number_in_a_media_path_is_a_4xx(world, media_id, expires, data):
    if len(media_id) < 20 and len(expires) < 20:
        expires = data.draw(long_numbers, label="long expiry")
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{world.bridge.url}/media/{media_id}/{expires}/abcd/x.png") as r:
            assert 400 <= r.status < 500, r.status


@PROPERTY
@given(number=long_numbers, data=st.data())
async def test_any_long_number_as_an_api_id_is_a_documented_4xx(keyed, number, data):
    world, key, id_paths = keyed
    template = data.draw(st.sampled_from(id_paths), label="path")
    path = re.sub(r"\{\w+_id\}", number, template)
    headers = {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{world.bridge.url}{PREFIX}{path}", headers=headers) as r:
            status, answer = r.status, await r.json()
    assert 400 <= status < 500, (template, status)
    assert set(answer["error"]) >= {"code", "message"}, answer


@PROPERTY
@given(body=nested_json)
async def test_json_nested_to_any_depth_to_the_api_is_a_documented_4xx(keyed, body):
    world, key, _ = keyed
    status, answer = await post_blacklist(world, key, body)
    # Past the reader's limit the body is malformed (400); within it, no blacklist entry (422).
    assert (status, answer["error"]["code"]) in {(400, "malformed_json"), (422, "invalid")}
    assert set(answer["error"]) >= {"code", "message"}, answer
