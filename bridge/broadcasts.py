"""Broadcasts: the audience expanded into the outbox in batches, per-contact checks at send
time, and one progress message in the chat where the broadcast was started.

Nothing holds the audience in memory: an expand row of the outbox queues the next batch of
recipients (and the next expand row) in the same transaction that moves the broadcast's
cursor, so a crash neither loses nor repeats a batch; each recipient's row has the key
`bc:<broadcast>:<contact>`, so a repeated confirmation cannot send twice either.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from bridge.errors import PermanentError, TransientError
from bridge.links import ShortLinks
from bridge.types import (
    AccountId,
    ChatId,
    FileData,
    OutboundMessage,
    Platform,
    StaffMessageRef,
    SurfaceName,
    TemplateCall,
)
from storage import Completion, Job, NewJob, Tx, rules_store, shortlinks
from storage import broadcasts_store as store

if TYPE_CHECKING:
    from bridge.pipeline import Pipeline

log = logging.getLogger(__name__)

EXPAND_BATCH = 5000
PROGRESS_EVERY = 3.0
# A broadcast's state is read again at most this often by the senders (cancel, pause).
STATE_CACHE_S = 0.5
STATES_ACTIVE = ("scheduled", "running", "paused")


def send_key(broadcast_id: int, contact_id: int) -> str:
    """The outbox key of one recipient's message: the same broadcast never goes twice."""
    return f"bc:{broadcast_id}:{contact_id}"


def key_range(broadcast_id: int) -> tuple[str, str]:
    """Bounds of a broadcast's recipient keys (for an index range scan)."""
    return f"bc:{broadcast_id}:", f"bc:{broadcast_id};"


def start_jobs(b: store.BroadcastRecord, now: datetime) -> list[NewJob]:
    """What a confirmed broadcast starts with: the first expansion and the progress report."""
    at = b.scheduled_at.timestamp() if b.scheduled_at and b.scheduled_at > now else 0.0
    return [
        NewJob(
            kind="broadcast.expand",
            idem_key=f"bcx:{b.id}:0",
            lane=f"bcx:{b.id}",
            payload={"b": b.id},
            next_at=at,
        ),
        NewJob(
            kind="broadcast.progress",
            idem_key=f"bcp:{b.id}:0",
            lane=f"bcp:{b.id}",
            payload={"b": b.id, "n": 0},
            next_at=max(at, now.timestamp()) + 1.0,
        ),
    ]


PLACEHOLDERS = ("NAME", "FIRSTNAME", "NICKNAME", "MSISDN", "CONTACTID", "PLATFORM")
_PLACEHOLDER = re.compile(r"\{([A-Z]+)\}")


def unknown_placeholders(text: str) -> list[str]:
    """Placeholders in a broadcast text that the bridge cannot fill."""
    return sorted({n for n in _PLACEHOLDER.findall(text) if n not in PLACEHOLDERS})


def fill(text: str, values: dict[str, str]) -> str:
    """The text for one contact: each {NAME} of PLACEHOLDERS replaced, once."""
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), text)


def values_for(recipient_name: str, chat_id: str, contact_id: int, platform: str) -> dict[str, str]:
    """Placeholders a broadcast text may use, per contact."""
    first = recipient_name.split()[0] if recipient_name.split() else recipient_name
    return {
        "NICKNAME": recipient_name,
        "NAME": recipient_name,
        "FIRSTNAME": first,
        "MSISDN": chat_id,
        "CONTACTID": str(contact_id),
        "PLATFORM": platform,
    }


@dataclass
class _Cached:
    at: float
    record: store.BroadcastRecord
    codes: tuple[str, ...] = ()


class BroadcastHandlers:
    """The outbox handlers of broadcasts, sharing a small cache of broadcast states."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.p = pipeline
        self._cache: dict[int, _Cached] = {}
        self._files: dict[int, FileData] = {}
        public = pipeline.settings.bridge.public_url
        self.links = ShortLinks(pipeline.db, public) if public else None

    async def broadcast(self, broadcast_id: int, *, fresh: bool = False) -> store.BroadcastRecord:
        """A broadcast, read at most every STATE_CACHE_S seconds."""
        hit = self._cache.get(broadcast_id)
        if hit is not None and not fresh and time.monotonic() - hit.at < STATE_CACHE_S:
            return hit.record
        record = await self.p.db.run_read(lambda conn: store.get(conn, broadcast_id))
        if record is None:
            raise PermanentError("gone", f"broadcast {broadcast_id} no longer exists")
        codes = await self.p.db.run_read(
            lambda conn: tuple(s.link.code for s in shortlinks.broadcast_links(conn, broadcast_id))
        )
        self._cache[broadcast_id] = _Cached(time.monotonic(), record, codes)
        return record

    async def personal(self, b: store.BroadcastRecord, text: str, contact_id: int) -> str:
        """The contact's own copy of the broadcast's short links, so clicks name them."""
        hit = self._cache.get(b.id)
        if self.links is None or hit is None or not hit.codes:
            return text
        return await self.links.recipient_text(text, hit.codes, contact_id)

    def handlers(self) -> dict[str, Any]:
        """Row kind → handler."""
        return {
            "broadcast.expand": _Expand(self),
            "broadcast.send": _Send(self),
            "broadcast.progress": _Progress(self),
        }

    async def file(self, file_id: int) -> FileData:
        """The broadcast's media, read once."""
        if file_id not in self._files:
            found = await self.p.db.run_read(lambda conn: rules_store.load_file(conn, file_id))
            if found is None:
                raise PermanentError("file_gone", "the broadcast's file no longer exists")
            self._files[file_id] = found
        return self._files[file_id]


