"""The upgrade path: an empty database migrated revision by revision to head keeps the data
written at early revisions; going down to base and up again works; and the schema at head is
what storage/models.py declares (no drift a fresh install and an upgraded one would differ by).
"""

from __future__ import annotations

import asyncio
import re
import secrets
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection

from bridge.types import ConversationStatus
from storage import Database, Tx
from storage.models import Base, UTCDateTime
from storage.tables import messages

ROOT = Path(__file__).resolve().parent.parent
AT = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
LATER = datetime(2026, 11, 25, 10, 5, tzinfo=UTC)

# Tables as an early revision knows them: only the columns it has, typed like the bridge's.
# Ids are left to the database (an explicit id would not move PostgreSQL's identity on).
contacts_0001 = sa.table(
    "contacts",
    *(sa.column(c) for c in ("id", "platform", "account", "chat_id", "display_name")),
    *(sa.column(c) for c in ("username", "language", "message_count", "opt_in_source")),
    *(sa.column(c, UTCDateTime()) for c in ("first_seen", "last_seen", "opt_in_at")),
)
conversations_0001 = sa.table(
    "conversations",
    *(sa.column(c) for c in ("id", "contact_id", "status", "previous_id")),
    *(sa.column(c, UTCDateTime()) for c in ("opened_at", "closed_at", "last_inbound_at")),
)
messages_0001 = sa.table(
    "messages",
    *(sa.column(c) for c in ("id", "conversation_id", "direction", "platform", "account")),
    *(sa.column(c) for c in ("external_id", "author", "text", "deleted", "status")),
    sa.column("attachments", sa.JSON),
    sa.column("sent_at", UTCDateTime()),
)
threads_0001 = sa.table(
    "staff_threads", *(sa.column(c) for c in ("conversation_id", "surface", "thread_ref"))
)
outbox_0001 = sa.table(
    "outbox",
    *(sa.column(c) for c in ("kind", "idem_key", "lane", "rate_keys", "state", "attempts")),
    *(sa.column(c) for c in ("next_at", "created_at")),
    sa.column("payload", sa.JSON),
)
channels_0003 = sa.table(
    "channels",
    *(sa.column(c) for c in ("id", "name", "join_keyword", "created_by")),
    sa.column("created_at", UTCDateTime()),
)
members_0003 = sa.table(
    "channel_members",
    *(sa.column(c) for c in ("channel_id", "contact_id", "source")),
    sa.column("joined_at", UTCDateTime()),
)
rules_0005 = sa.table(
    "rules",
    *(sa.column(c) for c in ("name", "keyword_type", "pattern", "created_by", "updated_by")),
    sa.column("actions", sa.JSON),
    *(sa.column(c, UTCDateTime()) for c in ("created_at", "updated_at")),
)
broadcasts_0008 = sa.table(
    "broadcasts",
    *(sa.column(c) for c in ("id", "created_by", "surface", "text", "state")),
    *(sa.column(c, sa.JSON) for c in ("channel_ids", "platforms")),
    sa.column("created_at", UTCDateTime()),
)
sends_0008 = sa.table(
    "broadcast_sends",
    *(sa.column(c) for c in ("broadcast_id", "contact_id", "state", "platform", "account")),
    *(sa.column(c) for c in ("external_id",)),
    sa.column("at", UTCDateTime()),
)


def _at_0001(conn: Connection) -> None:
    conn.execute(
        sa.insert(contacts_0001).values(
            platform="telegram",
            account="123456",
            chat_id="1001",
            display_name="Anna",
            username="anna",
            message_count=2,
            opt_in_source="first message",
            first_seen=AT,
            last_seen=LATER,
            opt_in_at=AT,
        )
    )
    conn.execute(sa.insert(conversations_0001).values(contact_id=1, status="open", opened_at=AT))
    conn.execute(
        sa.insert(threads_0001).values(conversation_id=1, surface="slack", thread_ref="C0001/1.0")
    )
    for i, (direction, text, status) in enumerate(
        [("in", "Hello", None), ("out", "Hi Anna", "sent")], start=1
    ):
        conn.execute(
            sa.insert(messages_0001).values(
                conversation_id=1,
                direction=direction,
                platform="telegram",
                account="123456",
                external_id=f"1001:{i}",
                author="Anna" if direction == "in" else "agent",
                text=text,
                attachments=None,
                sent_at=AT,
                deleted=False,
                status=status,
            )
        )
    conn.execute(
        sa.insert(outbox_0001).values(
            kind="staff.card",
            idem_key="card:1:slack",
            lane="c1:slack",
            rate_keys="slack:update",
            payload={"conv": 1, "surface": "slack"},
            state="pending",
            attempts=0,
            next_at=0.0,
            created_at=1.0,
        )
    )
    conn.execute(sa.text("INSERT INTO kv (key, value) VALUES ('surface.slack.x', 'kept')"))


