"""Chatbot rules answer a whole batch of customers' messages together: every customer gets the
answers they would get one message at a time, in the same order, those who may not be sent to
get none, and the batch costs the same few statements however many customers it answers."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import event

import bridge.pipeline.chatbot as chatbot_module
from bridge.types import (
    InboundMessage,
)
from tests.commands_kit import command, services_of
from tests.harness import eventually
from tests.pipeline_kit import Rig, rig_fixture, text_from
from tests.world import start_world, stop_world

ANN, BOB, CAROL, DAN, EVE = 7100001, 7100002, 7100003, 7100004, 7100005


@pytest.fixture
async def world(tmp_path):
    # Long polling: the updates pushed together come back in one getUpdates answer, one batch.
    world = await start_world(tmp_path, telegram_mode="polling")
    yield world
    await stop_world(world)


async def add_rule(world, line: str) -> None:
    reply = await command(world, f"rule add {line}")
    assert reply.ok, reply.text


def texts_to(world, chat: int) -> list[str]:
    return [m.text or "" for m in world.tg.messages_to(chat)]


async def settled(world) -> None:
    async def idle() -> bool:
        return await world.sql("select count(*) from outbox where state = 'pending'") == [(0,)]

    await eventually(idle, message="an empty outbox")


async def test_a_batch_gets_each_conversations_answers_in_order_and_none_for_the_refused(world):
    # Carol and Dan are known before: Carol is blacklisted for outgoing messages, Dan opted out.
    for chat in (CAROL, DAN):
        world.tg.push(world.tg.text_update(chat, "Good morning", first_name=f"C{chat}"))
        await world.thread_of(chat)
    reply = await command(world, f"blacklist add {CAROL} out sends spam links")
    assert reply.ok, reply.text
    [(dan,)] = await world.sql(f"select id from contacts where chat_id = '{DAN}'")
    now = datetime.now(UTC)
    await services_of(world).write(lambda tx: tx.set_opt_out(dan, now, "replied STOP"))
    await add_rule(world, 'greet contain "hello" --limit always --do "answer: Hi {NICKNAME}!"')
    await add_rule(world, 'hours contain "hours" --limit always --do "answer: We open at 8."')

    batch = [
        (ANN, "hello there", "Ann"),
        (BOB, "hello, what are your hours?", "Bob"),  # two rules
        (CAROL, "hello?", "Carol"),
        (DAN, "hello again", "Dan"),
        (EVE, "hello", "Eve"),
        (ANN, "and your hours?", "Ann"),  # Ann's second message, in the same batch
        (EVE, "just saying hi", "Eve"),  # no rule
    ]
    for chat, text, name in batch:
        world.tg.push(world.tg.text_update(chat, text, first_name=name))
    await eventually(
        lambda: len(world.tg.params_of("sendMessage")) >= 4, message="the answers sent"
    )
    await settled(world)

    assert texts_to(world, ANN) == ["Hi Ann!", "We open at 8."]
    assert texts_to(world, BOB) == ["Hi Bob!", "We open at 8."]
    assert texts_to(world, EVE) == ["Hi Eve!"]
    assert texts_to(world, CAROL) == []
    assert texts_to(world, DAN) == []
    rows = await world.sql(
        "select c.chat_id, m.text, m.author, m.status from messages m"
        " join conversations v on v.id = m.conversation_id join contacts c on c.id = v.contact_id"
        " where m.direction = 'out' order by m.id"
    )
    per_chat: dict[str, list[str]] = {}
    for chat_id, text, author, status in rows:
        assert (author, status) == ("bridge", "sent")
        per_chat.setdefault(str(chat_id), []).append(str(text))
    assert per_chat == {
        str(ANN): ["Hi Ann!", "We open at 8."],
        str(BOB): ["Hi Bob!", "We open at 8."],
        str(EVE): ["Hi Eve!"],
    }
    refused = "Rule 'greet': could not answer (the customer may not be messaged)"
    for chat in (CAROL, DAN):
        root = await world.thread_of(chat)
        await world.notices(root, refused, message=f"the refusal in {chat}'s thread")
    firings = await world.sql(
        "select r.name, c.chat_id, f.count from rule_firings f join rules r on r.id = f.rule_id"
        " join contacts c on c.id = f.contact_id order by r.name, c.chat_id"
    )
    assert firings == [("greet", str(c), 1) for c in (ANN, BOB, CAROL, DAN, EVE)] + [
        ("hours", str(ANN), 1),
        ("hours", str(BOB), 1),
    ]


rig = rig_fixture()
_ids = itertools.count(1)


def message(chat: int, text: str, at: datetime) -> InboundMessage:
    return text_from(chat, text, at, f"batch-{next(_ids)}")


async def statements_of(rig: Rig, chats: range, text: str) -> int:
    """The statements one batch (a message from each chat, stored in one transaction) runs."""
    seen: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    engine = rig.db.sync_writer
    assert engine is not None
    event.listen(engine, "before_cursor_execute", count)
    try:
        await rig.pipeline.on_inbound([message(chat, text, rig.clock()) for chat in chats])
    finally:
        event.remove(engine, "before_cursor_execute", count)
    return len(seen)


async def test_answering_more_customers_in_one_batch_costs_no_more_statements(rig, monkeypatch):
    # The rules and keywords are read again every few seconds; not within this test.
    monkeypatch.setattr(chatbot_module, "RULES_CACHE_S", 3600.0)
    monkeypatch.setattr(chatbot_module, "KEYWORD_CACHE_S", 3600.0)
    for line in (
        'greet contain "hello" --limit always --do "answer: Hi {NICKNAME}!"',
        'hours contain "hours" --limit always --do "answer: We open at 8."',
    ):
        assert (await rig.command(f"rule add {line}")).ok
    await rig.dispatcher.stop()  # its own writes would count too
    await statements_of(rig, range(100, 130), "good morning")  # every thread open, known
    few = await statements_of(rig, range(100, 102), "hello, your hours?")
    many = await statements_of(rig, range(102, 130), "hello, your hours?")
    again = await statements_of(rig, range(100, 130), "hello, your hours?")  # fired before
    assert few == many == again, (few, many, again)
    rows = await rig.sql(
        "select count(*), count(distinct conversation_id) from messages where direction = 'out'"
    )
    assert rows == [(2 * (2 + 28 + 30), 30)]
