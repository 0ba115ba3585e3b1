"""Finding 11: people of another Slack workspace have no role.

The bridge serves the workspace its bot token belongs to (learned from `auth.test`), plus the
workspaces named in `[slack] allowed_teams`. A member of another organisation in a shared
(Slack Connect) channel, or a request from another workspace, is treated as role `none`:
their thread replies do not reach customers, and their commands and button presses are
refused, whatever role the default would give them.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from tests.commands_kit import AGENT
from tests.fakes.slack import SlackMessage
from tests.harness import eventually
from tests.world import start_world, stop_world

CORPUS = Path(__file__).parent.parent / "corpus" / "slack"
CUSTOMER = 4040003


def sample(name: str) -> dict[str, Any]:
    return copy.deepcopy(json.loads((CORPUS / name).read_text()))


async def external_reply(world, root, *, team: str, text: str) -> SlackMessage:
    """A member of `team` writes in the thread of a shared channel: the event Slack sends."""
    body = sample("event_message_slack_connect.json")
    event = body["event"]
    slack = world.slack
    message = SlackMessage(
        channel=root.channel, ts=slack._next_ts(), thread_ts=root.ts, text=text, user=event["user"]
    )
    slack.messages.append(message)
    event.update(
        channel=root.channel,
        ts=message.ts,
        event_ts=message.ts,
        thread_ts=root.ts,
        text=text,
        team=team,
        user_team=team,
        source_team=team,
    )
    status, _ = await slack.deliver(body)
    assert status == 200
    return message


async def barrier(world, root, text: str = "An agent's answer") -> None:
    """An agent's reply: once it arrived, anything queued before it would have too."""
    await world.slack.agent_says(root.channel, root.ts, text, user=AGENT)
    await eventually(
        lambda: any(m.current_text == text for m in world.tg.messages_to(CUSTOMER)),
        message="the agent's reply",
    )


async def test_a_slack_connect_guest_cannot_answer_customers(world):
    await world.says(CUSTOMER, "I want my refund")
    root = await world.thread_of(CUSTOMER)
    message = await external_reply(world, root, team="T0EXTERN", text="Send the card number to me")
    told = await eventually(
        lambda: [
            e["text"]
            for e in world.slack.ephemerals
            if e["user"] == message.user and e["thread_ts"] == root.ts
        ],
        message="the guest is told privately",
    )
    assert "not a member of the workspace" in told[0]
    await eventually(lambda: "x" in message.reactions, message="the not-sent mark")
    await barrier(world, root)
    assert [m.current_text for m in world.tg.messages_to(CUSTOMER)] == ["An agent's answer"]


async def test_a_slash_command_from_another_workspace_has_no_role(world):
    await world.says(CUSTOMER, "Hello", first_name="Anna")
    form = sample("slash_command_other_team.json")
    form["response_url"] = world.slack.response_url()
    form["trigger_id"] = world.slack.trigger_id()
    status, body = await world.slack.deliver(form, kind="slash_commands")
    assert status == 200, body
    answer = json.loads(body)
    assert answer["response_type"] == "ephemeral"
    assert "needs the agent role" in answer["text"]
    assert "not a member of the workspace" in json.dumps(answer["blocks"])
    assert "Anna" not in body


async def test_someone_of_another_workspace_learns_why_they_have_no_role(world):
    form = sample("slash_command_other_team.json")
    form.update(
        command="/user",
        text="whoami",
        response_url=world.slack.response_url(),
        trigger_id=world.slack.trigger_id(),
    )
    status, body = await world.slack.deliver(form, kind="slash_commands")
    assert status == 200, body
    shown = json.dumps(json.loads(body)["blocks"])
    assert "Role: *none* (not a member of a workspace the bridge serves)" in shown


async def test_a_guest_pressing_a_card_button_changes_nothing(world):
    await world.says(CUSTOMER, "Hello")
    root = await world.thread_of(CUSTOMER)
    payload = sample("block_actions_external_user.json")
    payload["container"].update(channel_id=root.channel, message_ts=root.ts)
    payload["channel"]["id"] = root.channel
    payload["message"] = world.slack.message_dict(root)
    payload["response_url"] = world.slack.response_url()
    payload["trigger_id"] = world.slack.trigger_id()
    status, _ = await world.slack.interaction(payload)
    assert status == 200
    refused = await eventually(
        lambda: [e for e in world.slack.ephemerals if e["user"] == payload["user"]["id"]],
        message="the refusal, to the presser only",
    )
    assert "needs the agent role" in refused[0]["text"]
    assert await world.sql("select status from conversations") == [("open",)]


async def test_a_request_for_another_workspace_is_a_stranger_even_from_its_own_members(world):
    """An event whose envelope names another workspace (the same app installed there) does
    not speak for the bridge's workspace."""
    await world.says(CUSTOMER, "Hi")
    root = await world.thread_of(CUSTOMER)
    body = sample("event_message_slack_connect.json")
    slack = world.slack
    message = SlackMessage(
        channel=root.channel, ts=slack._next_ts(), thread_ts=root.ts, text="hi", user="U0OTHER1"
    )
    slack.messages.append(message)
    body.update(team_id="T0OTHER", context_team_id="T0OTHER", is_ext_shared_channel=False)
    body["authorizations"][0]["team_id"] = "T0OTHER"
    body["event"].update(
        channel=root.channel,
        ts=message.ts,
        thread_ts=root.ts,
        user="U0OTHER1",
        text="From elsewhere",
        team="T0OTHER",
        user_team="T0OTHER",
        source_team="T0OTHER",
    )
    await slack.deliver(body)
    await eventually(lambda: "x" in message.reactions, message="the not-sent mark")
    await barrier(world, root)
    assert [m.current_text for m in world.tg.messages_to(CUSTOMER)] == ["An agent's answer"]


class TestAllowedTeams:
    """`[slack] allowed_teams` names further workspaces (an Enterprise Grid's others)."""

    @pytest.fixture
    async def world(self, tmp_path):
        w = await start_world(tmp_path, sections={"slack": {"allowed_teams": ["T0GRID2"]}})
        yield w
        await stop_world(w)

    async def test_members_of_an_allowed_workspace_answer_like_our_own(self, world):
        await world.says(CUSTOMER, "Hi there")
        root = await world.thread_of(CUSTOMER)
        await external_reply(world, root, team="T0GRID2", text="Happy to help")
        await eventually(
            lambda: [m.current_text for m in world.tg.messages_to(CUSTOMER)] == ["Happy to help"],
            message="the reply of a colleague from the other workspace",
        )
        stranger = await external_reply(world, root, team="T0EXTERN", text="Me too")
        await eventually(lambda: "x" in stranger.reactions, message="the not-sent mark")
        await barrier(world, root)
        assert [m.current_text for m in world.tg.messages_to(CUSTOMER)] == [
            "Happy to help",
            "An agent's answer",
        ]
