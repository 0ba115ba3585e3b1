"""Outbox handlers of broadcasts: the audience expanded into the outbox in batches, per-contact
checks at send time, public posts, and one progress message in the chat where the broadcast was
started.

Nothing holds the audience in memory: an expand row of the outbox queues the next batch of
recipients (and the next expand row) in the same transaction that moves the broadcast's
cursor, so a crash neither loses nor repeats a batch; each recipient's row has the key
`bc:<broadcast>:<contact>`, so a repeated confirmation cannot send twice either.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from bridge import publish
from bridge.broadcasts import (
    MARK,
    PROGRESS_EVERY,
    allowed_rate,
    fill,
    hold_key,
    progress_text,
    values_for,
)
from bridge.config import Settings
from bridge.errors import Held, PermanentError
from bridge.jobs import (
    BroadcastExpandJob,
    BroadcastProgressJob,
    BroadcastPublishJob,
    BroadcastSendJob,
    JobKind,
    broadcast_key_range,
)
from bridge.links import ShortLinks
from bridge.protocols import Connector, StaffSurface
from bridge.publish import Publisher
from bridge.types import (
    AccountId,
    ChatId,
    ExternalMessageId,
    FileData,
    OutboundMessage,
    Platform,
    StaffMessageRef,
    SurfaceName,
    TemplateCall,
)
from bridge.webhooks import WebhookEvents
from storage import (
    Completion,
    Database,
    Job,
    NewJob,
    Tx,
    Writer,
    early_key,
)
from storage.broadcasts_store import BroadcastRecord, Verdicts

log = logging.getLogger(__name__)

# Recipients queued per transaction: a batch holds the database's writer for some 50 ms.
EXPAND_BATCH = 10_000
# A broadcast's state and its contacts' send-time checks are read again at most this often by
# the senders: a cancel, a pause, an unsubscribe or a block takes effect within this time.
STATE_CACHE_S = 0.5
# Send-time checks read at once: the contacts a second of sending at 1,000/s reaches.
VERDICT_BATCH = 1000
# A paused broadcast's rows look at its state again this often (a resume starts them).
PAUSE_RECHECK_S = 1.0
STATES_ACTIVE = ("scheduled", "running", "paused")
INTERRUPTED = "the bridge stopped while sending this one; not sent again, to send nobody two"


class BroadcastHost(Protocol):
    """What the broadcast handlers use of the pipeline (the façade passes itself)."""

    settings: Settings
    db: Database
    writer: Writer
    webhooks: WebhookEvents
    clock: Callable[[], datetime]

    @property
    def connectors(self) -> Mapping[tuple[Platform, AccountId], Connector]: ...

    @property
    def surfaces(self) -> Mapping[SurfaceName, StaffSurface]: ...

    @property
    def publishers(self) -> Mapping[str, Publisher]: ...

    async def deliver(
        self, connector: Connector, message: OutboundMessage
    ) -> ExternalMessageId: ...


@dataclass
class _Cached:
    at: float
    record: BroadcastRecord
    codes: tuple[str, ...] = ()


@dataclass
class _Checks:
    """A broadcast's recent send-time checks, a few reads of VERDICT_BATCH contacts each."""

    reads: list[tuple[float, Verdicts]]
    lock: asyncio.Lock


