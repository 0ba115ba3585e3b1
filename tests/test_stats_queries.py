"""The figures of /stats straight from the database, on SQLite and PostgreSQL: UTC days, the
period's edges, active contacts, current channel members, broadcast funnels and link clicks."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from storage import Database, Tx
from storage import stats as store
from storage.stats import BroadcastFunnel, ChannelSize, ContactCount, DayCount
from storage.tables import (
    broadcast_sends,
    broadcasts,
    channels,
    contacts,
    conversations,
    link_clicks,
    members,
    messages,
    short_links,
)

NOW = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)
TODAY = date(2026, 11, 25)


def _insert(conn, table, **values) -> int:
    return int(conn.execute(table.insert().values(**values)).inserted_primary_key[0])


def _contact(conn, platform: str, chat: str, last_seen: datetime) -> tuple[int, int]:
    contact = _insert(
        conn,
        contacts,
        platform=platform,
        account="acct",
        chat_id=chat,
        display_name=f"Customer {chat}",
        first_seen=last_seen - timedelta(days=60),
        last_seen=last_seen,
        message_count=0,
    )
    conversation = _insert(
        conn, conversations, contact_id=contact, status="open", opened_at=last_seen
    )
    return contact, conversation


def _message(conn, conversation: int, platform: str, direction: str, at: datetime) -> None:
    _insert(
        conn,
        messages,
        conversation_id=conversation,
        direction=direction,
        platform=platform,
        account="acct",
        text="hello",
        sent_at=at,
        deleted=False,
    )


def _broadcast(conn, state: str, queued: int) -> int:
    return _insert(
        conn,
        broadcasts,
        created_by="Max",
        created_at=NOW - timedelta(days=1),
        surface="slack",
        channel="C0001",
        text="Sale: https://shop.example/sale",
        channel_ids=[],
        platforms=["telegram"],
        state=state,
        cursor=0,
        queued=queued,
        expanded=True,
    )


def populate(conn) -> dict[str, int]:
    """Three contacts, messages around the period's edges, two channels, a broadcast, links."""
    anna, anna_conv = _contact(conn, "telegram", "100", NOW - timedelta(days=1))
    ben, ben_conv = _contact(conn, "telegram", "200", NOW - timedelta(days=40))
    cleo, cleo_conv = _contact(conn, "whatsapp", "300", NOW - timedelta(days=2))
    midnight = datetime(2026, 11, 25, tzinfo=UTC)
    _message(conn, anna_conv, "telegram", "in", midnight - timedelta(seconds=1))  # 24 Nov
    _message(conn, anna_conv, "telegram", "in", midnight + timedelta(seconds=1))  # 25 Nov
    _message(conn, anna_conv, "telegram", "out", midnight + timedelta(hours=2))
    _message(conn, anna_conv, "telegram", "note", midnight + timedelta(hours=3))  # internal
    _message(conn, cleo_conv, "whatsapp", "in", datetime(2026, 11, 12, 0, 0, tzinfo=UTC))
    _message(conn, cleo_conv, "whatsapp", "out", datetime(2026, 11, 11, 23, 59, tzinfo=UTC))
    _message(conn, ben_conv, "telegram", "in", datetime(2026, 10, 16, tzinfo=UTC))  # too old

    news = _insert(conn, channels, name="news", created_by="Max", created_at=NOW)
    _insert(conn, channels, name="vip", created_by="Max", created_at=NOW)
    for contact, left in ((anna, None), (ben, None), (cleo, NOW)):
        _insert(
            conn,
            members,
            channel_id=news,
            contact_id=contact,
            joined_at=NOW - timedelta(days=5),
            source="keyword",
            left_at=left,
        )

    done = _broadcast(conn, "done", 5)
    _broadcast(conn, "draft", 0)  # never confirmed: no funnel
    sent_at = datetime(2026, 11, 24, 10, tzinfo=UTC)
    for contact, state, replied in (
        (anna, "read", sent_at),
        (ben, "sent", None),
        (cleo, "delivered", None),
    ):
        _insert(
            conn,
            broadcast_sends,
            broadcast_id=done,
            contact_id=contact,
            state=state,
            platform="telegram" if contact != cleo else "whatsapp",
            account="acct",
            at=sent_at,
            replied_at=replied,
        )
    extra, _ = _contact(conn, "telegram", "400", NOW - timedelta(days=3))
    gone, _ = _contact(conn, "telegram", "500", NOW - timedelta(days=3))
    _insert(
        conn,
        broadcast_sends,
        broadcast_id=done,
        contact_id=extra,
        state="failed",
        platform="telegram",
        account="acct",
        at=sent_at,
    )
    _insert(
        conn,
        broadcast_sends,
        broadcast_id=done,
        contact_id=gone,
        state="skipped",
        platform="telegram",
        account="acct",
        at=sent_at,
    )

    sale = _insert(
        conn,
        short_links,
        code="Sale123",
        url="https://shop.example/sale",
        broadcast_id=done,
        created_by="Max",
        created_at=NOW - timedelta(days=1),
    )
    old = _insert(
        conn,
        short_links,
        code="Old4567",
        url="https://shop.example/old",
        created_by="Max",
        created_at=NOW - timedelta(days=30),
    )
    _insert(
        conn,
        short_links,
        code="New8901",
        url="https://shop.example/new",
        created_by="Max",
        created_at=NOW,
    )
    for contact in (anna, anna, cleo, None):
        _insert(conn, link_clicks, link_id=sale, at=NOW - timedelta(hours=5), contact_id=contact)
    _insert(conn, link_clicks, link_id=old, at=NOW - timedelta(days=20), contact_id=None)
    return {"broadcast": done}


