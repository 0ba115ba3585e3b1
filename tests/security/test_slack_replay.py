"""A signed Slack slash command or interaction captured on the way cannot be sent again.

Slack signs `v0:<timestamp>:<body>` and the bridge takes a signature for five minutes; within
them the very same request, replayed, must not run a second time.
"""

from __future__ import annotations

import time

import pytest

from tests.commands_kit import ADMIN
from tests.harness import eventually
from tests.world import start_world, stop_world


@pytest.fixture
async def world(tmp_path):
    w = await start_world(tmp_path)
    yield w
    await stop_world(w)


def slash_form(world, command: str, text: str, user: str) -> dict[str, str]:
    slack = world.slack
    return {
        "token": slack.verification_token,
        "team_id": slack.team_id,
        "team_domain": slack.team_domain,
        "channel_id": "C0001",
        "channel_name": "support",
        "user_id": user,
        "user_name": "admin",
        "command": command,
        "text": text,
        "api_app_id": slack.api_app_id,
        "is_enterprise_install": "false",
        "response_url": slack.response_url(),
        "trigger_id": slack.trigger_id(),
    }


async def test_a_replayed_slash_command_is_refused_and_runs_once(world):
    form = slash_form(world, "/apikey", "create replayed agent", ADMIN)
    ts = int(time.time())
    status, _ = await world.slack.deliver(form, kind="slash_commands", timestamp=ts)
    assert status == 200

    async def keys() -> int:
        return (await world.sql("select count(*) from api_keys"))[0][0]

    await eventually(keys, message="the key the command made")
    again, _ = await world.slack.deliver(form, kind="slash_commands", timestamp=ts)
    assert again == 401
    assert await keys() == 1


async def test_a_replayed_interaction_is_refused(world):
    payload = {
        "type": "block_actions",
        "user": {"id": "UAGENT", "username": "agent", "name": "agent", "team_id": "T0001"},
        "api_app_id": world.slack.api_app_id,
        "token": world.slack.verification_token,
        "container": {"type": "message", "message_ts": "1.1", "channel_id": "C0001"},
        "trigger_id": world.slack.trigger_id(),
        "team": {"id": world.slack.team_id, "domain": world.slack.team_domain},
        "channel": {"id": "C0001", "name": "support"},
        "response_url": world.slack.response_url(),
        "actions": [{"action_id": "unknown", "type": "button", "value": "1", "action_ts": "1"}],
    }
    ts = int(time.time())
    first, _ = await world.slack.deliver(payload, kind="interactive", timestamp=ts)
    assert first != 401
    again, _ = await world.slack.deliver(payload, kind="interactive", timestamp=ts)
    assert again == 401


async def test_the_same_command_signed_anew_still_runs(world):
    # Slack signs each request it sends: a second, genuine run of a command is not a replay.
    form = slash_form(world, "/apikey", "create twice agent", ADMIN)
    ts = int(time.time())
    assert (await world.slack.deliver(form, kind="slash_commands", timestamp=ts))[0] == 200
    form = {**form, "trigger_id": world.slack.trigger_id()}
    assert (await world.slack.deliver(form, kind="slash_commands", timestamp=ts))[0] == 200