class BroadcastHandlers:
    """The outbox handlers of broadcasts, sharing a small cache of broadcast states."""

    def __init__(self, pipeline: BroadcastHost) -> None:
        self.pipeline = pipeline
        self._cache: dict[int, _Cached] = {}
        self._checks: dict[int, _Checks] = {}
        self._files: dict[int, FileData] = {}
        # Rows this process has handed to a connector without knowing the answer yet.
        self.tried: set[int] = set()
        public = pipeline.settings.bridge.public_url
        self.links = ShortLinks(pipeline.db, public) if public else None

    async def broadcast(self, broadcast_id: int, *, fresh: bool = False) -> BroadcastRecord:
        """A broadcast, read at most every STATE_CACHE_S seconds."""
        hit = self._cache.get(broadcast_id)
        if hit is not None and not fresh and time.monotonic() - hit.at < STATE_CACHE_S:
            return hit.record
        record = await self.pipeline.db.read_tx(lambda tx: tx.broadcasts.get(broadcast_id))
        if record is None:
            raise PermanentError("gone", f"broadcast {broadcast_id} no longer exists")
        codes = await self.pipeline.db.read_tx(
            lambda tx: tuple(stats.link.code for stats in tx.links.broadcast_links(broadcast_id))
        )
        self._cache[broadcast_id] = _Cached(time.monotonic(), record, codes)
        return record

    async def verdict(self, broadcast: BroadcastRecord, contact_id: int) -> str | None:
        """Why not to send to a contact now (None: send), from a read at most STATE_CACHE_S old.

        One read answers for the next VERDICT_BATCH contacts of the audience: checking each
        recipient with a query of its own would cost more than sending to it.
        """
        checks = self._checks.get(broadcast.id)
        if checks is None:
            checks = self._checks[broadcast.id] = _Checks([], asyncio.Lock())
        found = self._look_up(checks, contact_id)
        if found is None:
            async with checks.lock:
                found = self._look_up(checks, contact_id)
                if found is None:
                    now = self.pipeline.clock()
                    read = await self.pipeline.db.read_tx(
                        lambda tx: tx.broadcasts.verdicts(broadcast, contact_id, VERDICT_BATCH, now)
                    )
                    checks.reads = [*checks.reads[-3:], (time.monotonic(), read)]
                    found = self._look_up(checks, contact_id)
        if found is not None and found[0]:
            return found[1]
        # Not in the audience when last read: left, erased, or joined since. Ask precisely.
        now = self.pipeline.clock()
        return await self.pipeline.db.read_tx(
            lambda tx: tx.broadcasts.check(broadcast, contact_id, now)
        )

    @staticmethod
    def _look_up(checks: _Checks, contact_id: int) -> tuple[bool, str | None] | None:
        """(in the audience, reason) from a fresh read covering the contact, if any."""
        fresh = time.monotonic() - STATE_CACHE_S
        for at, read in reversed(checks.reads):
            if at >= fresh and read.covers(contact_id):
                if contact_id in read.reasons:
                    return True, read.reasons[contact_id]
                return False, None
        return None

    async def personal(self, broadcast: BroadcastRecord, text: str, contact_id: int) -> str:
        """The contact's own copy of the broadcast's short links, so clicks name them."""
        hit = self._cache.get(broadcast.id)
        if self.links is None or hit is None or not hit.codes:
            return text
        return await self.links.recipient_text(text, hit.codes, contact_id)

    def handlers(self) -> dict[str, Any]:
        """Row kind → handler."""
        return {
            JobKind.BROADCAST_EXPAND: BroadcastExpand(self),
            JobKind.BROADCAST_SEND: BroadcastSend(self),
            JobKind.BROADCAST_PROGRESS: BroadcastProgress(self),
            JobKind.BROADCAST_PUBLISH: BroadcastPublish(self, self.pipeline.publishers),
        }

    async def file(self, file_id: int) -> FileData:
        """The broadcast's media, read once."""
        if file_id not in self._files:
            found = await self.pipeline.db.read_tx(lambda tx: tx.rules.load_file(file_id))
            if found is None:
                raise PermanentError("file_gone", "the broadcast's file no longer exists")
            self._files[file_id] = found
        return self._files[file_id]


class BroadcastHandler:
    """Shared by the broadcast handlers: the shared state, no coalescing, and a failure is
    recorded with its reason."""

    def __init__(self, shared: BroadcastHandlers) -> None:
        self.shared = shared
        self.pipeline = shared.pipeline

    def coalesce(self, head: Job, following: Sequence[Job]) -> int:
        return 0

    async def failed(self, jobs: Sequence[Job], error: PermanentError) -> Completion:
        return Completion([j.id for j in jobs], failed_reason=str(error))


