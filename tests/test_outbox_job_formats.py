"""Outbox rows keep their bytes across upgrades: for every job kind, a row recorded from the
producers as they were before the payloads were typed is read back and written again unchanged,
and the typed builder makes the same kind, idempotency key, lane and rate keys. Also: every kind
the running bridge has a handler for is a JobKind, and the other way round."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from bridge import jobs
from bridge.config import Settings
from bridge.jobs import JobKind
from bridge.pipeline import Pipeline
from bridge.types import ConversationId, DeliveryStatus, MessageId, SurfaceName
from storage import Database, Job, NewJob, Writer
from storage import webhooks_store as webhook_store
from storage.tables import outbox
from storage.webhooks_store import WebhookEvent
from tests.outbox_rows_kit import RECORDED, RECORDED_AT, Recorded, row
from tests.test_broadcast_expansion import expand_all, new_broadcast


def pending(recorded: dict[str, Any]) -> Job:
    """The recorded row as the dispatcher holds it, with its payload read back from JSON."""
    return Job(
        id=1,
        kind=recorded["kind"],
        idem_key=recorded["idem_key"],
        lane=recorded["lane"],
        rate_keys=tuple(recorded["rate_keys"]),
        payload=json.loads(json.dumps(recorded["payload"])),
        attempts=0,
        next_at=recorded["next_at"],
        created_at=0.0,
        bulk=recorded["bulk"],
    )


def stored(job: NewJob) -> dict[str, Any]:
    """A built row as the outbox stores it."""
    return row(
        job.kind,
        job.idem_key,
        job.lane,
        list(job.rate_keys),
        json.loads(json.dumps(dict(job.payload))),
        job.next_at,
        job.bulk,
    )


def test_every_kind_has_a_recorded_row_and_a_payload_class():
    assert {r.row["kind"] for r in RECORDED} == {k.value for k in JobKind}
    assert set(jobs.PAYLOADS) == set(JobKind)
    assert all(cls.KIND is kind for kind, cls in jobs.PAYLOADS.items())


@pytest.mark.parametrize("recorded", RECORDED, ids=lambda r: r.name)
def test_a_recorded_payload_is_written_back_byte_for_byte(recorded: Recorded):
    job = pending(recorded.row)
    typed = jobs.PAYLOADS[JobKind(job.kind)].from_job(job)
    again = typed.to_payload()
    # Same keys, same values, same order: the stored JSON is the same bytes.
    assert json.dumps(again) == json.dumps(recorded.row["payload"])
    assert type(typed).from_payload(again) == typed


@pytest.mark.parametrize("recorded", RECORDED, ids=lambda r: r.name)
def test_the_builder_makes_the_recorded_row(recorded: Recorded, monkeypatch):
    monkeypatch.setattr(jobs.time, "time", lambda: RECORDED_AT)
    job = pending(recorded.row)
    typed = jobs.PAYLOADS[JobKind(job.kind)].from_job(job)
    built = recorded.build(typed, job.rate_keys)
    assert type(built.kind) is str  # a plain string goes into the database
    assert stored(built) == recorded.row
    assert json.dumps(stored(built)) == json.dumps(recorded.row)


def test_payload_fields_have_readable_names():
    send = jobs.BroadcastSendJob.from_payload(
        {"b": 1, "c": 7, "p": "telegram", "a": "bot", "chat": "5000", "n": "Reader 0"}
    )
    assert (send.broadcast, send.contact, send.platform, send.name) == (
        1,
        7,
        "telegram",
        "Reader 0",
    )
    mark = jobs.StaffMarkJob.from_payload({"surface": "slack", "ref": "r", "status": "read"})
    assert mark.status is DeliveryStatus.READ
    progress = jobs.BroadcastProgressJob(broadcast=3, number=4).following()
    assert progress.to_payload() == {"b": 3, "n": 5}


def test_optional_keys_are_read_as_their_handlers_always_read_them():
    # A reply's sender and a template's language may be missing; a rule row may lack its name.
    tell = jobs.StaffTellJob.from_payload(
        {"surface": "slack", "thread": "T", "ref": "R", "text": "x"}
    )
    assert tell.user is None
    send = jobs.CustomerSendJob.from_payload(
        {
            "conv": 1,
            "msg": 2,
            "platform": "whatsapp",
            "account": "1001",
            "chat": "49",
            "text": "",
            "template": {"name": "hello", "params": []},
        }
    )
    assert send.files == () and send.automatic and send.last_inbound is None
    assert send.template is not None and send.template.language == ""
    http = jobs.RuleHttpJob.from_payload(
        {
            "url": "https://crm.example/in",
            "body": {},
            "conv": 1,
            "contact": 2,
            "platform": "telegram",
            "account": "1",
            "chat": "3",
            "cause": "c",
        }
    )
    assert http.answer is False and http.rule is None
    opened = jobs.StaffOpenJob.from_payload({"conv": 1, "surface": "slack"})
    assert opened.channel is None


def test_a_mirror_row_without_an_author_reads_as_none_as_its_loss_notice_read_it():
    post = jobs.StaffPostJob.from_payload(
        {"conv": 1, "surface": "slack", "msg": 2, "text": "hi", "origin": "matrix"}
    )
    assert (post.author, post.files, post.origin) == ("", (), "matrix")


def test_lanes_of_a_conversation_are_shared_across_kinds():
    # A conversation's thread rows and its customer rows each leave in order, whatever kind.
    conv, surface = 5, SurfaceName("slack")
    lanes = {
        jobs.StaffOpenJob(conversation=conv, surface=surface, channel=None).new_job(()).lane,
        jobs.StaffNoticeJob(conversation=conv, surface=surface, text="x").new_job("k", ()).lane,
        jobs.StaffMarkJob(surface=surface, ref="r", status=DeliveryStatus.SENT)
        .new_job(conv, 9, ())
        .lane,
    }
    assert lanes == {"c5:slack"}
    assert jobs.CustomerDeleteJob(conversation=conv, message=9).new_job(()).lane == "c5:out"
    assert jobs.broadcast_key_range(12) == ("bc:12:", "bc:12;")


def test_long_keys_are_cut_as_the_outbox_columns_require():
    thread = "!" + "x" * 300
    tombstone = jobs.StaffTombstoneJob(surface="matrix", thread=thread, text="erased")
    job = tombstone.new_job(())
    assert job.idem_key == f"forget:matrix:{thread}"[:256]
    assert job.lane == f"forget:matrix:{thread}"[:128]
    widths = (outbox.c.idem_key.type.length, outbox.c.lane.type.length)
    assert widths == (jobs.KEY_MAX, jobs.LANE_MAX)


@pytest.mark.parametrize("event_id", ["message.received:1", "message.status:" + "9" * 300])
def test_a_webhook_delivery_is_built_as_storage_builds_it(event_id):
    # storage still has its own builder (its tests use it): both must make the same row.
    event = WebhookEvent(
        id=event_id,
        type="message.received",
        created_at=datetime(2026, 12, 1, 12, 0, tzinfo=UTC),
        data={"text": "hello"},
        contact_id=4,
    )
    built = jobs.WebhookDeliverJob(webhook=3, event=event.body(), contact=4).new_job()
    assert built == webhook_store.deliver_job(3, event)
    assert len(built.idem_key) <= jobs.KEY_MAX


async def test_a_recipient_row_written_by_the_database_reads_back_and_builds_the_same(database):
    b, ids = await new_broadcast(database)
    await expand_all(database, b.id, limit=100)
    rows = await database.run_read(
        lambda conn: conn.execute(select(outbox).order_by(outbox.c.id)).all()
    )
    assert rows
    for r in rows:
        payload = r.payload if isinstance(r.payload, dict) else json.loads(r.payload)
        recipient = jobs.BroadcastSendJob.from_payload(payload)
        assert recipient.to_payload() == payload
        built = recipient.new_job(r.rate_keys.split(" "))
        assert (built.kind, built.idem_key, built.lane, built.bulk) == (
            r.kind,
            r.idem_key,
            r.lane,
            bool(r.bulk),
        )
    first = jobs.BroadcastSendJob.from_payload(
        rows[0].payload if isinstance(rows[0].payload, dict) else json.loads(rows[0].payload)
    )
    assert (first.contact, first.name) == (ids["c0"], "Reader 0")


async def test_every_kind_the_bridge_handles_is_a_job_kind(tmp_path):
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'bridge.db'}")
    async with aiohttp.ClientSession() as http:
        pipeline = Pipeline(Settings(), db, Writer(db), http=http)
        handled = set(pipeline.handlers())
    await db.close()
    # Producer and handler meet on the kind strings: neither may have one the other lacks.
    assert handled == {k.value for k in JobKind}
    assert all(isinstance(kind, str) for kind in handled)


def test_a_customers_formatting_is_stored_in_mirror_rows_only_when_there_is_some():
    post = jobs.StaffPostJob(
        conversation=ConversationId(7),
        surface=SurfaceName("slack"),
        message=MessageId(9),
        author="Ann",
        text="Bold and italics",
        styled="*Bold* and _italics_",
    )
    edit = jobs.StaffEditJob(
        conversation=ConversationId(7),
        surface=SurfaceName("slack"),
        message=MessageId(9),
        styled="*Bold*",
    )
    for job in (post, edit):
        payload = json.loads(json.dumps(job.to_payload()))
        assert payload["styled"] == job.styled
        assert type(job).from_payload(payload) == job
    plain_post = jobs.StaffPostJob.from_payload({**post.to_payload(), "styled": None})
    assert "styled" not in plain_post.to_payload()
    assert jobs.StaffEditJob(conversation=7, surface="slack", message=9).to_payload() == {
        "conv": 7,
        "surface": "slack",
        "msg": 9,
    }
