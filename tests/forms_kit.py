"""Slack modals in tests: open one with a slash command, fill it in and submit it."""

from __future__ import annotations

from tests.commands_kit import MANAGER
from tests.slash_kit import slash_answer


async def open_form(world, text: str, command: str = "/rule") -> dict:
    """Run the slash command; the modal it opened."""
    answer = await slash_answer(world.slack, command, text, user_id=MANAGER)
    assert not answer.get("text"), answer  # no message: the modal opened
    return world.slack.views[-1]


def fill(view: dict, **given) -> dict:
    """The view's state as Slack sends it, with these inputs filled in (others as shown)."""
    values = {}
    for block in view["blocks"]:
        element = block["element"]
        value = given.get(block["block_id"])
        if element["type"] == "plain_text_input":
            text = value if value is not None else element.get("initial_value")
            values[block["block_id"]] = {"value": {"type": "plain_text_input", "value": text}}
        elif element["type"] == "static_select":
            chosen = value or element.get("initial_option", {}).get("value")
            option = next((o for o in element["options"] if o["value"] == chosen), None)
            values[block["block_id"]] = {
                "value": {"type": "static_select", "selected_option": option}
            }
        else:
            picked = (
                value
                if value is not None
                else [o["value"] for o in element.get("initial_options", [])]
            )
            options = [o for o in element["options"] if o["value"] in picked]
            # multi_static_select and checkboxes: Slack sends both as selected_options
            values[block["block_id"]] = {
                "value": {"type": element["type"], "selected_options": options}
            }
    return values


async def submit(world, view: dict, **given) -> tuple[int, str]:
    """Submit the modal as the manager; the HTTP answer."""
    payload = {
        "type": "view_submission",
        "team": {"id": world.slack.team_id, "domain": "fake"},
        "user": {"id": MANAGER, "username": "max", "name": "max", "team_id": world.slack.team_id},
        "api_app_id": world.slack.api_app_id,
        "token": world.slack.verification_token,
        "trigger_id": world.slack.trigger_id(),
        "view": {
            **view,
            "state": {"values": fill(view, **given)},
            "hash": "1.abc",
        },
        "response_urls": [],
        "is_enterprise_install": False,
    }
    return await world.slack.interaction(payload)