class BroadcastExpand(BroadcastHandler):
    """Queues the audience into the outbox, one batch per transaction, until it is exhausted.

    Each batch is one INSERT … SELECT that also moves the broadcast's cursor, in the writer's
    transaction: no recipient passes through Python, and a crash repeats nothing (the next run
    goes on from the cursor; the rows' keys would ignore a repeat anyway).
    """

    async def run(self, jobs: Sequence[Job]) -> Completion:
        [job] = jobs
        broadcast_id = BroadcastExpandJob.from_job(job).broadcast
        hold = hold_key(broadcast_id)
        templates = {
            (str(platform), str(account)): " ".join((*connector.rate_keys(ChatId(MARK)), hold))
            for (platform, account), connector in self.pipeline.connectors.items()
        }

        def batch(tx: Tx) -> bool:
            broadcast = tx.broadcasts.get(broadcast_id)
            if broadcast is None or broadcast.state not in STATES_ACTIVE or broadcast.expanded:
                return True
            if broadcast.state == "scheduled":
                tx.broadcasts.change(
                    broadcast.id, state="running", started_at=self.pipeline.clock()
                )
            queued, cursor, done = tx.broadcasts.expand(
                broadcast,
                rate_keys=templates,
                mark=MARK,
                fallback=hold,
                limit=EXPAND_BATCH,
                now=time.time(),
            )
            tx.broadcasts.change(
                broadcast.id,
                cursor=cursor,
                queued=broadcast.queued + queued,
                expanded=done,
            )
            return done

        while not await self.pipeline.writer.call(batch):
            pass
        return Completion([job.id])


class BroadcastSend(BroadcastHandler):
    """One recipient: checked now (blacklist, unsubscribed, window), personalised, sent."""

    async def run(self, jobs: Sequence[Job]) -> Completion:
        [job] = jobs
        recipient = BroadcastSendJob.from_job(job)
        broadcast = await self.shared.broadcast(recipient.broadcast)
        contact_id = recipient.contact
        if broadcast.state == "cancelled":
            return self._outcome(job, broadcast, "cancelled", "the broadcast was cancelled")
        if broadcast.state == "paused":
            raise Held(hold_key(broadcast.id), PAUSE_RECHECK_S, "the broadcast is paused")
        tried = self.shared.tried
        if job.attempts and job.id not in tried:
            # Attempted by a process that stopped before it knew the answer: the message may
            # have gone out, and no messenger lets us ask. Not sending again means nobody gets
            # a newsletter twice; the summary counts these.
            return self._outcome(job, broadcast, "interrupted", INTERRUPTED)
        reason = await self.shared.verdict(broadcast, contact_id)
        if reason is not None:
            return self._outcome(job, broadcast, "skipped", reason)
        platform, account = recipient.platform, recipient.account
        connector = self.pipeline.connectors.get((platform, account))
        if connector is None:
            return self._outcome(
                job, broadcast, "failed", f"no {platform} account {account} is configured"
            )
        values = values_for(recipient.name, recipient.chat, contact_id, platform)
        template = None
        if broadcast.template:
            template = TemplateCall(
                name=str(broadcast.template["name"]),
                language=str(broadcast.template.get("language") or "en"),
                params=tuple(fill(str(x), values) for x in broadcast.template.get("params") or ()),
            )
        files = (await self.shared.file(broadcast.file_id),) if broadcast.file_id else ()
        message = OutboundMessage(
            platform=platform,
            account=account,
            chat_id=recipient.chat,
            text=await self.shared.personal(broadcast, fill(broadcast.text, values), contact_id),
            files=files,
            template=template,
            idempotency_key=job.idem_key,
        )
        tried.add(job.id)
        external = await self.pipeline.deliver(connector, message)
        return self._outcome(job, broadcast, "sent", None, external)

    def _outcome(
        self,
        job: Job,
        broadcast: BroadcastRecord,
        state: str,
        reason: str | None,
        external: str | None = None,
    ) -> Completion:
        recipient = BroadcastSendJob.from_job(job)
        self.shared.tried.discard(job.id)
        row = {
            "broadcast_id": broadcast.id,
            "contact_id": recipient.contact,
            "state": state,
            "reason": reason,
            "platform": recipient.platform,
            "account": recipient.account,
            "external_id": external,
            "at": self.pipeline.clock(),
        }
        return Completion([job.id], rows=[(_record_outcomes, row)])

    async def failed(self, jobs: Sequence[Job], error: PermanentError) -> Completion:
        [job] = jobs
        broadcast = await self.shared.broadcast(BroadcastSendJob.from_job(job).broadcast)
        completion = self._outcome(job, broadcast, "failed", error.reason)
        completion.failed_reason = str(error)
        return completion


