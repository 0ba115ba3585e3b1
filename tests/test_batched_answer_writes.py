"""What a batch of automatic answers writes and reads, on SQLite and PostgreSQL: rule firings
counted per rule and contact however many fired at once, the contacts' state read in one go,
and the delivery outcomes of many sends written with a few statements, a status never moving
back."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import event, select

from bridge.types import Action, ContactId, MessageId, Rule
from storage import Tx
from storage.records import MessageStatusWrite
from storage.tables import messages, rule_firings

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def counted(tx: Tx, fn: Callable[[], Any]) -> int:
    """How many statements `fn` runs on the transaction's connection."""
    seen: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    event.listen(tx.conn, "before_cursor_execute", count)
    try:
        fn()
    finally:
        event.remove(tx.conn, "before_cursor_execute", count)
    return len(seen)


def people(tx: Tx, count: int) -> list[ContactId]:
    records = tx.insert_contacts(
        [
            {
                "platform": "telegram",
                "account": "bot",
                "chat_id": str(9000 + n),
                "display_name": f"Reader {n}",
                "first_seen": NOW,
                "last_seen": NOW - timedelta(minutes=n),
                "message_count": 1,
            }
            for n in range(count)
        ]
    )
    return [r.id for r in records]


def answers(tx: Tx, count: int) -> list[MessageId]:
    [cid] = people(tx, 1)
    [conv] = tx.insert_conversations([{"contact_id": cid, "status": "open", "opened_at": NOW}])
    rows = [
        {
            "conversation_id": conv.id,
            "direction": "out",
            "platform": "telegram",
            "account": "bot",
            "external_id": None,
            "author": "bridge",
            "text": f"answer {n}",
            "attachments": None,
            "sent_at": NOW,
            "status": "queued",
        }
        for n in range(count)
    ]
    return tx.insert_messages(rows)


def rule(name: str) -> Rule:
    return Rule(
        id=0,
        name=name,
        keyword_type="contain",
        pattern="hello",
        actions=(Action("autoAnswer", text="Hi"),),
    )


async def test_firings_are_counted_per_rule_and_contact_in_one_write(database):
    def fire(tx: Tx) -> tuple[int, int, dict[tuple[int, int], datetime]]:
        ids = people(tx, 3)
        greet = tx.rules.add_rule(rule("greet"), "U1", NOW)
        hours = tx.rules.add_rule(rule("hours"), "U1", NOW)
        first = [(greet.id, cid, NOW) for cid in ids] + [(greet.id, ids[0], NOW)]
        later = NOW + timedelta(hours=1)
        second = [(greet.id, ids[0], later), (hours.id, ids[1], later)]
        statements = counted(tx, lambda: tx.rules.record_firings(first))
        statements_again = counted(tx, lambda: tx.rules.record_firings(second))
        last = tx.rules.last_firings([(greet.id, c) for c in ids] + [(hours.id, ids[1])])
        return statements, statements_again, last

    statements, statements_again, last = await database.write_tx(fire)
    assert statements == statements_again == 1
    rows = await database.run_read(
        lambda conn: [
            tuple(r)
            for r in conn.execute(
                select(
                    rule_firings.c.rule_id, rule_firings.c.contact_id, rule_firings.c.count
                ).order_by(rule_firings.c.rule_id, rule_firings.c.contact_id)
            )
        ]
    )
    [(greet, first, _), *_] = rows
    assert [count for _, _, count in rows] == [3, 1, 1, 1]
    assert last[(greet, first)] == NOW + timedelta(hours=1)
    assert all(at.tzinfo is not None for at in last.values())


async def test_contacts_of_a_batch_are_read_with_their_state_at_once(database):
    def read(tx: Tx) -> Any:
        ids = people(tx, 4)
        tx.set_opt_out(ids[2], NOW, "replied STOP")
        found: dict[ContactId, Any] = {}
        statements = counted(tx, lambda: found.update(tx.contacts_by_ids([*ids, 999_999])))
        return ids, found, statements

    ids, found, statements = await database.write_tx(read)
    assert statements == 1
    assert sorted(found) == sorted(ids)
    assert [found[c].last_seen for c in ids] == [NOW - timedelta(minutes=n) for n in range(4)]
    assert [found[c].opted_out_at for c in ids] == [None, None, NOW, None]
    assert [found[c].display_name for c in ids] == [f"Reader {n}" for n in range(4)]


async def test_many_delivery_outcomes_cost_a_few_statements_and_never_move_back(database):
    def deliver(tx: Tx) -> tuple[list[MessageId], int, int]:
        ids = answers(tx, 30)
        sent = [MessageStatusWrite(i, "sent", f"ext-{i}") for i in ids]
        few = counted(tx, lambda: tx.write_statuses(sent[:2]))
        many = counted(tx, lambda: tx.write_statuses(sent[2:]))
        tx.write_statuses(
            [
                MessageStatusWrite(ids[0], "read"),
                MessageStatusWrite(ids[1], "failed", None, "403", "blocked by the user"),
            ]
        )
        # A late `sent` after `read`, and one message named twice: in order, never back.
        tx.write_statuses(
            [
                MessageStatusWrite(ids[0], "sent"),
                MessageStatusWrite(ids[2], "delivered"),
                MessageStatusWrite(ids[2], "sent"),
            ]
        )
        return ids, few, many

    ids, few, many = await database.write_tx(deliver)
    assert few == many == 2
    rows = await database.run_read(
        lambda conn: [
            tuple(r)
            for r in conn.execute(
                select(
                    messages.c.external_id,
                    messages.c.status,
                    messages.c.error_code,
                    messages.c.error_reason,
                ).order_by(messages.c.id)
            )
        ]
    )
    assert rows[:4] == [
        (f"ext-{ids[0]}", "read", None, None),
        (f"ext-{ids[1]}", "failed", "403", "blocked by the user"),
        (f"ext-{ids[2]}", "delivered", None, None),
        (f"ext-{ids[3]}", "sent", None, None),
    ]
    assert {status for _, status, _, _ in rows[3:]} == {"sent"}
