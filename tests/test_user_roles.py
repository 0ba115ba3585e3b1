"""`/user role|list|whoami`: admins give staff members roles, which count from the next command
on; admins from the settings stay admins; everybody can find out their id and role."""

from __future__ import annotations

import re

import pytest

from tests.commands_kit import ADMIN, command
from tests.world import start_world, stop_world

ANNA = "U0ANNA1"
BOB = "U0BOB22"
CARL = "U0CARL3"
WHEN = r"\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC"
USAGE = (
    "Usage: `/user role <@someone | user id> <admin | manager | agent | none>`",
    "Example: `/user role @anna manager`",
)


async def give(world, who: str, role: str, *, by: str = ADMIN):
    """`/user role <who> <role>` typed by `by` (Ada, the admin from the settings)."""
    return await command(world, f"user role {who} {role}", user=by, user_name="Ada")


async def stored_roles(world) -> list[tuple[str, str, str]]:
    return await world.sql("select user_id, role, granted_by from staff_roles order by user_id")


async def test_a_new_manager_may_use_manager_commands_at_once(world):
    before = await command(world, "channel create news", user=ANNA)
    assert not before.ok and before.title == "/channel create needs the manager role"
    assert before.lines == (
        f"You have the agent role. An admin can change it with `/user role {ANNA} manager`.",
    )
    reply = await give(world, ANNA, "manager")
    assert reply.ok
    assert reply.title == f"{ANNA} is now manager (was agent, the default)"
    assert reply.lines == (
        "As a manager they may change channels, templates, text blocks, the blacklist and"
        " contacts; broadcast.",
    )
    after = await command(world, "channel create news", user=ANNA, user_name="Anna")
    assert after.ok, after.text
    assert await world.sql("select name, created_by from channels") == [("news", "Anna")]
    assert await stored_roles(world) == [(ANNA, "manager", "Ada")]


async def test_taking_the_manager_role_back_refuses_manager_commands_again(world):
    await give(world, ANNA, "manager")
    reply = await give(world, ANNA, "agent")
    assert reply.ok and reply.title == f"{ANNA} is now agent (was manager)"
    assert reply.lines == (
        "As an agent they may reply to customers, use thread actions and look things up.",
    )
    refused = await command(world, "channel create news", user=ANNA)
    assert not refused.ok and refused.title == "/channel create needs the manager role"
    assert await world.sql("select count(*) from channels") == [(0,)]


async def test_a_slack_mention_names_the_staff_member(world):
    reply = await give(world, "<@U0ABC|anna>", "manager")
    assert reply.ok and reply.title == "U0ABC is now manager (was agent, the default)"
    assert await stored_roles(world) == [("U0ABC", "manager", "Ada")]
    assert (await command(world, "channel create news", user="U0ABC")).ok
    plain = await give(world, "<@U0DEF>", "manager")
    assert plain.ok and plain.title.startswith("U0DEF is now manager")


async def test_without_a_role_not_even_agent_commands_work(world):
    reply = await give(world, ANNA, "none")
    assert reply.ok and reply.title == f"{ANNA} is now none (was agent, the default)"
    assert reply.lines == ("With no role they may use no command but `/user whoami` and the help.",)
    for line in ("contact find anna", "blacklist list", "bridge status", "user list"):
        refused = await command(world, line, user=ANNA)
        assert not refused.ok, line
        assert refused.title == f"/{' '.join(line.split()[:2])} needs the agent role"
        assert refused.lines == (
            f"You have the none role. An admin can change it with `/user role {ANNA} agent`.",
        )
    thread_action = await command(world, "close", user=ANNA, thread="C0001/1.000001")
    assert not thread_action.ok and thread_action.title == "!close needs the agent role"
    # What someone without a role needs to ask for one still works.
    whoami = await command(world, "user whoami", user=ANNA)
    assert whoami.ok and whoami.title == f"You are {ANNA} on slack"
    [line] = whoami.lines
    assert re.fullmatch(
        rf"Role: \*none\* \(given by Ada on {WHEN}\): you may use no command but `/user whoami`"
        r" and the help\.",
        line,
    )
    assert (await command(world, "bridge help", user=ANNA)).ok
    assert (await command(world, "contact help", user=ANNA)).ok