def _record_outcomes(tx: Tx, rows: list[dict[str, Any]]) -> None:
    tx.broadcasts.record(rows)
    # A platform may report delivery before the send's answer was recorded: the pipeline kept
    # such statuses for later, and this is later.
    sent = {
        early_key(r["platform"], r["account"], r["external_id"]): r
        for r in rows
        if r["external_id"]
    }
    for key, value in tx.take_early_statuses(list(sent)).items():
        r, early = sent[key], json.loads(value)
        status, reason = early["status"], early.get("reason")
        tx.broadcasts.apply_status(r["platform"], r["account"], r["external_id"], status, reason)


class BroadcastPublish(BroadcastHandler):
    """Posts the broadcast's text on one target (a Facebook page, X), once, at its time."""

    def __init__(
        self, shared: BroadcastHandlers, publishers: Mapping[str, publish.Publisher]
    ) -> None:
        super().__init__(shared)
        self.publishers = publishers

    async def run(self, jobs: Sequence[Job]) -> Completion:
        [job] = jobs
        publishing = BroadcastPublishJob.from_job(job)
        broadcast_id, target = publishing.broadcast, publishing.target
        broadcast = await self.shared.broadcast(broadcast_id, fresh=True)
        kept = await self.pipeline.db.read_tx(lambda tx: tx.broadcasts.posts(broadcast_id))
        if target in kept:
            return Completion([job.id])
        if broadcast.state == "cancelled":
            return self._outcome(job, "cancelled", reason="the broadcast was cancelled")
        if broadcast.state == "paused":
            raise Held(hold_key(broadcast.id), PAUSE_RECHECK_S, "the broadcast is paused")
        publisher = self.publishers.get(target)
        if publisher is None:
            return self._outcome(job, "failed", reason=publish.not_configured(target))
        # The text as stored: its links are the broadcast's own short links, whose clicks count
        # for the broadcast and name nobody (recipients get links of their own).
        text = broadcast.text
        problem = publisher.problem(text)
        if problem is not None:
            return self._outcome(job, "failed", reason=problem)
        if job.attempts:
            # An earlier attempt got no answer (a timeout, a restart): it may have gone out.
            earlier = await publisher.earlier(text)
            if earlier is not None:
                return self._outcome(job, "posted", post=earlier)
        try:
            post = await publisher.publish(text)
        except PermanentError as exc:
            if exc.code != "duplicate" or not job.attempts:
                raise
            # Refused as a repeat of a recent post after an attempt without an answer: that
            # attempt is what posted it (X keeps no idempotency key, its duplicate check is it).
            reason = "an earlier attempt posted it; the platform refused a repeat"
            return self._outcome(job, "posted", reason=reason)
        return self._outcome(job, "posted", post=post)

    def _outcome(
        self,
        job: Job,
        state: str,
        *,
        post: publish.Post | None = None,
        reason: str | None = None,
    ) -> Completion:
        publishing = BroadcastPublishJob.from_job(job)
        broadcast_id, target = publishing.broadcast, publishing.target
        at = self.pipeline.clock()

        def write(tx: Tx) -> list[NewJob]:
            tx.broadcasts.record_post(
                broadcast_id,
                target,
                state,
                at=at,
                post_id=post.post_id if post else None,
                url=post.url if post else None,
                reason=reason,
            )
            return []

        return Completion([job.id], also=[write])

    async def failed(self, jobs: Sequence[Job], error: PermanentError) -> Completion:
        [job] = jobs
        if error.code == "gone":
            return Completion([job.id], failed_reason=str(error))  # nothing left to record on
        completion = self._outcome(job, "failed", reason=error.reason)
        completion.failed_reason = str(error)
        return completion


