"""`/bridge help`, `/<command> help`, `/<command> <action> help`, unknown commands and
`/bridge status`: what staff read to find their way around the bridge."""

from __future__ import annotations

import re

import pytest

from commands.base import COMMANDS
from tests.commands_kit import AGENT, command
from tests.harness import eventually

HINT = "`/<command> help` lists a command's actions with examples."


async def ask(world, line: str):
    """What an agent is answered (help needs no role beyond that)."""
    return await command(world, line, user=AGENT)


def call(name: str) -> str:
    """How a command is typed: thread actions with `!`, the rest as slash commands."""
    specs = COMMANDS[name].subcommands.values()
    return f"!{name}" if all(spec.in_thread for spec in specs) else f"/{name}"


# -- /bridge help ----------------------------------------------------------------------------


async def test_bridge_help_lists_every_command_with_one_line_each(world):
    reply = await ask(world, "bridge help")
    assert reply.ok and reply.title == "Bridge commands"
    *lines, hint = reply.lines
    assert hint == HINT
    assert len(lines) == len(COMMANDS)
    for name, cmd in COMMANDS.items():
        [line] = [x for x in lines if x.startswith(f"`{call(name)}`: ")]
        assert cmd.summary in line
    # Slash commands first, then the thread actions; each group in alphabetical order.
    slash = [x for x in lines if x.startswith("`/")]
    thread = [x for x in lines if x.startswith("`!")]
    assert lines == slash + thread and slash == sorted(slash) and thread == sorted(thread)
    assert all(x.endswith("(in a conversation's thread)") for x in thread)
    [contact] = [x for x in lines if x.startswith("`/contact`")]
    assert "`/contact`: Find, show and edit contacts; export or erase a contact's data" in contact
    assert contact.endswith("(find, show, name, note, remark, add, export, forget)")
    assert (await ask(world, "bridge")).lines == reply.lines


async def test_a_command_with_slash_and_thread_actions_is_listed_once_with_both(world):
    lines = (await ask(world, "bridge help")).lines
    [template] = [x for x in lines if "template" in x.split(":")[0]]
    assert template.startswith("`/template`: ")
    assert "list" in template and "`!template send` in a thread" in template


# -- help of one command ---------------------------------------------------------------------


async def test_bridge_help_of_a_command_lists_its_actions_with_usage_and_examples(world):
    reply = await ask(world, "bridge help contact")
    assert reply.ok
    assert reply.title == "/contact: Find, show and edit contacts; export or erase a contact's data"
    assert len(reply.lines) == len(COMMANDS["contact"].subcommands)
    assert reply.lines[1] == (
        "`/contact show <#id | number | name>`: the contact's card: platform, ids, opt-in,"
        " channels, blacklist, notes (e.g. `/contact show #12`)"
    )
    assert reply.lines[-1] == (
        "`/contact forget <#id | number | name> --confirm`: erase the contact and all their"
        " messages (data-protection requests) (e.g. `/contact forget #12 --confirm`)"
    )


@pytest.mark.parametrize("name", sorted(COMMANDS))
async def test_every_command_explains_each_of_its_actions(world, name):
    reply = await ask(world, f"bridge help {name}")
    assert reply.ok and reply.title == f"{call(name)}: {COMMANDS[name].summary}"
    specs = list(COMMANDS[name].subcommands.values())
    assert len(reply.lines) == len(specs)
    for line, spec in zip(reply.lines, specs, strict=True):
        assert line.startswith(f"`{spec.usage_line}`: {spec.summary}")
        assert spec.example in line
    # The same answer however it is asked for (`/bridge help` itself lists every command).
    if name != "bridge":
        assert (await ask(world, f"{name} help")).lines == reply.lines
    assert (await ask(world, f"bridge help {call(name)}")).lines == reply.lines


async def test_a_thread_action_is_shown_as_typed_in_the_thread(world):
    close = await ask(world, "close help")
    assert close.ok and close.title == "!close: Close this conversation"
    assert close.lines == (
        "`!close`: close the conversation; the customer's next message opens a new thread",
    )
    note = await ask(world, "bridge help note")
    assert note.lines == (
        "`!note <text>`: an internal note: stored with the conversation, never sent to the"
        " customer (e.g. `!note customer prefers e-mail`)",
    )


async def test_help_of_an_action_shows_its_usage_and_example_without_running_it(world):
    await world.says(4711, "Hello", first_name="Zoe")
    await world.thread_of(4711)
    reply = await ask(world, "contact forget help")
    assert reply.ok
    assert reply.title == "`/contact forget <#id | number | name> --confirm`"
    assert reply.lines == (
        "erase the contact and all their messages (data-protection requests)",
        "Example: `/contact forget #12 --confirm`",
    )
    assert await world.sql("select display_name from contacts") == [("Zoe",)]
    status = await ask(world, "bridge status help")
    assert status.title == "`/bridge status`"
    assert status.lines[-1] == "Example: `/bridge status`"


# -- what is not there -----------------------------------------------------------------------


async def test_an_unknown_command_points_to_bridge_help(world):
    reply = await ask(world, "contacts show #1")
    assert not reply.ok and reply.title == "Unknown command contacts"
    assert reply.lines == ("`/bridge help` lists every command.",)
    empty = await ask(world, "")
    assert not empty.ok and empty.title == "Unknown command"


async def test_an_unknown_action_lists_the_actions_there_are(world):
    reply = await ask(world, "contact delete #1")
    assert not reply.ok and reply.title == "/contact has no action delete"
    assert reply.lines == (await ask(world, "contact help")).lines


async def test_bridge_help_of_an_unknown_command_says_so(world):
    reply = await ask(world, "bridge help nope")
    assert not reply.ok and reply.title == "There is no command nope"
    assert reply.lines == ("Usage: `/bridge help [command]`", "Example: `/bridge help contact`")


# -- /bridge status --------------------------------------------------------------------------


async def test_bridge_status_shows_accounts_queue_contacts_and_conversations(world):
    await world.says(4711, "Hello", first_name="Zoe")
    await world.says(4712, "Hi", first_name="Yan")
    root = await world.thread_of(4711)
    await world.thread_of(4712)

    async def idle():
        return await world.sql("select count(*) from outbox where state = 'pending'") == [(0,)]

    await eventually(idle, message="an empty outbox")
    reply = await ask(world, "bridge status")
    assert reply.ok and reply.title == "Bridge status"
    fields = dict(reply.fields)
    account = world.tg.token.split(":")[0]
    assert fields["Accounts"] == f"telegram:{account}"
    assert fields["Staff surfaces"] == "slack"
    assert re.fullmatch(r"done \d+", fields["Outbox"])
    assert (fields["Contacts"], fields["Open conversations"]) == ("2", "2")

    await world.slack.agent_says(root.channel, root.ts, "!close")
    await eventually(lambda: any("closed by" in t for t in world.texts(root)), message="closed")
    after = dict((await ask(world, "bridge status")).fields)
    assert (after["Contacts"], after["Open conversations"]) == ("2", "1")


async def test_bridge_status_on_a_quiet_bridge(world):
    fields = dict((await ask(world, "bridge status")).fields)
    assert fields["Outbox"] == "empty"
    assert (fields["Contacts"], fields["Open conversations"]) == ("0", "0")
