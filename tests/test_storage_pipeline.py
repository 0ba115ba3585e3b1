"""The inbound and staff paths of the pipeline store the right rows, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from bridge.config import Settings
from bridge.pipeline import Pipeline
from bridge.types import (
    TELEGRAM,
    AccountId,
    ChatId,
    CustomerProfile,
    ExternalMessageId,
    InboundEdit,
    InboundMessage,
)
from storage import Database, Tx, Writer

T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def message(chat: str, n: int, text: str = "hello", payload: str | None = None) -> InboundMessage:
    return InboundMessage(
        platform=TELEGRAM,
        account=AccountId("42"),
        chat_id=ChatId(chat),
        external_id=ExternalMessageId(f"{chat}:{n}"),
        profile=CustomerProfile(display_name=f"Customer {chat}", username=f"user{chat}"),
        text=text,
        sent_at=T0 + timedelta(seconds=n),
        start_payload=payload,
    )


@pytest.fixture
async def pipeline(database: Database):
    writer = Writer(database)
    await writer.start()
    yield Pipeline(Settings(), database, writer)
    await writer.stop()


async def rows(db: Database, sql: str) -> list[tuple]:
    async with db.read() as conn:
        return [tuple(r) for r in await conn.execute(text(sql))]


async def test_first_message_creates_contact_conversation_and_message(pipeline, database):
    await pipeline.on_inbound([message("100", 1, "/start promo_tag", payload="promo_tag")])
    assert await rows(
        database, "select chat_id, display_name, message_count, opt_in_source from contacts"
    ) == [("100", "Customer 100", 1, "deep link: promo_tag")]
    assert await rows(database, "select status from conversations") == [("open",)]
    assert await rows(database, "select direction, text from messages") == [
        ("in", "/start promo_tag")
    ]


async def test_same_update_twice_is_stored_once(pipeline, database):
    await pipeline.on_inbound([message("100", 1), message("100", 1)])
    await pipeline.on_inbound([message("100", 1)])
    assert await rows(database, "select count(*) from messages") == [(1,)]
    assert await rows(database, "select message_count from contacts") == [(1,)]


async def test_concurrent_webhooks_are_committed_together_in_order(pipeline, database):
    import asyncio

    await asyncio.gather(
        *(pipeline.on_inbound([message(str(c), n)]) for n in range(5) for c in range(20))
    )
    assert await rows(database, "select count(*) from contacts") == [(20,)]
    assert await rows(database, "select count(*) from conversations") == [(20,)]
    got = await rows(
        database, "select external_id from messages where external_id like '7:%' order by id"
    )
    assert got == [(f"7:{n}",) for n in range(5)]
    assert pipeline.writer.commits < 100  # grouped, not one transaction per webhook


async def test_customer_edit_changes_the_stored_text(pipeline, database):
    await pipeline.on_inbound([message("100", 1, "helo")])
    edit = InboundEdit(
        platform=TELEGRAM,
        account=AccountId("42"),
        chat_id=ChatId("100"),
        external_id=ExternalMessageId("100:1"),
        text="hello",
        edited_at=T0 + timedelta(minutes=1),
    )
    await pipeline.on_inbound([edit])
    assert await rows(database, "select text from messages") == [("hello",)]


async def test_message_after_close_opens_a_new_conversation_linked_to_the_old(pipeline, database):
    await pipeline.on_inbound([message("100", 1)])
    [(conversation_id,)] = await rows(database, "select id from conversations")
    assert await pipeline.close(conversation_id) is True
    assert await pipeline.close(conversation_id) is False
    await pipeline.on_inbound([message("100", 2)])
    got = await rows(database, "select id, status, previous_id from conversations order by id")
    assert got == [(got[0][0], "closed", None), (got[1][0], "open", got[0][0])]
    assert await rows(database, "select message_count from contacts") == [(2,)]


async def test_outbox_rows_skip_duplicate_idempotency_keys(database):
    from storage import NewJob

    job = NewJob(kind="k", idem_key="same", lane="l", payload={"a": 1})
    assert await database.run_write(lambda conn: Tx(conn).enqueue([job], 1.0)) == 1
    assert await database.run_write(lambda conn: Tx(conn).enqueue([job], 2.0)) == 0
    pending = await database.run_read(lambda conn: Tx(conn).pending(0, 10))
    assert [(j.kind, j.payload) for j in pending] == [("k", {"a": 1})]


async def test_reply_arriving_before_its_thread_is_recorded_is_kept(pipeline, database):
    import asyncio

    from bridge.types import StaffMessage, StaffMessageRef, StaffUserId, SurfaceName, ThreadRef

    await pipeline.on_inbound([message("100", 1)])
    [(conversation_id,)] = await rows(database, "select id from conversations")
    reply = StaffMessage(
        surface=SurfaceName("slack"),
        thread=ThreadRef("C1/1700000000.000100"),
        ref=StaffMessageRef("C1/1700000000.000200"),
        author=StaffUserId("U1"),
        text="right away",
        at=T0,
    )

    async def thread_recorded_a_moment_later():
        await asyncio.sleep(0.3)
        await database.run_write(
            lambda conn: Tx(conn).add_threads([(conversation_id, reply.surface, reply.thread)])
        )

    await asyncio.gather(pipeline.on_staff(reply), thread_recorded_a_moment_later())
    assert await rows(database, "select direction, text from messages where direction = 'out'") == [
        ("out", "right away")
    ]