def _at_0003(conn: Connection) -> None:
    conn.execute(
        sa.insert(channels_0003).values(
            name="news", join_keyword="join news", created_by="U1", created_at=AT
        )
    )
    conn.execute(
        sa.insert(members_0003).values(channel_id=1, contact_id=1, source="keyword", joined_at=AT)
    )


def _at_0005(conn: Connection) -> None:
    conn.execute(
        sa.insert(rules_0005).values(
            name="hours",
            keyword_type="contain",
            pattern="open",
            actions=[{"type": "answer", "text": "We open at 8"}],
            created_by="U1",
            updated_by="U1",
            created_at=AT,
            updated_at=AT,
        )
    )


def _at_0008(conn: Connection) -> None:
    conn.execute(
        sa.insert(broadcasts_0008).values(
            created_by="U1",
            surface="slack",
            text="Sale on Friday",
            state="done",
            channel_ids=[1],
            platforms=["telegram"],
            created_at=AT,
        )
    )
    conn.execute(
        sa.insert(sends_0008).values(
            broadcast_id=1,
            contact_id=1,
            state="sent",
            platform="telegram",
            account="123456",
            external_id="1001:3",
            at=AT,
        )
    )


WRITES = {"0001": _at_0001, "0003": _at_0003, "0005": _at_0005, "0008": _at_0008}


def _tables(conn: Connection) -> set[str]:
    return set(sa.inspect(conn).get_table_names()) - {"alembic_version"}


def _scalar(conn: Connection, query: str) -> Any:
    return conn.execute(sa.text(query)).scalar_one()


async def test_every_revision_in_turn_keeps_what_earlier_ones_stored(db_url):
    db = Database(db_url)
    try:
        state = await db.schema_state()
        assert state.current is None
        revisions = state.pending
        assert revisions[0] == "0001" and set(WRITES) <= set(revisions)
        for revision in revisions:
            await db.migrate(revision)
            assert (await db.schema_state()).current == revision
            if revision in WRITES:
                await db.run_write(WRITES[revision])
            # Every step keeps what is there: the first contact's messages, say.
            assert await db.run_read(lambda c: _scalar(c, "SELECT count(*) FROM messages")) == 2
        final = await db.schema_state()
        assert final.current == final.head and not final.pending

        def read(conn: Connection) -> dict[str, Any]:
            tx = Tx(conn)
            return {
                "contact": tx.contact(1),
                "conversation": tx.conversation(1),
                "messages": [tx.message(1), tx.message(2)],
                "outbox": tx.outbox_counts(),
                "bulk": _scalar(conn, "SELECT bulk FROM outbox"),
                "kv": tx.kv_get("surface.slack.x"),
                "member": _scalar(conn, "SELECT source FROM channel_members"),
                "rule": conn.execute(
                    sa.text("SELECT name, enabled, priority, weekdays FROM rules")
                ).one(),
                "broadcast": tx.broadcasts.get(1),
                "sends": _scalar(conn, "SELECT count(*) FROM broadcast_sends"),
            }

        got = await db.run_read(read)
        contact = got["contact"]
        assert (contact.display_name, contact.chat_id, contact.message_count) == ("Anna", "1001", 2)
        assert contact.last_seen == LATER and contact.opted_out_at is None
        assert got["conversation"].status is ConversationStatus.OPEN
        assert [(m.direction, m.text) for m in got["messages"]] == [
            ("in", "Hello"),
            ("out", "Hi Anna"),
        ]
        assert got["outbox"] == {"pending": 1} and not got["bulk"]
        assert got["kv"] == "kept" and got["member"] == "keyword"
        # Columns added later got their defaults for the rows already there.
        assert tuple(got["rule"]) == ("hours", True, 0, "0123456")
        assert got["broadcast"].text == "Sale on Friday" and got["broadcast"].publish == ()
        assert got["sends"] == 1

        # Ids are never handed out twice (0004 on SQLite): erase the newest message, add one.
        def erase_and_add(conn: Connection) -> int:
            conn.execute(sa.text("DELETE FROM messages WHERE id = 2"))
            values = {
                "conversation_id": 1,
                "direction": "in",
                "platform": "telegram",
                "account": "123456",
                "external_id": "1001:9",
                "text": "again",
                "sent_at": LATER,
                "deleted": False,
            }
            return int(conn.execute(sa.insert(messages).values(**values)).inserted_primary_key[0])

        assert await db.run_write(erase_and_add) == 3
    finally:
        await db.close()


