"""Broadcasts in tests: subscribers who joined by keyword, the newsletters they received."""

from __future__ import annotations

from tests.commands_kit import MANAGER, command
from tests.harness import eventually

BASE = 9190000


async def subscribers(world, count: int, *, start: int = 0) -> list[int]:
    """Telegram customers who joined the channel by keyword."""
    chats = [BASE + start + n for n in range(count)]
    for chat in chats:
        await world.says(chat, "JOIN-NEWS", first_name=f"Reader{chat % 1000}", last_name="X")
    await eventually(
        lambda: all(world.tg.messages_to(c) for c in chats), message="join confirmations"
    )
    return chats


def newsletters(world, chat: int) -> list[str]:
    return [m.text for m in world.tg.messages_to(chat) if m.text and "Sale" in m.text]


async def new(world, line: str) -> int:
    reply = await command(world, f"broadcast new {line}", user=MANAGER)
    assert reply.ok, reply.text
    return int(reply.title.split("#")[1].split()[0])
