"""A view submission that is not in the shape of the bridge's forms (tampered with, or another
app's) is answered and ignored: no 500, and nothing runs."""

from __future__ import annotations

import pytest

from connectors.slack_blocks import FORM_CALLBACK, NotOurForm, submitted
from tests.commands_kit import MANAGER

BROKEN = [
    {"private_metadata": "{"},
    {"private_metadata": "[1]"},
    {"private_metadata": '{"command": "rule add", "fields": [["name"]]}'},
    {
        "private_metadata": '{"command": "rule add", "fields": []}',
        "state": {"values": {"name": [1]}},
    },
]


@pytest.mark.parametrize("view", BROKEN)
def test_a_view_not_in_the_bridges_shape_is_refused_as_such(view):
    with pytest.raises(NotOurForm):
        submitted(view)


@pytest.mark.parametrize("view", BROKEN)
async def test_slack_gets_an_answer_and_nothing_runs(world, view):
    payload = {
        "type": "view_submission",
        "team": {"id": world.slack.team_id, "domain": "fake"},
        "user": {"id": MANAGER, "username": "max", "name": "max", "team_id": world.slack.team_id},
        "api_app_id": world.slack.api_app_id,
        "token": world.slack.verification_token,
        "trigger_id": world.slack.trigger_id(),
        "view": {"id": "V1", "callback_id": FORM_CALLBACK, "type": "modal", **view},
        "response_urls": [],
        "is_enterprise_install": False,
    }
    status, _ = await world.slack.interaction(payload)
    assert status == 200
    assert await world.sql("select id from rules") == []