async def test_down_to_base_and_up_again(db_url):
    db = Database(db_url)
    try:
        await db.migrate()
        await db.run_write(_at_0001)
        await db.downgrade("base")
        assert (await db.schema_state()).current is None
        assert await db.run_read(_tables) == set()
        await db.migrate()
        state = await db.schema_state()
        assert state.current == state.head
        assert await db.run_read(_tables) == set(Base.metadata.tables)
    finally:
        await db.close()


def _default(text: Any) -> str | None:
    """A server default as the database or the metadata writes it, in one spelling."""
    if text is None:
        return None
    value = re.sub(r"::[a-z ]+$", "", str(text).strip())  # PostgreSQL's casts: '[]'::json
    while len(value) >= 2 and value[0] == "(" and value[-1] == ")":  # SQLite's ('')
        value = value[1:-1].strip()
    if len(value) >= 2 and value[0] == value[-1] == "'":
        value = value[1:-1]
    return {"true": "1", "false": "0"}.get(value.lower(), value)


def _compare_default(
    context: Any,
    inspected_column: Any,
    metadata_column: Any,
    inspected_default: Any,
    metadata_default: Any,
    rendered_metadata_default: Any,
) -> bool:
    # Alembic's own comparison cannot compare a JSON default on PostgreSQL (no = for json)
    # and takes an empty string default for none; compare the texts instead.
    return _default(inspected_default) != _default(rendered_metadata_default)


async def test_schema_at_head_is_what_the_models_declare(db_url):
    db = Database(db_url)
    try:
        await db.migrate()

        def differences(conn: Connection) -> list[Any]:
            context = MigrationContext.configure(
                conn,
                opts={"compare_type": True, "compare_server_default": _compare_default},
            )
            return list(compare_metadata(context, Base.metadata))

        assert await db.run_read(differences) == []
        if db.dialect == "sqlite":
            # Not compared by Alembic: the tables whose ids must never come back.
            def autoincrement(conn: Connection) -> dict[str, bool]:
                rows = conn.execute(
                    sa.text("SELECT name, sql FROM sqlite_master WHERE type='table'")
                )
                return {name: "AUTOINCREMENT" in (sql or "").upper() for name, sql in rows}

            found = await db.run_read(autoincrement)
            for name, table in Base.metadata.tables.items():
                wanted = bool(table.dialect_kwargs.get("sqlite_autoincrement"))
                assert found[name] == wanted, f"{name}: AUTOINCREMENT {found[name]}, not {wanted}"
    finally:
        await db.close()


async def test_processes_starting_together_migrate_one_after_the_other(pg_cluster):
    # PostgreSQL only: several processes share one database (one process writes SQLite).
    url = str(pg_cluster.create_database(f"together_{secrets.token_hex(4)}"))
    first, second = Database(url), Database(url)
    try:
        await asyncio.gather(first.migrate(), second.migrate())
        state = await second.schema_state()
        assert state.current == state.head
    finally:
        await first.close()
        await second.close()


async def test_migrate_command_says_what_it_applied(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'bridge.db'}"
    db = Database(url)
    state = await db.schema_state()
    await db.migrate(state.pending[-3])
    await db.close()
    config = tmp_path / "bridge.toml"
    config.write_text(f'[bridge]\ndatabase = "{url}"\nlog_level = "WARNING"\n')

    async def migrate() -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(ROOT / "run.py"),
            "migrate",
            "--config",
            str(config),
            cwd=str(tmp_path),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 120)
        assert proc.returncode is not None
        return proc.returncode, out.decode()

    code, out = await migrate()
    assert code == 0 and f"applied {', '.join(state.pending[-2:])}" in out
    code, out = await migrate()
    assert code == 0 and "nothing to do" in out