@pytest.fixture
async def filled(database: Database) -> dict[str, int]:
    return await database.run_write(populate)


async def overview(database: Database, **kw) -> store.Overview:
    def read(conn):
        if conn.dialect.name == "postgresql":
            # A session far from UTC: days must still be UTC days.
            conn.exec_driver_sql("SET TIME ZONE 'Pacific/Auckland'")
        return Tx(conn).stats.overview(NOW, **kw)

    return await database.run_read(read)


async def test_messages_per_platform_and_utc_day_within_the_period(database, filled):
    found = await overview(database)
    assert found.since == datetime(2026, 11, 12, tzinfo=UTC)
    assert found.until == datetime(2026, 11, 26, tzinfo=UTC)
    assert found.day_list[0] == date(2026, 11, 12) and found.day_list[-1] == TODAY
    assert list(found.daily) == [
        DayCount(date(2026, 11, 12), "whatsapp", inbound=1, outbound=0, broadcast=0),
        DayCount(date(2026, 11, 24), "telegram", inbound=1, outbound=0, broadcast=2),
        DayCount(date(2026, 11, 24), "whatsapp", inbound=0, outbound=0, broadcast=1),
        DayCount(TODAY, "telegram", inbound=1, outbound=1, broadcast=0),
    ]
    assert store.totals(found.daily) == {"telegram": (2, 1, 2), "whatsapp": (1, 0, 1)}


async def test_a_longer_period_reaches_further_back(database, filled):
    found = await overview(database, days=60)
    assert store.totals(found.daily) == {"telegram": (3, 1, 2), "whatsapp": (1, 1, 1)}
    today_only = await overview(database, days=1)
    assert store.totals(today_only.daily) == {"telegram": (1, 1, 0)}


async def test_contacts_active_and_total_per_platform(database, filled):
    found = await overview(database)
    assert list(found.contacts) == [
        ContactCount("telegram", total=4, active=3),
        ContactCount("whatsapp", total=1, active=1),
    ]
    assert found.platforms == ("telegram", "whatsapp")


async def test_channel_sizes_count_only_current_members(database, filled):
    found = await overview(database)
    assert list(found.channels) == [ChannelSize("news", 2), ChannelSize("vip", 0)]


async def test_broadcast_funnel_with_replies_clicks_and_click_rate(database, filled):
    found = await overview(database)
    [funnel] = found.broadcasts  # the draft is left out
    assert funnel == BroadcastFunnel(
        id=filled["broadcast"],
        created_at=NOW - timedelta(days=1),
        created_by="Max",
        state="done",
        text="Sale: https://shop.example/sale",
        template=None,
        queued=5,
        sent=3,
        delivered=2,
        read=1,
        failed=1,
        skipped=1,
        cancelled=0,
        replied=1,
        clicks=4,
        clickers=2,
    )
    assert funnel.click_rate == pytest.approx(2 / 3)


async def test_links_most_clicked_first_with_clicks_in_the_period(database, filled):
    found = await overview(database)
    shown = [(k.code, k.clicks, k.clickers, k.recent, k.broadcast_id) for k in found.links]
    assert shown == [
        ("Sale123", 4, 2, 4, filled["broadcast"]),
        ("Old4567", 1, 0, 0, None),
        ("New8901", 0, 0, 0, None),
    ]
    assert found.links[0].last_click == NOW - timedelta(hours=5)
    assert found.links[2].last_click is None


async def test_an_empty_database_has_no_figures(database):
    found = await overview(database)
    assert (found.daily, found.contacts, found.channels, found.broadcasts, found.links) == (
        (),
        (),
        (),
        (),
        (),
    )


@pytest.mark.parametrize("days", [0, -1, 366])
async def test_days_outside_one_to_a_year_are_refused(database, days):
    with pytest.raises(ValueError, match="days must be 1 to 365"):
        await overview(database, days=days)
