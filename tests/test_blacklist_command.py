"""/blacklist and the thread actions !block / !unblock: what blocked contacts can and cannot do."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bridge.app import PIPELINE
from tests.commands_kit import ADMIN, AGENT, MANAGER, command, services_of, thread_ref
from tests.harness import eventually


async def make_manager(world, user: str = MANAGER) -> None:
    """Give a Slack user the manager role, as `/user role` would."""
    now = datetime.now(UTC)
    await services_of(world).write(
        lambda tx: tx.roles.set_role("slack", user, "manager", ADMIN, now)
    )


async def settled(world) -> None:
    """Wait until the bridge has carried out everything it queued (threads, posts, sends)."""

    async def idle():
        return await world.sql("select count(*) from outbox where state = 'pending'") == [(0,)]

    await eventually(idle, message="an empty outbox")


async def customer_with_thread(world, chat: int = 111, text: str = "Hello"):
    await world.says(chat, text)
    root = await world.thread_of(chat)
    await eventually(lambda: text in world.texts(root), message="the mirrored message")
    return root


async def test_inbound_block_stores_messages_but_does_not_mirror_them(world):
    await make_manager(world)
    root = await customer_with_thread(world)
    reply = await command(world, "blacklist add 111 in flooding the chat", user=MANAGER)
    assert reply.ok, reply.text
    assert reply.title == (
        "#1 Ann (telegram) blocked inbound (stored, not shown to staff), permanently by"
        " UMANAGER. Reason: flooding the chat."
    )
    await eventually(lambda: any("blocked inbound" in t for t in world.texts(root)))
    await world.says(111, "BUY CHEAP WATCHES")
    await eventually(
        lambda: world.sql("select text from messages where text = 'BUY CHEAP WATCHES'"),
        message="the blocked message stored",
    )
    await settled(world)
    assert not any("WATCHES" in t for t in world.texts(root))
    assert await world.sql(
        "select count(*) from staff_refs r join messages m on m.id = r.message_id"
        " where m.text = 'BUY CHEAP WATCHES'"
    ) == [(0,)]


async def test_outbound_block_refuses_the_agent_reply_with_the_reason(world):
    await make_manager(world)
    root = await customer_with_thread(world)
    reply = await command(world, "blacklist add #1 out abusive", user=MANAGER)
    assert reply.ok, reply.text
    ts = await world.slack.agent_says(root.channel, root.ts, "Please calm down.")
    agent_msg = world.slack.find(root.channel, ts)
    await eventually(lambda: "x" in agent_msg.reactions, message="the failure mark")
    await eventually(
        lambda: any(
            "Not sent: the contact is blacklisted for outgoing messages (abusive)" in t
            for t in world.texts(root)
        ),
        message="the refusal in the thread",
    )
    assert world.tg.messages_to(111) == []
    assert await world.sql("select status, error_code from messages where direction='out'") == [
        ("failed", "refused")
    ]


async def test_temporary_block_expires_by_the_pipeline_clock(world):
    await make_manager(world)
    root = await customer_with_thread(world)
    reply = await command(world, "blacklist add #1 out for 2h cooling off", user=MANAGER)
    assert reply.ok and " until " in reply.title, reply.text
    listed = await command(world, "blacklist list", user=AGENT)
    assert listed.title == "1 blocked contact"
    assert "until" in listed.lines[0] and "cooling off" in listed.lines[0]

    ts = await world.slack.agent_says(root.channel, root.ts, "First try")
    await eventually(lambda: "x" in world.slack.find(root.channel, ts).reactions)
    assert world.tg.messages_to(111) == []

    later = datetime.now(UTC) + timedelta(hours=3)
    world.bridge.app[PIPELINE].clock = lambda: later
    await world.slack.agent_says(root.channel, root.ts, "Second try")
    await eventually(lambda: world.tg.messages_to(111), message="the reply after expiry")
    assert [m.text for m in world.tg.messages_to(111)] == ["Second try"]
    listed = await command(world, "blacklist list", user=AGENT)
    assert listed.title == "The blacklist is empty."
    assert await world.sql("select count(*) from blacklist") == [(0,)]


async def test_block_until_a_date_is_listed_with_its_expiry(world):
    await make_manager(world)
    await customer_with_thread(world)
    day = (datetime.now(UTC) + timedelta(days=3)).strftime("%Y-%m-%d")
    reply = await command(world, f"blacklist add 111 both until {day}T08:30", user=MANAGER)
    assert reply.ok, reply.text
    assert f"inbound and outbound until {day} 08:30 UTC" in reply.title
    listed = await command(world, "blacklist list")
    assert listed.lines == (
        f"`#1` Ann (telegram): inbound and outbound, until {day} 08:30 UTC, by UMANAGER",
    )


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("blacklist add 111 for 7x", "7x is not a duration; write e.g. 30m, 12h, 7d or 2w"),
        ("blacklist add 111 for 0h", "0h is no time at all"),
        ("blacklist add 111 in for", "For needs a duration"),
        ("blacklist add 111 until 2020-01-01", "2020-01-01 is in the past"),
        ("blacklist add 111 until 2031-02-30", "2031-02-30 is not a date of the calendar"),
        ("blacklist add 111 until tomorrow", "Tomorrow is not a date"),
        ("blacklist add 111 until 2031-01-01T25:00", "is not a date of the calendar"),
        ("blacklist add 111 7d spam", "7d looks like a time limit: write `for 7d`"),
        ("blacklist add 111 for 600w", "600w is more than 10 years"),
        ("blacklist add", "Arguments are missing"),
    ],
)
async def test_bad_durations_and_dates_answer_with_the_usage(world, line, problem):
    await customer_with_thread(world)
    reply = await command(world, line)
    assert not reply.ok
    assert problem in reply.title
    assert reply.lines == (
        "Usage: `/blacklist add <who> [in|out|both] [for <duration>|until <date>] [reason…]`",
        "Example: `/blacklist add #12 out for 7d sends spam links`",
    )
    assert await world.sql("select count(*) from blacklist") == [(0,)]


async def test_agents_may_list_but_not_change_the_blacklist(world):
    await customer_with_thread(world)
    reply = await command(world, "blacklist add 111", user=AGENT)
    assert not reply.ok
    assert "needs the manager role" in reply.title
    assert (await command(world, "blacklist list", user=AGENT)).ok
    assert await world.sql("select count(*) from blacklist") == [(0,)]


async def test_unknown_and_ambiguous_contacts_are_named_in_the_answer(world):
    await customer_with_thread(world)
    assert (await command(world, "blacklist add #99")).title == "There is no contact #99."
    reply = await command(world, 'blacklist add "+49 151 0000"')
    assert reply.title == "No contact has the id, number or chat id +49 151 0000."


async def test_block_and_unblock_in_the_thread(world):
    await make_manager(world)
    root = await customer_with_thread(world)
    reply = await command(
        world, "block out for 12h rude", user=MANAGER, thread=thread_ref(root), ref="C0001/1.1"
    )
    assert reply.ok and reply.public, reply.text
    assert reply.title.startswith("#1 Ann (telegram) blocked outbound (nothing is sent to them)")
    assert await world.sql("select direction, reason, created_by from blacklist") == [
        ("out", "rude", "UMANAGER")
    ]
    refused = await command(world, "unblock", user=AGENT, thread=thread_ref(root))
    assert not refused.ok and "needs the manager role" in refused.title
    reply = await command(world, "unblock", user=MANAGER, thread=thread_ref(root))
    assert reply.title == "#1 Ann (telegram) is no longer blocked (UMANAGER)."
    assert await world.sql("select count(*) from blacklist") == [(0,)]
    again = await command(world, "unblock", user=MANAGER, thread=thread_ref(root))
    assert again.title == "#1 Ann (telegram) is not on the blacklist."
    await world.slack.agent_says(root.channel, root.ts, "Welcome back")
    await eventually(lambda: world.tg.messages_to(111), message="the reply")


async def test_block_outside_a_thread_is_refused(world):
    reply = await command(world, "block")
    assert not reply.ok
    assert "works inside a conversation's thread" in reply.title


async def test_removing_an_inbound_block_opens_the_thread_of_a_conversation_started_while_blocked(
    world,
):
    await make_manager(world)
    old = await customer_with_thread(world, text="first problem")
    await world.bridge.app[PIPELINE].close(1)
    await command(world, "blacklist add 111 in", user=MANAGER)
    await world.says(111, "are you there?")
    await eventually(
        lambda: world.sql("select count(*) from conversations where status = 'open'"),
        message="the new conversation",
    )
    await settled(world)
    assert len(world.roots()) == 1  # no thread for what a blocked contact writes

    reply = await command(world, "blacklist remove 111", user=MANAGER)
    assert reply.ok, reply.text
    new = await eventually(
        lambda: (r := world.root_for(111)) is not None and r.ts != old.ts and r,
        message="the thread of the conversation",
    )
    await eventually(lambda: any("no longer blocked" in t for t in world.texts(new)))
    await world.says(111, "hello again")
    await eventually(lambda: "hello again" in world.texts(new), message="mirrored again")
