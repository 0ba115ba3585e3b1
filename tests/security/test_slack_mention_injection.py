"""Data that looks like Slack markup (a customer named `<!channel>`, a staff id `@x:<!channel>`)
reaches Slack escaped: it shows as text and pings nobody. Only mentions the bridge composes
(an assignee's `<@U…>`) are live."""

from __future__ import annotations

from typing import Any

from tests.commands_kit import AGENT
from tests.harness import eventually
from tests.slash_kit import slash_answer

EVE = 7740001
LIVE = ("<!channel>", "<!here>", "<@U0ADMIN")


def markup(texts: list[str], blocks: list[dict[str, Any]] | None) -> str:
    """What Slack parses as mrkdwn: the message text and every mrkdwn text of its blocks."""

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "mrkdwn" and isinstance(node.get("text"), str):
                texts.append(node["text"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(blocks or [])
    return "\n".join(texts)


async def eve_thread(world):
    world.slack.add_user(AGENT, "Alex Agent", "alex")
    await world.says(EVE, "Hi <!here>", first_name="<!channel>", last_name="<@U0ADMIN|boss>")
    return await world.thread_of(EVE)


async def test_a_customer_named_like_a_mention_pings_nobody_on_the_card_or_in_the_thread(world):
    root = await eve_thread(world)
    card = markup([root.text], root.blocks)
    assert "&lt;!channel&gt;" in card
    assert not any(live in card for live in LIVE), card
    await eventually(lambda: len(world.replies(root)) >= 1, message="the mirrored message")
    for message in world.replies(root):
        shown = markup([message.text], message.blocks)
        assert not any(live in shown for live in LIVE), shown


async def test_command_answers_show_the_name_as_text(world):
    await eve_thread(world)
    answer = await slash_answer(world.slack, "/contact", f"find {EVE}", user_id=AGENT)
    shown = markup([answer.get("text", "")], answer.get("blocks"))
    assert "&lt;@U0ADMIN|boss&gt;" in shown and "&lt;!channel&gt;" in shown
    assert not any(live in shown for live in LIVE), shown


async def test_assigning_to_a_made_up_id_puts_no_live_mention_on_the_card(world):
    root = await eve_thread(world)
    await world.slack.agent_says(root.channel, root.ts, "!assign @x:<!channel>", user=AGENT)
    await eventually(
        lambda: any(m.text and "assign" in m.text.lower() for m in world.replies(root))
        or world.slack.ephemerals,
        message="the answer",
    )
    card = world.slack.find(root.channel, root.ts)
    assert card is not None
    for message in [card, *(m for m in world.replies(root) if m.bot_id)]:
        shown = markup([message.text], message.blocks)
        assert not any(live in shown for live in LIVE), shown
    for told in world.slack.ephemerals:
        shown = markup([told["text"]], told["blocks"])
        assert not any(live in shown for live in LIVE), shown


async def test_the_assignee_the_bridge_names_is_still_a_live_mention(world):
    root = await eve_thread(world)
    await world.slack.agent_says(root.channel, root.ts, "!assign", user=AGENT)
    await eventually(
        lambda: any("<@UAGENT>" in markup([m.text], m.blocks) for m in world.replies(root)),
        message="the answer naming the assignee",
    )
    card = world.slack.find(root.channel, root.ts)
    await eventually(
        lambda: "<@UAGENT>" in markup([card.text], card.blocks), message="the card's assignee"
    )
