"""Rule URLs often carry an API token in their query: agents, thread notices and the log see
them shortened (scheme, host and path); only a manager's `/rule show` shows them whole."""

from __future__ import annotations

import json
import logging

import pytest

from tests.api_kit import Api, make_key
from tests.commands_kit import AGENT, MANAGER, command
from tests.harness import eventually
from tests.rules_kit import Endpoint
from tests.slash_kit import slash_answer
from tests.world import start_world, stop_world

ANNA = 7730001
TOKEN = "tok3nS3cr3tValue"


@pytest.fixture
async def rig(tmp_path):
    endpoint = Endpoint()
    await endpoint.start()
    # The fake CRM listens on loopback: allow-listed by its port, and only that.
    world = await start_world(tmp_path, sections={"security": {"allow_private": [endpoint.allow]}})
    world.slack.add_user(MANAGER, "Max Manager", "max")
    world.slack.add_user(AGENT, "Alex Agent", "alex")
    assert (await command(world, f"user role {MANAGER} manager")).ok
    yield world, endpoint
    await stop_world(world)
    await endpoint.stop()


def secret_url(endpoint: Endpoint, *, userinfo: bool = False) -> str:
    base = endpoint.url("/crm/in")
    if userinfo:
        base = base.replace("http://", f"http://ops:{TOKEN}P@")
    return f"{base}?api_key={TOKEN}&x=1"


async def add_crm_rule(world, endpoint: Endpoint, *, userinfo: bool = False) -> None:
    url = secret_url(endpoint, userinfo=userinfo)
    added = await command(world, f'rule add crm always --do "post: {url}"', user=MANAGER)
    assert added.ok, added.text
    assert TOKEN not in added.text


async def test_rule_list_and_show_hide_the_query_from_agents(rig):
    world, endpoint = rig
    await add_crm_rule(world, endpoint, userinfo=True)
    listed = await command(world, "rule list", user=AGENT)
    assert f"post: http://127.0.0.1:{endpoint.port}/crm/in" in listed.text
    assert TOKEN not in listed.text
    shown = await command(world, "rule show crm", user=AGENT)
    assert TOKEN not in shown.text
    tested = await command(world, 'rule test "hello"', user=AGENT)
    assert TOKEN not in tested.text


async def test_a_manager_sees_the_whole_url_in_rule_show_and_only_they_do(rig):
    world, endpoint = rig
    await add_crm_rule(world, endpoint)
    answer = await slash_answer(world.slack, "/rule", "show crm", user_id=MANAGER)
    assert answer["response_type"] == "ephemeral"
    assert f"api_key={TOKEN}" in json.dumps(answer)


async def test_a_firing_rule_keeps_the_query_out_of_the_thread_and_the_log(rig, caplog):
    caplog.set_level(logging.INFO)
    world, endpoint = rig
    endpoint.status = 404  # the web call fails for good: the thread and the log say so
    await add_crm_rule(world, endpoint)
    await world.says(ANNA, "Order 17?", first_name="Anna")
    await eventually(lambda: endpoint.posts, message="the post")
    root = await world.thread_of(ANNA)
    await eventually(
        lambda: any("the web forward failed" in t for t in world.texts(root)),
        message="the failure notice",
    )
    await eventually(
        lambda: any("forwarded to" in t for t in world.texts(root)), message="the rule notice"
    )
    texts = "\n".join(world.texts(root))
    assert f"127.0.0.1:{endpoint.port}/crm/in" in texts
    assert TOKEN not in texts
    assert TOKEN not in caplog.text
    assert "api_key=" not in caplog.text


async def test_an_agent_api_key_sees_rule_urls_shortened_and_a_manager_key_whole(rig):
    world, endpoint = rig
    await add_crm_rule(world, endpoint)
    api = Api(world)
    agent, manager = (
        await make_key(world, "reader", "agent"),
        await make_key(world, "ed", "manager"),
    )
    listed = await api.get("/rules", key=agent)
    assert listed.status == 200
    [rule_id] = [r["id"] for r in listed.body["items"]]
    shown = await api.get(f"/rules/{rule_id}", key=agent)
    for answer in (listed, shown):
        assert TOKEN not in json.dumps(answer.body)
        assert f"127.0.0.1:{endpoint.port}/crm/in" in json.dumps(answer.body)
    whole = await api.get(f"/rules/{rule_id}", key=manager)
    assert f"api_key={TOKEN}" in json.dumps(whole.body)
