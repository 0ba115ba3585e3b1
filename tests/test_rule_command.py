"""`/rule`: managers add, change, switch and delete rules; anyone may list, show and test;
what cannot work is refused when saved, with the reason."""

from __future__ import annotations

import pytest

from tests.commands_kit import AGENT, MANAGER, command


@pytest.fixture(autouse=True)
async def manager(world):
    assert (await command(world, f"user role {MANAGER} manager")).ok


HOURS = (
    'opening-hours contain "open, hours" --on telegram,whatsapp --hours 18:00-08:00 '
    '--days mon-fri --limit every 1d --priority 5 --do "answer: We open at 8, {NICKNAME}."'
)


async def test_add_list_show_edit_disable_enable_delete(world):
    added = await command(world, f"rule add {HOURS}", user=MANAGER)
    assert added.ok, added.text
    assert added.title == "Rule opening-hours added"
    assert (
        "When: contains open, hours on telegram, whatsapp, 18:00-08:00, mon,tue,wed,thu,fri"
        in added.lines
    )
    listed = await command(world, "rule list", user=AGENT)
    assert listed.title == "1 rule"
    assert "`opening-hours`" in listed.lines[0] and "answer: We open at 8" in listed.lines[0]
    edited = await command(world, "rule edit opening-hours --hours any --days all", user=MANAGER)
    assert edited.ok and "When: contains open, hours on telegram, whatsapp" in edited.lines
    assert (await command(world, "rule disable opening-hours", user=MANAGER)).ok
    assert "(disabled)" in (await command(world, "rule list")).lines[0]
    assert (await command(world, "rule enable opening-hours", user=MANAGER)).ok
    shown = await command(world, "rule show opening-hours", user=AGENT)
    history = [line.split(" by ")[0] for line in shown.lines if " by UMANAGER on " in line]
    assert history == ["enable", "disable", "edit", "add"]
    assert (await command(world, "rule delete opening-hours", user=MANAGER)).ok
    assert (await command(world, "rule list")).title == "No rules yet"
    assert await world.sql("select change from rule_changes order by id") == [
        ("add",),
        ("edit",),
        ("disable",),
        ("enable",),
        ("delete",),
    ]


async def test_agents_may_look_and_test_but_not_change(world):
    refused = await command(world, f"rule add {HOURS}", user=AGENT)
    assert not refused.ok and "needs the manager role" in refused.title
    assert await world.sql("select count(*) from rules") == [(0,)]


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('evil regexp "(a)\\1" --do "answer: x"', "refuses the regular expression"),
        ('look regexp "(?=x)y" --do "answer: x"', "refuses the regular expression"),
        ('ph contain "x" --do "answer: Hello {FIRSTNAME}"', "FIRSTNAME"),
        ('m contain "x" --do "mail: not-an-address"', "mail"),
        ('w contain "x" --do "post: ftp://example.org"', "http(s) address"),
        ('c contain "x" --do "join: nosuchchannel"', "no channel nosuchchannel"),
        ('l contain "x" --limit every --do "answer: x"', "every"),
        ('d contain "x" --days someday --do "answer: x"', "days"),
        ('h contain "x" --hours 25:00-26:00 --do "answer: x"', "time window"),
        ('n contain "x"', "--do"),
        ('k sometimes --do "answer: x"', "keyword type"),
        ('a contain "x" --do "dance: now"', "not an action"),
    ],
)
async def test_what_cannot_work_is_refused_with_the_reason(world, line, problem):
    reply = await command(world, f"rule add {line}", user=MANAGER)
    assert not reply.ok
    assert problem.lower() in reply.text.lower(), reply.text
    assert await world.sql("select count(*) from rules") == [(0,)]


async def test_a_name_is_taken_once(world):
    assert (await command(world, f"rule add {HOURS}", user=MANAGER)).ok
    again = await command(world, f"rule add {HOURS}", user=MANAGER)
    assert not again.ok and "exists" in again.title


async def test_test_shows_what_would_fire_without_doing_it(world):
    assert (await command(world, f"rule add {HOURS}", user=MANAGER)).ok
    assert (await command(world, 'rule add fallback rest --do "answer: Later."', user=MANAGER)).ok
    night = await command(
        world, 'rule test "are you open?" --on telegram --at "2026-12-01 22:00"', user=AGENT
    )
    assert night.title.startswith("1 rule would fire on telegram (Tue 2026-12-01 22:00")
    assert night.lines[0].startswith("`opening-hours`: answered automatically")
    day = await command(world, 'rule test "are you open?" --at "2026-12-01 12:00"', user=AGENT)
    assert "`fallback` (rest)" in day.lines[0]
    sms = await command(world, 'rule test "are you open?" --on sms --at "2026-12-01 22:00"')
    assert "fallback" in sms.lines[0]
    assert await world.sql("select count(*) from rule_firings") == [(0,)]
    assert world.tg.messages_to(1) == []


async def test_help_documents_the_compact_syntax(world):
    reply = await command(world, "rule add help")
    assert "Example:" in reply.text and "--do" in reply.text