class BroadcastProgress(BroadcastHandler):
    """The progress message in the chat, updated in place until the broadcast ends."""

    def __init__(self, shared: BroadcastHandlers) -> None:
        super().__init__(shared)
        # The summary last shown of a sent broadcast whose posts are still awaited (X may hold
        # one back for 15 minutes): an unchanged text is not edited into the chat again.
        self._shown: dict[int, str] = {}
        # Outcomes counted at the last look, per broadcast.
        self._counted: dict[int, int] = {}

    async def run(self, jobs: Sequence[Job]) -> Completion:
        [job] = jobs
        progress = BroadcastProgressJob.from_job(job)
        broadcast_id = progress.broadcast
        broadcast = await self.shared.broadcast(broadcast_id, fresh=True)
        counts = await self.pipeline.db.read_tx(lambda tx: tx.broadcasts.per_platform(broadcast_id))
        clicks = await self.pipeline.db.read_tx(lambda tx: tx.links.broadcast_clicks(broadcast_id))
        posts = await self.pipeline.db.read_tx(lambda tx: tx.broadcasts.posts(broadcast_id))
        done_count = sum(sum(v.values()) for v in counts.values())
        finished = broadcast.state == "cancelled" or (
            broadcast.state in ("running", "done")
            and broadcast.expanded
            and done_count >= broadcast.queued
        )
        stalled = self._counted.get(broadcast_id) == done_count
        self._counted[broadcast_id] = done_count
        if not finished and stalled and broadcast.state == "running" and broadcast.expanded:
            # No new outcome since the last look, yet fewer than rows queued: recipients
            # erased meanwhile have none, and their rows are gone. Done when no row of the
            # broadcast waits any more (counted only then: a million rows take a while).
            low, high = broadcast_key_range(broadcast_id)
            waiting = await self.pipeline.db.read_tx(lambda tx: tx.broadcasts.waiting(low, high))
            finished = waiting == 0
        # A post may still wait for X's or Facebook's rate limit when the last recipient's
        # message is out: the message goes on being updated until every post is in as well.
        posting = broadcast.state != "cancelled" and any(t not in posts for t in broadcast.publish)
        limit_rate = allowed_rate(self.pipeline.connectors, counts or broadcast.platforms)
        text = progress_text(
            broadcast, counts, finished, self.pipeline.clock(), clicks, posts, limit_rate
        )
        ref = broadcast.progress_ref
        surface = self.pipeline.surfaces.get(SurfaceName(broadcast.surface))
        unchanged = ref is not None and self._shown.get(broadcast_id) == text
        if surface is not None and broadcast.channel and not unchanged:
            ref = await surface.announce(
                broadcast.channel, text, StaffMessageRef(ref) if ref else None
            )
        if finished and posting:
            self._shown[broadcast_id] = text
        else:
            self._shown.pop(broadcast_id, None)
        now = self.pipeline.clock()

        def write(tx: Tx) -> list[NewJob]:
            values: dict[str, Any] = {"progress_ref": ref}
            if finished and broadcast.state not in ("cancelled", "done"):
                values.update(state="done", finished_at=now)
            tx.broadcasts.change(broadcast_id, **values)
            if finished and not posting:
                # The summary is final: tell the webhooks (the event id is the broadcast's).
                return self.pipeline.webhooks.broadcast_finished(
                    tx,
                    broadcast_id=broadcast_id,
                    state="cancelled" if broadcast.state == "cancelled" else "done",
                    queued=broadcast.queued,
                    counts=counts,
                    clicks=clicks,
                    created_by=broadcast.created_by,
                    started_at=broadcast.started_at,
                    finished_at=broadcast.finished_at or now,
                )
            return [progress.following().new_job(next_at=time.time() + PROGRESS_EVERY)]

        return Completion([job.id], also=[write])
