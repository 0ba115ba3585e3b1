"""What Slack and Matrix share (connectors/staff.py): command lines, handled ids, names."""

from __future__ import annotations

import asyncio

from connectors.staff import Names, NameUnknown, SeenIds, thread_command


class _State:
    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    async def get(self, key: str) -> str | None:
        return self.values.get(key)

    async def put(self, key: str, value: str) -> None:
        self.values[key] = value


def test_a_command_is_a_bang_word_at_the_start():
    assert thread_command("!close") == "close"
    assert thread_command("!assign @me ") == "assign @me "
    assert thread_command("! close") is None
    assert thread_command("!1st") is None
    assert thread_command("hello !close") is None
    assert thread_command("!close-all\tnow") == "close-all\tnow"


async def test_handled_ids_survive_a_restart_and_keep_the_newest():
    state = _State()
    seen = SeenIds(state, "k", keep=2)
    assert await seen.first("a")
    assert not await seen.first("a")
    await seen.remember("b")
    await seen.remember("c")
    again = SeenIds(state, "k", keep=2)  # a new process reads what the last one stored
    assert await again.seen("c")
    assert await again.seen("b")
    assert not await again.seen("a")


async def test_concurrent_deliveries_of_one_id_run_once():
    seen = SeenIds(_State(), "k", keep=10)
    firsts = await asyncio.gather(*(seen.first("x") for _ in range(5)))
    assert firsts.count(True) == 1


async def test_names_are_asked_once_unless_unknown():
    asked: list[str] = []

    async def look_up(user: str) -> str | None:
        asked.append(user)
        if user == "@later":
            raise NameUnknown(user)
        return None if user == "@nameless" else user.upper()

    names = Names(look_up)
    assert await names.of("@ann") == "@ANN"
    assert await names.of("@ann") == "@ANN"
    assert await names.of("@nameless") is None
    assert await names.of("@nameless") is None
    assert await names.of("@later") is None
    assert await names.of("@later") is None
    assert asked == ["@ann", "@nameless", "@later", "@later"]
