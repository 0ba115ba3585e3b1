"""A bot's answer is read up to a cap (64 KB), never whole whatever its size, and the files it
names are read chunk after chunk up to the messengers' limit: a bot (or whoever answers in its
place) cannot make the bridge hold a huge answer, and a big file reaches the customer whole."""

from __future__ import annotations

import os

import pytest

from tests.commands_kit import MANAGER, command
from tests.harness import eventually
from tests.security.outbound_kit import guarded_rig

ANNA = 9170001
MIB = 1024 * 1024


@pytest.fixture
async def rig(tmp_path):
    async with guarded_rig(tmp_path) as running:
        yield running


def customer_texts(world, chat_id: int) -> list[str]:
    return [m.text or "" for m in world.tg.messages_to(chat_id)]


async def test_a_bot_answer_past_64_kb_is_refused_and_the_thread_says_why(rig):
    world, _, bot, _ = rig
    bot.bot_answer = {"text": "A" * (70 * 1024)}
    reply = await command(
        world, f'rule add chat always --do "bot: {bot.url("/bot")}"', user=MANAGER
    )
    assert reply.ok, reply.text
    await world.says(ANNA, "hello", first_name="Anna")
    root = await world.thread_of(ANNA)
    [notice] = await world.notices(root, "the web forward failed", message="the refusal")
    assert "larger than 64 KB" in notice
    rows = await world.sql("select state, attempts from outbox where kind = 'rule.http'")
    assert rows == [("failed", 1)], rows
    assert not any("AAAA" in text for text in customer_texts(world, ANNA))


async def test_a_one_mib_file_a_bot_names_reaches_the_customer_whole(rig):
    world, _, bot, _ = rig
    data = os.urandom(MIB)
    bot.files["manual.pdf"] = (data, "application/pdf")
    bot.bot_answer = {"text": "Here is the manual", "media": [bot.url("/files/manual.pdf")]}
    reply = await command(
        world, f'rule add chat always --do "bot: {bot.url("/bot")}"', user=MANAGER
    )
    assert reply.ok, reply.text
    await world.says(ANNA, "the manual please", first_name="Anna")
    sent = await eventually(
        lambda: [m for m in world.tg.messages_to(ANNA) if m.file_bytes], message="the file"
    )
    assert sent[0].file_bytes == data
