"""The customer must not choose where the bridge connects: a placeholder ({NICKNAME}, {MSG}, …)
is refused in the scheme, user, host or port of a rule's URL, and every value filled into the
path or query is percent-encoded, so that it stays one piece of it."""

from __future__ import annotations

import pytest

from tests.api_kit import Api, make_key
from tests.commands_kit import MANAGER, command
from tests.harness import eventually
from tests.security.outbound_kit import guarded_rig

ANNA = 9140001


@pytest.fixture
async def rig(tmp_path):
    async with guarded_rig(tmp_path) as (world, internal, bot, _):
        yield world, internal, bot


def chosen_by_the_customer(port: int) -> list[str]:
    return [
        "http://{NICKNAME}/x",
        "http://{MSG}:8443/x",
        f"http://127.0.0.1:{{ID}}{port}/x",
        "http://{MSISDN}.example.com/x",
        "http://user:{MSG}@example.com/x",
        "{MSG}://example.com/x",
        "https://example.com:{CONTACTID}",
        "http://{NICKNAME}",
    ]


@pytest.mark.parametrize("word", ["bot", "post"])
async def test_placeholder_before_the_path_is_refused_by_the_rule_command(rig, word):
    world, internal, _ = rig
    for number, url in enumerate(chosen_by_the_customer(internal.port)):
        reply = await command(
            world, f'rule add p{number} always --do "{word}: {url}"', user=MANAGER
        )
        assert not reply.ok, (url, reply.text)
        assert "may only stand in the path, query or fragment" in reply.text, (url, reply.text)
        assert "not in its scheme, host or port" in reply.text
    assert await world.sql("select count(*) from rules") == [(0,)]


async def test_placeholder_before_the_path_is_refused_by_the_api(rig):
    world, internal, _ = rig
    api = Api(world)
    key = await make_key(world, "editor", "manager")
    for number, url in enumerate(chosen_by_the_customer(internal.port)):
        body = {
            "name": f"api{number}",
            "keyword_type": "always",
            "actions": [{"do": "post", "target": url}],
        }
        refused = await api.post("/rules", key=key, body=body)
        assert refused.status == 422, (url, refused.body)
        assert "may only stand in the path" in refused.error["message"], refused.body
    assert await world.sql("select count(*) from rules") == [(0,)]


async def test_a_customers_name_cannot_move_the_request_to_another_host(rig):
    world, internal, bot = rig
    reply = await command(
        world,
        f'rule add fwd always --do "post: {bot.url("/hook/")}{{NICKNAME}}?text={{MSG}}"',
        user=MANAGER,
    )
    assert reply.ok, reply.text
    await world.says(
        ANNA,
        "hi&admin=1#top",
        first_name=f"@127.0.0.1:{internal.port}/x",
        last_name="../../admin?y=1",
    )
    await eventually(lambda: bot.raw_paths, message="the forward")
    [path] = bot.raw_paths
    # One path segment and one query value ("@" ":" "=" may stand unencoded in a path).
    assert path == (
        f"/hook/@127.0.0.1:{internal.port}%2Fx%20..%2F..%2Fadmin%3Fy=1" "?text=hi%26admin%3D1%23top"
    )
    assert internal.requests == []
