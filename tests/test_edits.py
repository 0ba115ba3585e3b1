"""Edits and deletions follow the message to the other side."""

from __future__ import annotations

from tests.harness import eventually


async def test_customer_edit_updates_the_mirrored_slack_message(world):
    update = await world.says(111, "my order nr is 1234")
    root = await world.thread_of(111)
    await eventually(lambda: world.texts(root) == ["my order nr is 1234"])
    message_id = update["message"]["message_id"]
    await world.customer(world.tg.edit_update(111, message_id, "my order nr is 4321"))
    await eventually(
        lambda: world.texts(root) == ["my order nr is 4321 _(edited)_"], message="the edit"
    )


async def test_agent_edit_and_delete_are_applied_on_telegram(world):
    await world.says(111, "hi")
    root = await world.thread_of(111)
    ts = await world.slack.agent_says(root.channel, root.ts, "Helo")
    await eventually(lambda: world.tg.messages_to(111), message="the reply")
    await eventually(lambda: world.slack.find(root.channel, ts).reactions, message="sent mark")
    # Slack sends the edit's link as <https://…> and its & as &amp;: the customer reads neither.
    edited = "Hello, track it at https://track.example.com/?a=1&b=2"
    await world.slack.agent_edits(root.channel, ts, edited)
    await eventually(lambda: world.tg.messages_to(111)[0].edited_texts == [edited], message="edit")
    await world.slack.agent_deletes(root.channel, ts)
    await eventually(lambda: not world.tg.messages_to(111), message="the deletion")
    assert world.tg.count("deleteMessage") == 1