async def test_only_an_admin_may_give_roles(world):
    await give(world, ANNA, "manager")
    by_manager = await give(world, BOB, "manager", by=ANNA)
    assert not by_manager.ok and by_manager.title == "/user role needs the admin role"
    assert by_manager.lines == (
        f"You have the manager role. An admin can change it with `/user role {ANNA} admin`.",
    )
    by_agent = await give(world, "me", "admin", by=BOB)
    assert not by_agent.ok and by_agent.title == "/user role needs the admin role"
    assert await stored_roles(world) == [(ANNA, "manager", "Ada")]


async def test_an_admin_given_by_an_admin_may_give_roles_too(world):
    reply = await give(world, ANNA, "admin")
    assert reply.ok
    assert reply.lines == ("As an admin they may do everything, including giving roles.",)
    assert (await give(world, BOB, "manager", by=ANNA)).ok
    assert (await command(world, "channel create news", user=BOB)).ok


async def test_admins_from_the_settings_stay_admins(world):
    await give(world, ANNA, "admin")
    for by, who in ((ANNA, ADMIN), (ADMIN, "me"), (ADMIN, f"<@{ADMIN}|ada>")):
        reply = await give(world, who, "agent", by=by)
        assert not reply.ok
        assert reply.title == (
            f"{ADMIN} is an admin from the settings ([bridge] admins) and stays one;"
            " take them out of the settings file to change that"
        )
    assert await stored_roles(world) == [(ANNA, "admin", "Ada")]
    whoami = await command(world, "user whoami")
    assert whoami.lines == (
        "Role: *admin* (from the settings): you may do everything, including giving roles.",
    )
    assert (await give(world, BOB, "manager")).ok


async def test_list_shows_the_admins_from_the_settings_and_every_role_given(world):
    await give(world, ANNA, "manager")
    await give(world, BOB, "none")
    reply = await command(world, "user list", user=CARL)
    assert reply.ok and reply.title == "Staff roles"
    first, *given, last = reply.lines
    assert first == f"`{ADMIN}` admin (from the settings)"
    assert len(given) == 2
    assert any(
        re.fullmatch(rf"`{ANNA}` manager on slack, given by Ada on {WHEN}", g) for g in given
    )
    assert any(re.fullmatch(rf"`{BOB}` none on slack, given by Ada on {WHEN}", g) for g in given)
    assert last == "Everybody else: agent (the default role)"


async def test_whoami_says_who_you_are_your_role_and_where_it_comes_from(world):
    default = await command(world, "user whoami", user=CARL)
    assert default.ok and default.title == f"You are {CARL} on slack"
    assert default.lines == (
        "Role: *agent* (the default role): you may reply to customers, use thread actions and"
        " look things up.",
    )
    await give(world, ANNA, "manager")
    [given] = (await command(world, "user whoami", user=ANNA)).lines
    assert re.fullmatch(rf"Role: \*manager\* \(given by Ada on {WHEN}\): you may change .*", given)


async def test_a_bad_role_word_answers_with_the_usage_and_the_choices(world):
    reply = await give(world, ANNA, "boss")
    assert not reply.ok
    assert reply.title == "Boss is not a role; choose one of none, agent, manager, admin"
    assert reply.lines == USAGE
    assert await stored_roles(world) == []


async def test_a_bad_call_answers_with_the_usage(world):
    cases = {
        "user role": "Arguments are missing",
        f"user role {ANNA}": "Missing arguments",
        f"user role {ANNA} manager agent": "Name one staff member and one role",
        "user role anna manager": (
            "Anna is not a staff member; mention them (@name) or use their id"
        ),
    }
    for line, title in cases.items():
        reply = await command(world, line)
        assert not reply.ok and reply.title == title, line
        assert reply.lines == USAGE, line
    assert await stored_roles(world) == []


class TestNoDefaultRole:
    """With `default_role = "none"` nobody may do anything until an admin gives a role."""

    @pytest.fixture
    async def world(self, tmp_path):
        w = await start_world(tmp_path, default_role="none")
        yield w
        await stop_world(w)

    async def test_strangers_may_only_ask_who_they_are(self, world):
        refused = await command(world, "contact find anna", user=CARL)
        assert not refused.ok and refused.title == "/contact find needs the agent role"
        whoami = await command(world, "user whoami", user=CARL)
        assert whoami.lines == (
            "Role: *none* (the default role): you may use no command but `/user whoami` and the"
            " help.",
        )
        reply = await give(world, CARL, "agent")
        assert reply.ok and reply.title == f"{CARL} is now agent (was none, the default)"
        assert (await command(world, "contact find anna", user=CARL)).ok
        roles = await command(world, "user list", user=CARL)
        assert roles.lines[-1] == "Everybody else: none (the default role)"
