"""Schemathesis against the OpenAPI document a running bridge serves: for every operation,
generated requests (valid and invalid ones, a bounded and seeded number) never get a 5xx, and
every answer fits the document: a documented status, JSON, the schema of that status.

The bridge runs in a thread with an event loop of its own, since Schemathesis calls it
synchronously. It starts with some data (a contact, a channel, a template, a rule, …) so that
generated ids sometimes name something. URLs a request would make the bridge fetch or post to
later (webhooks, rule actions) are pointed at a closed loopback port, so nothing leaves the
machine."""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections import defaultdict
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar
from urllib.error import HTTPError
from urllib.parse import urlsplit, urlunsplit
from urllib.request import Request, urlopen

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig

from tests.api_kit import PREFIX, Api, make_key
from tests.commands_kit import command
from tests.harness import eventually
from tests.world import World, start_world, stop_world

T = TypeVar("T")
EXAMPLES = 25
SEED = 20261201
# Nothing listens here: a delivery or a download to it fails at once, on this machine.
NOWHERE = "127.0.0.1:9"
# Statuses answered, per operation ("GET /contacts").
ANSWERS: defaultdict[str, set[int]] = defaultdict(set)


class LiveBridge:
    """A world (the bridge and its fakes) running in a thread of its own."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


async def seed(world: World) -> str:
    """Data for generated ids to find, and an admin key; the key."""
    key = await make_key(world, "fuzz", "admin")
    api = Api(world)
    assert (await command(world, "channel create news --join JOIN-NEWS")).ok
    for chat in (6310001, 6310002):
        await world.says(chat, "JOIN-NEWS", first_name="Anna", last_name="Schmidt")
    await eventually(lambda: world.tg.messages_to(6310002), message="the join confirmation")
    await world.thread_of(6310001)
    bodies = [
        ("/templates", {"name": "order_update", "language": "en_US", "body": "Hi {{1}}"}),
        ("/text-blocks", {"name": "hours", "body": "Open 9 to 17, {FIRSTNAME}."}),
        (
            "/rules",
            {
                "name": "hours",
                "keyword_type": "contain",
                "pattern": "open",
                "actions": [{"do": "answer", "text": "We open at 8."}],
            },
        ),
        ("/broadcasts", {"channel_ids": [1], "text": "Sale: https://example.org/a"}),
        ("/links", {"url": "https://example.org/b"}),
        ("/webhooks", {"url": f"http://{NOWHERE}/events", "events": ["all"]}),
    ]
    for path, body in bodies:
        answer = await api.post(path, key=key, body=body)
        assert answer.status == 201, (path, answer.body)
    return key


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[World, str]]:
    bridge = LiveBridge()
    # Every URL the fuzzer sends is pointed at NOWHERE, which the outbound guard allows.
    allow = {"security": {"allow_private": [NOWHERE]}}
    world = bridge.run(start_world(tmp_path_factory.mktemp("fuzz"), sections=allow))
    try:
        key = bridge.run(seed(world))
        yield world, key
    finally:
        bridge.run(stop_world(world))
        bridge.close()


@pytest.fixture(scope="module")
def api_schema(live: tuple[World, str]) -> Any:
    world, key = live
    config = SchemathesisConfig.from_dict(
        {
            "seed": SEED,
            "headers": {"Authorization": f"Bearer {key}"},
            "generation": {
                "mode": "all",
                "max-examples": EXAMPLES,
                "deterministic": True,
                "database": "none",
            },
            "phases": {"stateful": {"enabled": False}},
            "checks": {
                # Valid requests may well be refused: an unknown id, a name in use, a rule the
                # engine cannot run. That a refusal is documented is what the others check.
                "positive_data_acceptance": {"enabled": False},
            },
            "request-timeout": 30,
        }
    )
    return schemathesis.openapi.from_url(f"{world.bridge.url}{PREFIX}/openapi.json", config=config)


# Revoking keys could end the key the run is made with; everything else may run.
schema = schemathesis.pytest.from_fixture("api_schema").exclude(
    method="DELETE", path="/api-keys/{key_id}"
)


def _contained(url: object) -> object:
    """The URL with its host replaced by a closed loopback port."""
    if not isinstance(url, str):
        return url
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return url
    if not host:
        return url
    return urlunsplit((parts.scheme, NOWHERE, parts.path, parts.query, parts.fragment))


def _keep_home(body: object) -> None:
    """Point every URL of a request body the bridge would reach out to at nowhere."""
    if not isinstance(body, dict):
        return
    for field in ("url", "target"):
        if field in body:
            body[field] = _contained(body[field])
    for field in ("actions", "rule"):
        inner = body.get(field)
        for item in inner if isinstance(inner, list) else [inner]:
            _keep_home(item)


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_answer_fits_the_document(case: Any, live: tuple[World, str]) -> None:
    _, key = live
    _keep_home(case.body)
    response = case.call_and_validate(headers={"Authorization": f"Bearer {key}"})
    ANSWERS[f"{case.operation.method.upper()} {case.operation.path}"].add(response.status_code)


def test_the_run_reached_every_operation(live: tuple[World, str]) -> None:
    """Generated requests got past the key and the validation to the handlers: every
    operation answered other than 401, and most also with success."""
    print({op: sorted(codes) for op, codes in sorted(ANSWERS.items())})
    assert len(ANSWERS) >= 55
    assert all(codes - {401} for codes in ANSWERS.values()), ANSWERS
    succeeded = [op for op, codes in ANSWERS.items() if any(c < 300 for c in codes)]
    assert len(succeeded) >= len(ANSWERS) * 0.6, sorted(set(ANSWERS) - set(succeeded))


# JSON nested past any reader's recursion limit: closed and cut off, arrays and objects.
DEEP_BODIES = [b"[" * 5000, b'{"a":' * 5000 + b"1" + b"}" * 5000, b"[" * 50_000 + b"]" * 50_000]


def test_bodies_nested_past_any_limit_are_a_documented_400(live: tuple[World, str]) -> None:
    world, key = live
    with urlopen(f"{world.bridge.url}{PREFIX}/openapi.json") as answer:
        document = json.load(answer)
    wrong: list[tuple[str, int, object]] = []
    operations = 0
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if not isinstance(operation, dict) or "requestBody" not in operation:
                continue
            operations += 1
            url = world.bridge.url + PREFIX + re.sub(r"\{\w+\}", "1", path)
            for body in DEEP_BODIES:
                request = Request(url, data=body, method=method.upper())
                request.add_header("Authorization", f"Bearer {key}")
                request.add_header("Content-Type", "application/json")
                try:
                    with urlopen(request) as answer:
                        status, text = answer.status, answer.read()
                except HTTPError as refused:
                    status, text = refused.code, refused.read()
                error = json.loads(text).get("error", {})
                documented = "400" in operation["responses"]
                if status != 400 or error.get("code") != "malformed_json" or not documented:
                    wrong.append((f"{method.upper()} {path}", status, error))
    assert operations >= 15
    assert wrong == []
