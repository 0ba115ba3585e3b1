"""What an agent writes in Slack reaches the customer as it was written, not in Slack's markup."""

from __future__ import annotations

import json

from tests.commands_kit import ADMIN, MANAGER, command
from tests.forms_kit import open_form, submit
from tests.harness import eventually

WRITTEN = (
    "Tracking & returns: https://track.example.com/?id=4711&lang=de or write to info@acme.example"
)
# What Slack sends for it (the message event's `text`): `&` escaped, every link in <…>.
AS_SLACK_SENDS = (
    "Tracking &amp; returns: <https://track.example.com/?id=4711&amp;lang=de>"
    " or write to <mailto:info@acme.example|info@acme.example>"
)


async def test_a_reply_with_a_link_and_an_address_reaches_the_customer_clean(world):
    await world.says(111, "Where is my parcel?")
    root = await world.thread_of(111)
    await world.slack.agent_says(root.channel, root.ts, WRITTEN)
    sent = [
        body["event"]["text"] for kind, body, *_ in world.slack.deliveries if kind == "events_api"
    ]
    assert sent[-1] == AS_SLACK_SENDS
    await eventually(lambda: world.tg.messages_to(111), message="a Telegram message")
    assert [m.text for m in world.tg.messages_to(111)] == [WRITTEN]


async def test_a_rule_with_a_url_saved_from_a_slash_command(world):
    url = "https://crm.example.org/hook?src=slack&x=1"
    status, body = await world.slack.slash_command(
        "/rule", f'add crm always --do "post: {url}"', user_id=ADMIN
    )
    assert status == 200, body
    sent = next(b for kind, b, *_ in reversed(world.slack.deliveries) if kind == "slash_commands")
    assert (
        sent["text"]
        == 'add crm always --do "post: <https://crm.example.org/hook?src=slack&amp;x=1>"'
    )
    assert json.loads(body)["blocks"], body
    shown = await command(world, "rule show crm")
    assert f"Does: post: {url}" in shown.lines, shown.lines


async def test_a_mention_reaches_the_customer_as_the_colleagues_name(world):
    world.slack.add_user("U0ANNA", "Anna Schmidt", "Anna")
    await world.says(111, "Who handles returns?")
    root = await world.thread_of(111)
    # A mention picked from the autocomplete, an emoji (Slack sends :+1:), and characters the
    # agent typed that only look like markup.
    await world.slack.agent_says(root.channel, root.ts, "<@U0ANNA> does 👍 <!here>")
    await eventually(lambda: world.tg.messages_to(111), message="a Telegram message")
    assert [m.text for m in world.tg.messages_to(111)] == ["@Anna does 👍 <!here>"]


async def test_a_forms_typed_text_is_kept_as_typed(world):
    # Slack does not escape what is typed into a modal's plain-text input: nothing to undo.
    assert (await command(world, f"user role {MANAGER} manager")).ok
    view = await open_form(world, "add")
    typed = "answer: Q&amp;A is &lt;here&gt; & <there>"
    status, body = await submit(world, view, name="qa", when="always", actions=typed)
    assert status == 200 and not body, body
    shown = await command(world, "rule show qa")
    assert f"Does: {typed}" in shown.lines, shown.lines
