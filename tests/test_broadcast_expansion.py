"""The audience of a broadcast queued by the database (INSERT … SELECT in batches), the
send-time checks read for many contacts at once, the preview counted by GROUP BY, and outcomes
written once: on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from storage.broadcasts_store import BroadcastRecord
from storage.tables import blacklist, broadcast_sends, channels, contacts, members, outbox

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
TEMPLATES = {
    ("telegram", "bot"): "telegram:bot telegram:bot:chat:{chat} hold:bc:1",
    ("whatsapp", "wa1"): "whatsapp:wa1 whatsapp:wa1:to:{chat} hold:bc:1",
}


def populate(conn) -> dict[str, int]:
    """20 Telegram readers, 4 on WhatsApp, 2 of an account no longer configured; some left,
    one blocked, one unsubscribed, one outside the channel."""
    rows = []
    for n in range(20):
        rows.append(("telegram", "bot", str(5000 + n), f"Reader {n}"))
    for n in range(4):
        rows.append(("whatsapp", "wa1", str(4915100000 + n), f"Wa {n}"))
    rows.append(("telegram", "old", "77", "Old One"))
    rows.append(("telegram", "old", "78", "Old Two"))
    rows.append(("telegram", "bot", "9999", "Not subscribed"))
    ids = []
    for platform, account, chat, name in rows:
        result = conn.execute(
            contacts.insert().values(
                platform=platform,
                account=account,
                chat_id=chat,
                display_name=name,
                first_seen=NOW,
                last_seen=NOW - timedelta(days=3),
                message_count=1,
            )
        )
        ids.append(int(result.inserted_primary_key[0]))
    channel = int(
        conn.execute(
            channels.insert().values(name="news", created_by="U1", created_at=NOW)
        ).inserted_primary_key[0]
    )
    for cid in ids[:-1]:
        conn.execute(
            members.insert().values(channel_id=channel, contact_id=cid, joined_at=NOW, source="t")
        )
    conn.execute(
        members.update()
        .where(members.c.contact_id.in_(ids[2:4]))
        .values(left_at=NOW, left_source="LEAVE")
    )
    conn.execute(
        blacklist.insert().values(
            contact_id=ids[5], direction="both", created_by="U1", created_at=NOW
        )
    )
    conn.execute(contacts.update().where(contacts.c.id == ids[6]).values(opted_out_at=NOW))
    return {
        "channel": channel,
        "first": ids[0],
        "outside": ids[-1],
        **{f"c{i}": c for i, c in enumerate(ids)},
    }


async def new_broadcast(database, *, template=None) -> tuple[BroadcastRecord, dict[str, int]]:
    def setup(tx):
        found = populate(tx.conn)
        bid = tx.broadcasts.create(
            by="U1",
            at=NOW,
            surface="slack",
            channel="C1",
            text="Hello {FIRSTNAME}",
            template=template,
            file_id=None,
            channel_ids=[found["channel"]],
            platforms=[],
            scheduled_at=None,
        )
        return tx.broadcasts.get(bid), found

    return await database.write_tx(setup)


async def expand_all(database, broadcast_id: int, limit: int) -> list[tuple[int, int, bool]]:
    steps = []
    while True:

        def step(tx):
            b = tx.broadcasts.get(broadcast_id)
            queued, cursor, done = tx.broadcasts.expand(
                b,
                rate_keys=TEMPLATES,
                mark="{chat}",
                fallback="hold:bc:1",
                limit=limit,
                now=1000.0,
            )
            tx.broadcasts.change(b.id, cursor=cursor, queued=b.queued + queued, expanded=done)
            return queued, cursor, done

        steps.append(await database.write_tx(step))
        if steps[-1][2]:
            return steps


async def test_audience_is_queued_in_batches_with_one_row_per_recipient(database):
    b, ids = await new_broadcast(database)
    steps = await expand_all(database, b.id, limit=7)
    # 27 contacts, 7 a batch: the first batch holds the 2 who left, the last the one outside.
    assert [s[0] for s in steps] == [5, 7, 7, 5]
    assert [s[1] for s in steps] == sorted(s[1] for s in steps)

    rows = await database.run_read(
        lambda conn: conn.execute(select(outbox).order_by(outbox.c.id)).all()
    )
    assert len(rows) == 24
    payloads = [r.payload if isinstance(r.payload, dict) else json.loads(r.payload) for r in rows]
    assert [p["c"] for p in payloads] == sorted(p["c"] for p in payloads)
    assert ids["c2"] not in [p["c"] for p in payloads]  # left the channel
    assert ids["outside"] not in [p["c"] for p in payloads]
    first = rows[0]
    assert first.kind == "broadcast.send"
    assert first.idem_key == f"bc:{b.id}:{ids['c0']}"
    assert first.lane == f"bc:{ids['c0']}"
    assert first.rate_keys == "telegram:bot telegram:bot:chat:5000 hold:bc:1"
    assert bool(first.bulk) and first.state == "pending" and first.attempts == 0
    assert payloads[0] == {
        "b": b.id,
        "c": ids["c0"],
        "p": "telegram",
        "a": "bot",
        "chat": "5000",
        "n": "Reader 0",
    }
    wa = next(r for r, p in zip(rows, payloads, strict=True) if p["p"] == "whatsapp")
    assert wa.rate_keys.startswith("whatsapp:wa1 whatsapp:wa1:to:49151")
    old = next(r for r, p in zip(rows, payloads, strict=True) if p["a"] == "old")
    assert old.rate_keys == "hold:bc:1"

    final = await database.read_tx(lambda tx: tx.broadcasts.get(b.id))
    assert final.queued == 24 and final.expanded


async def test_expanding_again_from_the_start_queues_nothing_twice(database):
    b, _ = await new_broadcast(database)
    await expand_all(database, b.id, limit=10)

    def again(tx):
        fresh = tx.broadcasts.get(b.id)
        restarted = BroadcastRecord(**{**_fields(fresh), "cursor": 0})
        return tx.broadcasts.expand(
            restarted,
            rate_keys=TEMPLATES,
            mark="{chat}",
            fallback="",
            limit=100,
            now=2000.0,
        )

    queued, _, done = await database.write_tx(again)
    assert (queued, done) == (0, True)
    count = await database.run_read(lambda conn: conn.execute(select(outbox.c.id)).all())
    assert len(count) == 24


def _fields(b: BroadcastRecord) -> dict:
    return {name: getattr(b, name) for name in BroadcastRecord.__slots__}


async def test_send_time_checks_are_read_for_many_contacts_at_once(database):
    b, ids = await new_broadcast(database)
    read = await database.read_tx(lambda tx: tx.broadcasts.verdicts(b, ids["c0"], 100, NOW))
    assert read.last is None  # the whole audience fit
    assert read.reasons[ids["c0"]] is None
    assert read.reasons[ids["c5"]] == "blacklisted"
    assert read.reasons[ids["c6"]] == "unsubscribed"
    assert read.reasons[ids["c20"]] == "WhatsApp allows newsletters only as approved templates"
    assert ids["c2"] not in read.reasons and read.covers(ids["c2"])  # left: not in the audience
    assert (
        await database.read_tx(lambda tx: tx.broadcasts.check(b, ids["c2"], NOW))
        == "left the channel"
    )

    part = await database.read_tx(lambda tx: tx.broadcasts.verdicts(b, ids["c0"], 5, NOW))
    assert len(part.reasons) == 5 and part.last is not None
    assert part.covers(part.last) and not part.covers(part.last + 1)


async def test_preview_counts_by_platform_and_reason_in_the_database(database):
    b, _ = await new_broadcast(database)
    counts = await database.read_tx(lambda tx: tx.broadcasts.preview(b, NOW))
    assert counts == {
        "telegram": {"to": 18, "blacklisted": 1, "unsubscribed": 1},
        "whatsapp": {"to": 0, "WhatsApp allows newsletters only as approved templates": 4},
    }
    with_template, _ = await new_broadcast_again(database, b)
    counts = await database.read_tx(lambda tx: tx.broadcasts.preview(with_template, NOW))
    assert counts["whatsapp"] == {"to": 4}


async def new_broadcast_again(database, b):
    template = {"name": "news", "language": "en", "params": []}
    return BroadcastRecord(**{**_fields(b), "template": template}), None


async def test_an_outcome_recorded_twice_is_kept_once(database):
    b, ids = await new_broadcast(database)
    row = {
        "broadcast_id": b.id,
        "contact_id": ids["c0"],
        "state": "sent",
        "reason": None,
        "platform": "telegram",
        "account": "bot",
        "external_id": "m1",
        "at": NOW,
    }
    await database.write_tx(
        lambda tx: tx.broadcasts.record([row, {**row, "contact_id": ids["c1"]}])
    )
    await database.write_tx(lambda tx: tx.broadcasts.record([{**row, "state": "failed"}]))
    assert await database.read_tx(lambda tx: tx.broadcasts.counts(b.id)) == {"sent": 2}


async def test_an_outcome_for_a_contact_erased_meanwhile_is_not_kept(database):
    b, ids = await new_broadcast(database)
    await database.run_write(
        lambda conn: conn.execute(contacts.delete().where(contacts.c.id == ids["c1"]))
    )
    row = {
        "broadcast_id": b.id,
        "state": "skipped",
        "reason": "the contact was erased",
        "platform": "telegram",
        "account": "bot",
        "external_id": None,
        "at": NOW,
    }
    # One transaction with both: the erased contact's outcome must not fail the other's.
    await database.write_tx(
        lambda tx: tx.broadcasts.record(
            [{**row, "contact_id": ids["c1"]}, {**row, "contact_id": ids["c0"]}]
        )
    )
    kept = await database.run_read(
        lambda conn: conn.execute(select(broadcast_sends.c.contact_id)).scalars().all()
    )
    assert kept == [ids["c0"]]
