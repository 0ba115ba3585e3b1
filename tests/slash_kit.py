"""Run a Slack slash command as a person does and read the answer they end up seeing."""

from __future__ import annotations

import json
from typing import Any

from tests.harness import eventually

# The bridge's first answer when a command needs more than Slack's 3 seconds
# (connectors/slack_commands.py); the real answer then replaces it through the response_url.
PLACEHOLDER = "Working on `/"


async def slash_answer(slack, command: str, text: str = "", *, user_id: str) -> dict[str, Any]:
    """The answer to `command text`: the request's own, or the follow-up that replaced it.

    A loaded machine can make any command slower than the bridge's answer deadline, so a test
    that reads the answer must not depend on which of the two ways it arrived."""
    status, body = await slack.slash_command(command, text, user_id=user_id)
    assert status == 200, body
    path = slack.slash_paths[-1]
    answer: dict[str, Any] = json.loads(body) if body else {}
    if not str(answer.get("text", "")).startswith(PLACEHOLDER):
        return answer
    [followed] = await eventually(
        lambda: slack.responses_at.get(path), timeout=60, message=f"the answer to {command}"
    )
    return dict(followed)
