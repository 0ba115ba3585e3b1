"""Deep-link opt-in, closing a conversation, and the new thread that links the old one."""

from __future__ import annotations

from tests.harness import eventually


async def test_start_payload_is_recorded_as_the_opt_in_source(world):
    await world.says(111, "/start spring_sale")
    root = await world.thread_of(111)
    assert "deep link: spring_sale" in str(root.blocks)
    assert await world.sql("select opt_in_source from contacts") == [("deep link: spring_sale",)]


async def test_message_after_close_opens_a_new_thread_that_links_the_old(world):
    await world.says(111, "first problem")
    old = await world.thread_of(111)
    await world.slack.agent_says(old.channel, old.ts, "!close")
    await eventually(lambda: any("closed by" in t for t in world.texts(old)), message="notice")
    await eventually(lambda: "closed" in str(world.slack.find(old.channel, old.ts).blocks))
    await world.says(111, "second problem")
    new = await eventually(
        lambda: (r := world.root_for(111)) is not None and r.ts != old.ts and r,
        message="new thread",
    )
    assert "previous conversation" in str(new.blocks)
    assert old.ts.replace(".", "") in str(new.blocks)
    await eventually(lambda: world.texts(new) == ["second problem"])
    assert world.tg.messages_to(111) == []  # closing says nothing to the customer
