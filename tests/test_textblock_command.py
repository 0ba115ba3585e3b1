"""/textblock keeps saved replies; `!tb <name>` sends one, filled in, to the thread's customer."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest

from tests.commands_kit import AGENT, MANAGER, command, services_of, thread_ref
from tests.harness import eventually

_refs = itertools.count(1)


@pytest.fixture
async def world(world):
    await services_of(world).write(
        lambda tx: tx.roles.set_role("slack", MANAGER, "manager", "UADMIN", datetime.now(UTC))
    )
    return world


async def tb(world, root, text: str):
    """Type `!tb …` as a message in the thread."""
    ref = f"{root.channel}/1700000000.{next(_refs):06d}"
    return await command(
        world, text, user=AGENT, user_name="Maria", thread=thread_ref(root), ref=ref
    )


async def test_manager_adds_shows_lists_and_deletes_a_text_block(world):
    reply = await command(
        world, 'textblock add hours "Hi {FIRSTNAME}, we are open 9 to 17."', user=MANAGER
    )
    assert reply.ok and reply.title == "Text block hours saved."
    assert "Send it in a conversation's thread with `!tb hours`." in reply.lines
    assert await world.sql("select name, body, created_by from text_blocks") == [
        ("hours", "Hi {FIRSTNAME}, we are open 9 to 17.", MANAGER)
    ]

    shown = await command(world, "textblock show hours", user=AGENT)
    assert ("Text", "Hi {FIRSTNAME}, we are open 9 to 17.") in shown.fields
    assert ("Placeholders", "{FIRSTNAME}") in shown.fields
    listed = await command(world, "textblock list", user=AGENT)
    assert "`hours`: Hi {FIRSTNAME}, we are open 9 to 17." in listed.lines

    again = await command(world, "textblock add hours Open 10 to 18.", user=MANAGER)
    assert again.title == "Text block hours updated."
    gone = await command(world, "textblock delete hours", user=MANAGER)
    assert gone.title == "Text block hours deleted."
    assert await world.sql("select count(*) from text_blocks") == [(0,)]


async def test_unknown_placeholders_are_refused_with_the_known_ones(world):
    reply = await command(world, "textblock add hi Hello {NAME}, order {ORDER}", user=MANAGER)
    assert not reply.ok
    assert reply.title == (
        "Unknown placeholder {ORDER}; known are {NAME}, {FIRSTNAME}, {AGENT}, {DATE}, {PLATFORM}"
    )
    assert "Usage: `/textblock add <name> <text…>`" in reply.lines
    assert await world.sql("select count(*) from text_blocks") == [(0,)]


async def test_an_agent_may_not_add_a_text_block(world):
    reply = await command(world, "textblock add hi Hello", user=AGENT)
    assert not reply.ok and "needs the manager role" in reply.title


async def test_bad_names_and_missing_text_answer_the_usage(world):
    bad = await command(world, "textblock add hi! Hello", user=MANAGER)
    assert not bad.ok and bad.title.startswith("Not a text block name: hi!")
    missing = await command(world, "textblock add hi", user=MANAGER)
    assert not missing.ok and missing.title == "Missing arguments"
    assert "Example: `/textblock add hours" in missing.text


async def test_tb_sends_the_filled_block_to_the_customer_and_records_it(world):
    await command(
        world,
        'textblock add thanks "Thanks {FIRSTNAME} ({NAME})! {AGENT} from the team, {DATE},'
        ' via {PLATFORM}."',
        user=MANAGER,
    )
    await world.says(111, "Hello", first_name="Anna", last_name="Schmidt")
    root = await world.thread_of(111)
    reply = await tb(world, root, "!tb thanks")
    assert reply.ok and reply.text == "" and reply.file is None
    today = datetime.now(UTC).date().isoformat()
    expected = f"Thanks Anna (Anna Schmidt)! Maria from the team, {today}, via Telegram."
    await eventually(lambda: world.tg.messages_to(111), message="the text block")
    assert [m.text for m in world.tg.messages_to(111)] == [expected]
    await eventually(
        lambda: world.sql("select 1 from messages where direction = 'out' and status = 'sent'"),
        message="the sent status",
    )
    assert await world.sql("select text, author from messages where direction = 'out'") == [
        (expected, "Maria")
    ]


async def test_tb_with_an_unknown_name_lists_the_names(world):
    await command(world, "textblock add hours Open 9 to 17", user=MANAGER)
    await command(world, "textblock add bye Goodbye {NAME}", user=MANAGER)
    await world.says(111, "Hello")
    root = await world.thread_of(111)
    reply = await tb(world, root, "!tb hello")
    assert not reply.ok
    assert reply.title == "No text block named hello"
    assert reply.lines == ("Text blocks: `bye`, `hours`",)
    assert await world.sql("select count(*) from messages where direction = 'out'") == [(0,)]


async def test_tb_outside_a_thread_says_where_it_works(world):
    await command(world, "textblock add hours Open 9 to 17", user=MANAGER)
    reply = await command(world, "tb hours", user=AGENT)
    assert not reply.ok and "works inside a conversation's thread" in reply.title