class _Base:
    def __init__(self, shared: BroadcastHandlers) -> None:
        self.shared = shared
        self.p = shared.p

    def coalesce(self, head: Job, following: Sequence[Job]) -> int:
        return 0

    async def failed(self, jobs: Sequence[Job], error: PermanentError) -> Completion:
        return Completion([j.id for j in jobs], failed_reason=str(error))


class _Expand(_Base):
    """Queues the next batch of recipients, and the next expansion."""

    async def run(self, jobs: Sequence[Job]) -> Completion:
        [job] = jobs
        broadcast_id = int(job.payload["b"])

        def expand(tx: Tx) -> list[NewJob]:
            b = store.get(tx.conn, broadcast_id)
            if b is None or b.state not in STATES_ACTIVE or b.expanded:
                return []
            now = self.p.clock()
            if b.state == "scheduled":
                store.change(tx.conn, b.id, state="running", started_at=now)
            batch = store.recipients(tx.conn, b, b.cursor, EXPAND_BATCH)
            queued: list[NewJob] = []
            for r in batch:
                connector = self.p.connectors.get((Platform(r.platform), AccountId(r.account)))
                keys = connector.rate_keys(ChatId(r.chat_id)) if connector else ()
                queued.append(
                    NewJob(
                        kind="broadcast.send",
                        idem_key=send_key(b.id, r.contact_id),
                        lane=f"bc:{r.contact_id}",
                        rate_keys=keys,
                        payload={
                            "b": b.id,
                            "c": r.contact_id,
                            "p": r.platform,
                            "a": r.account,
                            "chat": r.chat_id,
                            "n": r.name,
                        },
                        bulk=True,
                    )
                )
            cursor = batch[-1].contact_id if batch else b.cursor
            done = len(batch) < EXPAND_BATCH
            store.change(tx.conn, b.id, cursor=cursor, queued=b.queued + len(batch), expanded=done)
            if not done:
                queued.append(
                    NewJob(
                        kind="broadcast.expand",
                        idem_key=f"bcx:{b.id}:{cursor}",
                        lane=f"bcx:{b.id}",
                        payload={"b": b.id},
                    )
                )
            return queued

        return Completion([job.id], also=[expand])


class _Send(_Base):
    """One recipient: checked now (blacklist, unsubscribed, window), personalised, sent."""

    async def run(self, jobs: Sequence[Job]) -> Completion:
        [job] = jobs
        p = job.payload
        b = await self.shared.broadcast(int(p["b"]))
        contact_id = int(p["c"])
        if b.state == "cancelled":
            return self._outcome(job, b, "cancelled", "the broadcast was cancelled")
        if b.state == "paused":
            raise TransientError("the broadcast is paused")
        now = self.p.clock()
        reason = await self.p.db.run_read(lambda conn: store.check(conn, b, contact_id, now))
        if reason is not None:
            return self._outcome(job, b, "skipped", reason)
        connector = self.p.connectors.get((Platform(p["p"]), AccountId(p["a"])))
        if connector is None:
            return self._outcome(job, b, "failed", f"no {p['p']} account {p['a']} is configured")
        values = values_for(p["n"], p["chat"], contact_id, p["p"])
        template = None
        if b.template:
            template = TemplateCall(
                name=str(b.template["name"]),
                language=str(b.template.get("language") or "en"),
                params=tuple(fill(str(x), values) for x in b.template.get("params") or ()),
            )
        files = (await self.shared.file(b.file_id),) if b.file_id else ()
        external = await connector.send(
            OutboundMessage(
                platform=Platform(p["p"]),
                account=AccountId(p["a"]),
                chat_id=ChatId(p["chat"]),
                text=await self.shared.personal(b, fill(b.text, values), contact_id),
                files=files,
                template=template,
                idempotency_key=job.idem_key,
            )
        )
        return self._outcome(job, b, "sent", None, external)

    def _outcome(
        self,
        job: Job,
        b: store.BroadcastRecord,
        state: str,
        reason: str | None,
        external: str | None = None,
    ) -> Completion:
        p = job.payload
        at = self.p.clock()

        def write(tx: Tx) -> list[NewJob]:
            store.record(
                tx.conn,
                [
                    {
                        "broadcast_id": b.id,
                        "contact_id": int(p["c"]),
                        "state": state,
                        "reason": reason,
                        "platform": p["p"],
                        "account": p["a"],
                        "external_id": external,
                        "at": at,
                    }
                ],
            )
            return []

        return Completion([job.id], also=[write])

    async def failed(self, jobs: Sequence[Job], error: PermanentError) -> Completion:
        [job] = jobs
        b = await self.shared.broadcast(int(job.payload["b"]))
        completion = self._outcome(job, b, "failed", error.reason)
        completion.failed_reason = str(error)
        return completion


