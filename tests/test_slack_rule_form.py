"""`/rule add` and `/rule edit <name>` in Slack open a modal; submitting it saves the rule, and
what is wrong is shown at the field it concerns."""

from __future__ import annotations

import json

import pytest

from tests.commands_kit import MANAGER, command
from tests.forms_kit import open_form, submit
from tests.harness import eventually


@pytest.fixture(autouse=True)
async def manager(world):
    assert (await command(world, f"user role {MANAGER} manager")).ok
    world.slack.add_user(MANAGER, "Max Manager", "max")


async def test_add_form_saves_the_rule_and_tells_the_manager(world):
    view = await open_form(world, "add")
    assert view["callback_id"] == "bridge_form"
    assert [b["block_id"] for b in view["blocks"]][:4] == ["name", "when", "pattern", "actions"]
    status, body = await submit(
        world,
        view,
        name="opening-hours",
        when="contain",
        pattern="open, hours",
        actions="answer: We open at 8, {NICKNAME}.\npost: https://crm.example.org/hook",
        on=["telegram", "sms"],
        hours="18:00-08:00",
        days=["mon", "tue", "wed", "thu", "fri"],
        limit="every 1d",
        priority="3",
    )
    assert status == 200 and not body, body
    shown = await command(world, "rule show opening-hours")
    assert "When: contains open, hours on sms, telegram, 18:00-08:00, mon,tue,wed,thu,fri" in (
        shown.lines
    )
    assert "Limit: once every 1d per contact · priority 3 · enabled" in shown.lines
    assert "Does: post: https://crm.example.org/hook" in shown.lines
    told = world.slack.ephemerals[-1]
    assert told["user"] == MANAGER and "Rule opening-hours added" in told["text"]


async def test_a_bad_pattern_is_shown_at_its_field_and_nothing_is_saved(world):
    view = await open_form(world, "add")
    status, body = await submit(
        world, view, name="evil", when="regexp", pattern="(a)\\1", actions="answer: x"
    )
    assert status == 200
    answer = json.loads(body)
    assert answer["response_action"] == "errors"
    assert "regular expression" in answer["errors"]["pattern"]
    assert await world.sql("select count(*) from rules") == [(0,)]


async def test_edit_form_is_filled_in_and_saves_the_changes(world):
    added = await command(
        world,
        'rule add hours contain "open" --hours 18:00-08:00 --days mon-fri --do "answer: Closed."',
        user=MANAGER,
    )
    assert added.ok, added.text
    view = await open_form(world, "edit hours")
    blocks = {b["block_id"]: b["element"] for b in view["blocks"]}
    assert blocks["pattern"]["initial_value"] == "open"
    assert blocks["hours"]["initial_value"] == "18:00-08:00"
    assert blocks["actions"]["initial_value"] == "answer: Closed."
    assert [o["value"] for o in blocks["days"]["initial_options"]] == [
        "mon",
        "tue",
        "wed",
        "thu",
        "fri",
    ]
    status, body = await submit(world, view, hours="", days=[], pattern="open, hours")
    assert status == 200 and not body, body
    shown = await command(world, "rule show hours")
    assert "When: contains open, hours" in shown.lines  # all day, every day now


async def test_an_action_that_cannot_work_is_shown_at_the_actions(world):
    view = await open_form(world, "add")
    status, body = await submit(
        world, view, name="m", when="always", pattern="", actions="mail: team@example.org"
    )
    assert "mail" in json.loads(body)["errors"]["actions"]


async def test_matrix_and_the_runner_get_the_syntax_instead_of_a_form(world):
    reply = await command(world, "rule add", user=MANAGER)
    assert reply.form is not None and "Type it as one line" in reply.lines[0]


async def test_a_form_opened_late_removes_the_working_placeholder(world):
    # views.open answers after the bridge's 2.5 s deadline but inside the trigger's 3 s.
    world.slack.delays["views.open"] = 2.7
    status, body = await world.slack.slash_command("/rule", "add", user_id=MANAGER)
    assert status == 200 and "Working on `/rule`" in json.loads(body)["text"]
    path = world.slack.slash_paths[-1]
    [followed] = await eventually(lambda: world.slack.responses_at.get(path), message="follow-up")
    assert followed["delete_original"] is True
    assert world.slack.views[-1]["callback_id"] == "bridge_form"
