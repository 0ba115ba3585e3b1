"""Broadcasts: the audience expanded into the outbox in batches, per-contact checks at send
time, and one progress message in the chat where the broadcast was started.

Nothing holds the audience in memory: an expand row of the outbox queues the next batch of
recipients (and the next expand row) in the same transaction that moves the broadcast's
cursor, so a crash neither loses nor repeats a batch; each recipient's row has the key
`bc:<broadcast>:<contact>`, so a repeated confirmation cannot send twice either.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from bridge import publish
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
from bridge.outbox_lanes import HOLD_PREFIX
from bridge.types import (
    ChatId,
    FileData,
    OutboundMessage,
    StaffMessageRef,
    SurfaceName,
    TemplateCall,
)
from storage import Completion, Job, NewJob, Tx, early_key, rules_store, shortlinks
from storage import broadcasts_store as store

if TYPE_CHECKING:
    from bridge.pipeline import Pipeline

log = logging.getLogger(__name__)

# Recipients queued per transaction: a batch holds the database's writer for some 50 ms.
EXPAND_BATCH = 10_000
PROGRESS_EVERY = 3.0
# A broadcast's state and its contacts' send-time checks are read again at most this often by
# the senders: a cancel, a pause, an unsubscribe or a block takes effect within this time.
STATE_CACHE_S = 0.5
# Send-time checks read at once: the contacts a second of sending at 1,000/s reaches.
VERDICT_BATCH = 1000
# A paused broadcast's rows look at its state again this often (a resume starts them).
PAUSE_RECHECK_S = 1.0
STATES_ACTIVE = ("scheduled", "running", "paused")
# Where a connector's rate keys name the chat, in the templates the expansion fills in SQL.
MARK = "{chat}"
INTERRUPTED = "the bridge stopped while sending this one; not sent again, to send nobody two"


def hold_key(broadcast_id: int) -> str:
    """The rate key every row of a broadcast carries, to hold them all while it is paused."""
    return f"{HOLD_PREFIX}bc:{broadcast_id}"


def start_jobs(b: store.BroadcastRecord, now: datetime) -> list[NewJob]:
    """What a confirmed broadcast starts with: the first expansion, the progress report and a
    post on each publishing target (at the broadcast's time)."""
    at = b.scheduled_at.timestamp() if b.scheduled_at and b.scheduled_at > now else 0.0
    return [
        *(BroadcastPublishJob(broadcast=b.id, target=t).new_job(next_at=at) for t in b.publish),
        BroadcastExpandJob(broadcast=b.id).new_job(next_at=at),
        BroadcastProgressJob(broadcast=b.id, number=0).new_job(
            next_at=max(at, now.timestamp()) + 1.0
        ),
    ]


PLACEHOLDERS = ("NAME", "FIRSTNAME", "NICKNAME", "MSISDN", "CONTACTID", "PLATFORM")
_PLACEHOLDER = re.compile(r"\{([A-Z]+)\}")


def unknown_placeholders(text: str) -> list[str]:
    """Placeholders in a broadcast text that the bridge cannot fill."""
    return sorted({n for n in _PLACEHOLDER.findall(text) if n not in PLACEHOLDERS})


def placeholders(text: str) -> list[str]:
    """The known placeholders a broadcast text uses, each once, in order."""
    return list(dict.fromkeys(n for n in _PLACEHOLDER.findall(text) if n in PLACEHOLDERS))


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


@dataclass
class _Checks:
    """A broadcast's recent send-time checks, a few reads of VERDICT_BATCH contacts each."""

    reads: list[tuple[float, store.Verdicts]]
    lock: asyncio.Lock


class BroadcastHandlers:
    """The outbox handlers of broadcasts, sharing a small cache of broadcast states."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.p = pipeline
        self._cache: dict[int, _Cached] = {}
        self._checks: dict[int, _Checks] = {}
        self._files: dict[int, FileData] = {}
        # Rows this process has handed to a connector without knowing the answer yet.
        self.tried: set[int] = set()
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

    async def verdict(self, b: store.BroadcastRecord, contact_id: int) -> str | None:
        """Why not to send to a contact now (None: send), from a read at most STATE_CACHE_S old.

        One read answers for the next VERDICT_BATCH contacts of the audience: checking each
        recipient with a query of its own would cost more than sending to it.
        """
        checks = self._checks.get(b.id)
        if checks is None:
            checks = self._checks[b.id] = _Checks([], asyncio.Lock())
        found = self._look_up(checks, contact_id)
        if found is None:
            async with checks.lock:
                found = self._look_up(checks, contact_id)
                if found is None:
                    now = self.p.clock()
                    read = await self.p.db.run_read(
                        lambda conn: store.verdicts(conn, b, contact_id, VERDICT_BATCH, now)
                    )
                    checks.reads = [*checks.reads[-3:], (time.monotonic(), read)]
                    found = self._look_up(checks, contact_id)
        if found is not None and found[0]:
            return found[1]
        # Not in the audience when last read: left, erased, or joined since. Ask precisely.
        now = self.p.clock()
        return await self.p.db.run_read(lambda conn: store.check(conn, b, contact_id, now))

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

    async def personal(self, b: store.BroadcastRecord, text: str, contact_id: int) -> str:
        """The contact's own copy of the broadcast's short links, so clicks name them."""
        hit = self._cache.get(b.id)
        if self.links is None or hit is None or not hit.codes:
            return text
        return await self.links.recipient_text(text, hit.codes, contact_id)

    def handlers(self) -> dict[str, Any]:
        """Row kind → handler."""
        return {
            JobKind.BROADCAST_EXPAND: _Expand(self),
            JobKind.BROADCAST_SEND: _Send(self),
            JobKind.BROADCAST_PROGRESS: _Progress(self),
            JobKind.BROADCAST_PUBLISH: _Publish(self, self.p.publishers),
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
            for (platform, account), connector in self.p.connectors.items()
        }

        def batch(tx: Tx) -> bool:
            b = store.get(tx.conn, broadcast_id)
            if b is None or b.state not in STATES_ACTIVE or b.expanded:
                return True
            if b.state == "scheduled":
                store.change(tx.conn, b.id, state="running", started_at=self.p.clock())
            queued, cursor, done = store.expand(
                tx.conn,
                b,
                rate_keys=templates,
                mark=MARK,
                fallback=hold,
                limit=EXPAND_BATCH,
                now=time.time(),
            )
            store.change(tx.conn, b.id, cursor=cursor, queued=b.queued + queued, expanded=done)
            return done

        while not await self.p.writer.call(batch):
            pass
        return Completion([job.id])


class _Send(_Base):
    """One recipient: checked now (blacklist, unsubscribed, window), personalised, sent."""

    async def run(self, jobs: Sequence[Job]) -> Completion:
        [job] = jobs
        recipient = BroadcastSendJob.from_job(job)
        b = await self.shared.broadcast(recipient.broadcast)
        contact_id = recipient.contact
        if b.state == "cancelled":
            return self._outcome(job, b, "cancelled", "the broadcast was cancelled")
        if b.state == "paused":
            raise Held(hold_key(b.id), PAUSE_RECHECK_S, "the broadcast is paused")
        tried = self.shared.tried
        if job.attempts and job.id not in tried:
            # Attempted by a process that stopped before it knew the answer: the message may
            # have gone out, and no messenger lets us ask. Not sending again means nobody gets
            # a newsletter twice; the summary counts these.
            return self._outcome(job, b, "interrupted", INTERRUPTED)
        reason = await self.shared.verdict(b, contact_id)
        if reason is not None:
            return self._outcome(job, b, "skipped", reason)
        platform, account = recipient.platform, recipient.account
        connector = self.p.connectors.get((platform, account))
        if connector is None:
            return self._outcome(job, b, "failed", f"no {platform} account {account} is configured")
        values = values_for(recipient.name, recipient.chat, contact_id, platform)
        template = None
        if b.template:
            template = TemplateCall(
                name=str(b.template["name"]),
                language=str(b.template.get("language") or "en"),
                params=tuple(fill(str(x), values) for x in b.template.get("params") or ()),
            )
        files = (await self.shared.file(b.file_id),) if b.file_id else ()
        message = OutboundMessage(
            platform=platform,
            account=account,
            chat_id=recipient.chat,
            text=await self.shared.personal(b, fill(b.text, values), contact_id),
            files=files,
            template=template,
            idempotency_key=job.idem_key,
        )
        tried.add(job.id)
        external = await self.p.deliver(connector, message)
        return self._outcome(job, b, "sent", None, external)

    def _outcome(
        self,
        job: Job,
        b: store.BroadcastRecord,
        state: str,
        reason: str | None,
        external: str | None = None,
    ) -> Completion:
        recipient = BroadcastSendJob.from_job(job)
        self.shared.tried.discard(job.id)
        row = {
            "broadcast_id": b.id,
            "contact_id": recipient.contact,
            "state": state,
            "reason": reason,
            "platform": recipient.platform,
            "account": recipient.account,
            "external_id": external,
            "at": self.p.clock(),
        }
        return Completion([job.id], rows=[(_record_outcomes, row)])

    async def failed(self, jobs: Sequence[Job], error: PermanentError) -> Completion:
        [job] = jobs
        b = await self.shared.broadcast(BroadcastSendJob.from_job(job).broadcast)
        completion = self._outcome(job, b, "failed", error.reason)
        completion.failed_reason = str(error)
        return completion


def _record_outcomes(tx: Tx, rows: list[dict[str, Any]]) -> None:
    store.record(tx.conn, rows)
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
        store.apply_status(tx.conn, r["platform"], r["account"], r["external_id"], status, reason)


class _Publish(_Base):
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
        b = await self.shared.broadcast(broadcast_id, fresh=True)
        kept = await self.p.db.run_read(lambda conn: store.posts(conn, broadcast_id))
        if target in kept:
            return Completion([job.id])
        if b.state == "cancelled":
            return self._outcome(job, "cancelled", reason="the broadcast was cancelled")
        if b.state == "paused":
            raise Held(hold_key(b.id), PAUSE_RECHECK_S, "the broadcast is paused")
        publisher = self.publishers.get(target)
        if publisher is None:
            return self._outcome(job, "failed", reason=publish.not_configured(target))
        # The text as stored: its links are the broadcast's own short links, whose clicks count
        # for the broadcast and name nobody (recipients get links of their own).
        text = b.text
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
        at = self.p.clock()

        def write(tx: Tx) -> list[NewJob]:
            store.record_post(
                tx.conn,
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


class _Progress(_Base):
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
        b = await self.shared.broadcast(broadcast_id, fresh=True)
        counts = await self.p.db.run_read(lambda conn: store.per_platform(conn, broadcast_id))
        clicks = await self.p.db.run_read(
            lambda conn: shortlinks.broadcast_clicks(conn, broadcast_id)
        )
        posts = await self.p.db.run_read(lambda conn: store.posts(conn, broadcast_id))
        done_count = sum(sum(v.values()) for v in counts.values())
        finished = b.state == "cancelled" or (
            b.state in ("running", "done") and b.expanded and done_count >= b.queued
        )
        stalled = self._counted.get(broadcast_id) == done_count
        self._counted[broadcast_id] = done_count
        if not finished and stalled and b.state == "running" and b.expanded:
            # No new outcome since the last look, yet fewer than rows queued: recipients
            # erased meanwhile have none, and their rows are gone. Done when no row of the
            # broadcast waits any more (counted only then: a million rows take a while).
            low, high = broadcast_key_range(broadcast_id)
            waiting = await self.p.db.run_read(lambda conn: store.waiting(conn, low, high))
            finished = waiting == 0
        # A post may still wait for X's or Facebook's rate limit when the last recipient's
        # message is out: the message goes on being updated until every post is in as well.
        posting = b.state != "cancelled" and any(t not in posts for t in b.publish)
        limit_rate = allowed_rate(self.p, counts or b.platforms)
        text = progress_text(b, counts, finished, self.p.clock(), clicks, posts, limit_rate)
        ref = b.progress_ref
        surface = self.p.surfaces.get(SurfaceName(b.surface))
        unchanged = ref is not None and self._shown.get(broadcast_id) == text
        if surface is not None and b.channel and not unchanged:
            ref = await surface.announce(b.channel, text, StaffMessageRef(ref) if ref else None)
        if finished and posting:
            self._shown[broadcast_id] = text
        else:
            self._shown.pop(broadcast_id, None)
        now = self.p.clock()

        def write(tx: Tx) -> list[NewJob]:
            values: dict[str, Any] = {"progress_ref": ref}
            if finished and b.state not in ("cancelled", "done"):
                values.update(state="done", finished_at=now)
            store.change(tx.conn, broadcast_id, **values)
            if finished and not posting:
                # The summary is final: tell the webhooks (the event id is the broadcast's).
                return self.p.webhooks.broadcast_finished(
                    tx,
                    broadcast_id=broadcast_id,
                    state="cancelled" if b.state == "cancelled" else "done",
                    queued=b.queued,
                    counts=counts,
                    clicks=clicks,
                    created_by=b.created_by,
                    started_at=b.started_at,
                    finished_at=b.finished_at or now,
                )
            return [progress.following().new_job(next_at=time.time() + PROGRESS_EVERY)]

        return Completion([job.id], also=[write])


def _duration(seconds: float) -> str:
    """A time to go, rounded up: 45s, 12 min, 2 h 5 min."""
    whole = int(seconds) + 1
    if whole < 120:
        return f"{whole}s"
    minutes = (whole + 59) // 60
    if minutes < 120:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min"


def allowed_rate(pipeline: Pipeline, platforms: Iterable[str]) -> float | None:
    """Messages a second the accounts of these platforms may send together, by their rate
    limits (for the time to go before any message has gone)."""
    wanted = set(platforms)
    total = 0.0
    for (platform, _), connector in pipeline.connectors.items():
        if wanted and platform not in wanted:
            continue
        keys = connector.rate_keys(ChatId(MARK))
        limit = connector.rate_limits().get(keys[0]) if keys else None
        total += limit.rate if limit is not None else 0.0
    return total or None


def progress_text(
    b: store.BroadcastRecord,
    counts: dict[str, dict[str, int]],
    finished: bool,
    now: datetime,
    clicks: tuple[int, int] = (0, 0),
    posts: Mapping[str, store.PostRecord] | None = None,
    limit_rate: float | None = None,
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
    elif b.state == "draft":
        head = f"Broadcast #{b.id} is prepared: nothing is sent before it is confirmed"
    elif finished:
        head = f"Broadcast #{b.id} is done"
    elif b.state == "paused":
        head = f"Broadcast #{b.id} is paused"
    else:
        head = f"Broadcast #{b.id} is sending"
    lines = [head]
    order = ("sent", "delivered", "read", "failed", "skipped", "cancelled", "interrupted")
    for platform in sorted(counts):
        per = counts[platform]
        shown = " · ".join(f"{s} {per[s]}" for s in order if per.get(s))
        lines.append(f"{platform}: {shown}")
    waiting = max(queued - recorded, 0)
    if not finished:
        lines.append(f"queued {waiting}{'' if b.expanded else ' so far'}")
        elapsed = (now - b.started_at).total_seconds() if b.started_at else 0.0
        if recorded and elapsed >= PROGRESS_EVERY:
            rate = recorded / elapsed
            if waiting:
                lines.append(f"about {_duration(waiting / rate)} to go at {rate:.0f}/s")
        elif limit_rate and waiting:
            # Nothing measured yet: the platforms' limits say how fast it can go at best.
            lines.append(
                f"about {_duration(waiting / limit_rate)} to go at the platforms' limit of"
                f" {limit_rate:g}/s"
            )
    else:
        lines.append(
            f"{total.get('sent', 0) + total.get('delivered', 0) + total.get('read', 0)} of"
            f" {recorded} delivered to the platforms; {total.get('failed', 0)} failed,"
            f" {total.get('skipped', 0)} skipped"
        )
        if total.get("interrupted"):
            lines.append(
                f"{total['interrupted']} were being sent when the bridge stopped: not sent again"
                " (they may or may not have arrived)"
            )
    for target in b.publish:
        lines.append(_post_line(b, target, (posts or {}).get(target)))
    if clicks[0]:
        lines.append(f"links clicked {clicks[0]} times by {clicks[1]} recipients")
    return "\n".join(lines)


def _post_line(b: store.BroadcastRecord, target: str, post: store.PostRecord | None) -> str:
    """How publishing on one target went, in one line."""
    where = publish.name(target)
    if post is None and b.state == "cancelled":
        return f"not published on {where}: the broadcast was cancelled"
    if post is None:
        return f"to be published on {where}" + (
            " at the broadcast's time" if b.state == "scheduled" else " (on its way)"
        )
    if post.state == "posted" and post.post_id:
        return f"published on {where}: {post.url} (post {post.post_id})"
    if post.state == "posted":
        return f"published on {where} ({post.reason})"
    return f"not published on {where}: {post.reason or post.state}"