class _Progress(_Base):
    """The progress message in the chat, updated in place until the broadcast ends."""

    async def run(self, jobs: Sequence[Job]) -> Completion:
        [job] = jobs
        broadcast_id = int(job.payload["b"])
        b = await self.shared.broadcast(broadcast_id, fresh=True)
        counts = await self.p.db.run_read(lambda conn: store.per_platform(conn, broadcast_id))
        clicks = await self.p.db.run_read(
            lambda conn: shortlinks.broadcast_clicks(conn, broadcast_id)
        )
        done_count = sum(sum(v.values()) for v in counts.values())
        finished = b.state == "cancelled" or (
            b.state in ("running", "done") and b.expanded and done_count >= b.queued
        )
        text = progress_text(b, counts, finished, self.p.clock(), clicks)
        ref = b.progress_ref
        surface = self.p.surfaces.get(SurfaceName(b.surface))
        if surface is not None and b.channel:
            ref = await surface.announce(b.channel, text, StaffMessageRef(ref) if ref else None)
        now = self.p.clock()

        def write(tx: Tx) -> list[NewJob]:
            values: dict[str, Any] = {"progress_ref": ref}
            if finished and b.state != "cancelled":
                values.update(state="done", finished_at=now)
            store.change(tx.conn, broadcast_id, **values)
            if finished:
                return []
            n = int(job.payload["n"]) + 1
            return [
                NewJob(
                    kind="broadcast.progress",
                    idem_key=f"bcp:{broadcast_id}:{n}",
                    lane=f"bcp:{broadcast_id}",
                    payload={"b": broadcast_id, "n": n},
                    next_at=time.time() + PROGRESS_EVERY,
                )
            ]

        return Completion([job.id], also=[write])


def progress_text(
    b: store.BroadcastRecord,
    counts: dict[str, dict[str, int]],
    finished: bool,
    now: datetime,
    clicks: tuple[int, int] = (0, 0),
) -> str:
    """The progress (or the summary) of a broadcast in a few lines."""
    total: dict[str, int] = {}
    for per in counts.values():
        for state, n in per.items():
            total[state] = total.get(state, 0) + n
    recorded = sum(total.values())
    queued = b.queued
    if b.state == "scheduled" and b.scheduled_at:
        head = f"Broadcast #{b.id} is scheduled for {b.scheduled_at:%Y-%m-%d %H:%M} UTC"
    elif b.state == "cancelled":
        head = f"Broadcast #{b.id} was cancelled"
    elif finished:
        head = f"Broadcast #{b.id} is done"
    elif b.state == "paused":
        head = f"Broadcast #{b.id} is paused"
    else:
        head = f"Broadcast #{b.id} is sending"
    lines = [head]
    order = ("sent", "delivered", "read", "failed", "skipped", "cancelled")
    for platform in sorted(counts):
        per = counts[platform]
        shown = " · ".join(f"{s} {per[s]}" for s in order if per.get(s))
        lines.append(f"{platform}: {shown}")
    waiting = max(queued - recorded, 0)
    if not finished:
        lines.append(f"queued {waiting}{'' if b.expanded else ' so far'}")
        if b.started_at and recorded:
            elapsed = max((now - b.started_at).total_seconds(), 1.0)
            rate = recorded / elapsed
            if rate > 0 and waiting:
                lines.append(f"about {int(waiting / rate) + 1}s to go at {rate:.0f}/s")
    else:
        lines.append(
            f"{total.get('sent', 0) + total.get('delivered', 0) + total.get('read', 0)} of"
            f" {recorded} delivered to the platforms; {total.get('failed', 0)} failed,"
            f" {total.get('skipped', 0)} skipped"
        )
    if clicks[0]:
        lines.append(f"links clicked {clicks[0]} times by {clicks[1]} recipients")
    return "\n".join(lines)
