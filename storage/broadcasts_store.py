"""Broadcasts in the database: the broadcast, its audience in batches, and per-contact outcomes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    String,
    and_,
    bindparam,
    case,
    cast,
    exists,
    false,
    func,
    literal,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.engine import Row

from storage.records import Repository
from storage.tables import (
    blacklist,
    broadcast_posts,
    broadcast_sends,
    broadcasts,
    contacts,
    members,
    outbox,
)

# The platforms' service windows for anything that is not a template (WhatsApp: none at all
# for newsletters since 2019; Messenger: 24 hours, marketing outside it needs a paid tag).
MESSENGER_WINDOW = timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class BroadcastRecord:
    """A broadcast as the bridge works with it."""

    id: int
    created_by: str
    created_at: datetime
    surface: str
    channel: str | None
    progress_ref: str | None
    text: str
    template: dict[str, Any] | None
    file_id: int | None
    channel_ids: tuple[int, ...]
    platforms: tuple[str, ...]
    scheduled_at: datetime | None
    state: str
    started_at: datetime | None
    finished_at: datetime | None
    cursor: int
    queued: int
    expanded: bool
    # Where the text is also posted publicly ("facebook", "x").
    publish: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Recipient:
    """One contact a broadcast goes to."""

    contact_id: int
    platform: str
    account: str
    chat_id: str
    name: str


def _record(row: Row[Any]) -> BroadcastRecord:
    m = row._mapping
    return BroadcastRecord(
        id=int(m["id"]),
        created_by=m["created_by"],
        created_at=m["created_at"],
        surface=m["surface"],
        channel=m["channel"],
        progress_ref=m["progress_ref"],
        text=m["text"],
        template=m["template"],
        file_id=m["file_id"],
        channel_ids=tuple(int(c) for c in m["channel_ids"] or []),
        platforms=tuple(m["platforms"] or []),
        scheduled_at=m["scheduled_at"],
        state=m["state"],
        started_at=m["started_at"],
        finished_at=m["finished_at"],
        cursor=int(m["cursor"]),
        queued=int(m["queued"]),
        expanded=bool(m["expanded"]),
        publish=tuple(m.get("publish") or ()),
    )


def _audience(broadcast: BroadcastRecord, *, whole: bool = False) -> Any:
    """The condition that picks a broadcast's contacts (before exclusions).

    `whole`: the condition is evaluated for the whole audience at once (the preview), where
    reading the channel's members once beats looking each contact up; a batch of contacts
    (expansion, send-time checks) looks up each of its own in the members' primary key instead.
    """
    conditions: list[Any] = []
    if broadcast.channel_ids and whole:
        conditions.append(
            contacts.c.id.in_(
                select(members.c.contact_id).where(
                    members.c.channel_id.in_(list(broadcast.channel_ids)),
                    members.c.left_at.is_(None),
                )
            )
        )
    elif broadcast.channel_ids:
        conditions.append(
            exists().where(
                members.c.channel_id.in_(list(broadcast.channel_ids)),
                members.c.contact_id == contacts.c.id,
                members.c.left_at.is_(None),
            )
        )
    if broadcast.platforms:
        conditions.append(contacts.c.platform.in_(list(broadcast.platforms)))
    if not broadcast.channel_ids:
        # Whole platforms: only contacts who opted in (every contact has a source).
        conditions.append(contacts.c.opt_in_source.isnot(None))
    return and_(*conditions)


def skip_reason(
    platform: str,
    has_template: bool,
    blocked: bool,
    opted_out: bool,
    last_seen: datetime | None,
    now: datetime,
) -> str | None:
    """Why a broadcast is not sent to a contact, or None when it is."""
    if blocked:
        return "blacklisted"
    if opted_out:
        return "unsubscribed"
    if platform == "whatsapp" and not has_template:
        return "WhatsApp allows newsletters only as approved templates"
    if platform == "messenger" and (last_seen is None or now - last_seen > MESSENGER_WINDOW):
        return "outside Messenger's 24-hour window"
    return None


def _blocked(now: datetime) -> Any:
    return exists().where(
        blacklist.c.contact_id == contacts.c.id,
        blacklist.c.direction.in_(("out", "both")),
        or_(blacklist.c.until.is_(None), blacklist.c.until > now),
    )


@dataclass(frozen=True, slots=True)
class Verdicts:
    """Send-time checks of the audience's contacts from `first` on, in one read.

    `reasons`: contact → why not to send (None: send), for every contact of the audience with
    an id from `first` through `last`; a contact in that range that is missing has left the
    audience (or was erased). `last` is None when the read reached the end of the audience.
    """

    first: int
    last: int | None
    reasons: Mapping[int, str | None]

    def covers(self, contact_id: int) -> bool:
        """Whether this read answers for a contact."""
        return self.first <= contact_id and (self.last is None or contact_id <= self.last)


def _rate_keys_column(rate_keys: Mapping[tuple[str, str], str], mark: str, fallback: str) -> Any:
    """A row's rate keys: its account's template with the chat id for `mark`, else `fallback`."""
    if not rate_keys:
        return literal(fallback)
    return case(
        *(
            (
                and_(contacts.c.platform == platform, contacts.c.account == account),
                func.replace(literal(template), literal(mark), contacts.c.chat_id),
            )
            for (platform, account), template in rate_keys.items()
        ),
        else_=literal(fallback),
    )


_OUTCOME_COLUMNS = (
    "broadcast_id",
    "contact_id",
    "state",
    "reason",
    "platform",
    "account",
    "external_id",
    "at",
)


STATUS_ORDER = ("sent", "delivered", "read")


@dataclass(frozen=True, slots=True)
class PostRecord:
    """What became of publishing a broadcast on one target."""

    target: str
    state: str  # posted, failed, cancelled
    post_id: str | None
    url: str | None
    reason: str | None
    at: datetime


class Broadcasts(Repository):
    """Broadcasts, their audience in batches, per-contact outcomes and where they were published."""

    def create(
        self,
        *,
        by: str,
        at: datetime,
        surface: str,
        channel: str | None,
        text: str,
        template: dict[str, Any] | None,
        file_id: int | None,
        channel_ids: Sequence[int],
        platforms: Sequence[str],
        scheduled_at: datetime | None,
        publish: Sequence[str] = (),
    ) -> int:
        """A new broadcast, as a draft; returns its id."""
        result = self.conn.execute(
            broadcasts.insert().values(
                created_by=by,
                created_at=at,
                surface=surface,
                channel=channel,
                text=text,
                template=template,
                file_id=file_id,
                channel_ids=list(channel_ids),
                platforms=list(platforms),
                scheduled_at=scheduled_at,
                publish=list(publish),
                state="draft",
                cursor=0,
                queued=0,
                expanded=False,
            )
        )
        return int(result.inserted_primary_key[0])  # type: ignore[index]

    def get(self, broadcast_id: int) -> BroadcastRecord | None:
        """One broadcast."""
        row = self.conn.execute(select(broadcasts).where(broadcasts.c.id == broadcast_id)).first()
        return _record(row) if row is not None else None

    def latest(self, limit: int = 20) -> list[BroadcastRecord]:
        """The newest broadcasts first."""
        rows = self.conn.execute(select(broadcasts).order_by(broadcasts.c.id.desc()).limit(limit))
        return [_record(r) for r in rows]

    def page(self, *, after: int | None, limit: int) -> list[BroadcastRecord]:
        """Broadcasts by id, oldest first, from after the id `after`."""
        query = select(broadcasts).order_by(broadcasts.c.id).limit(limit)
        if after is not None:
            query = query.where(broadcasts.c.id > after)
        return [_record(r) for r in self.conn.execute(query)]

    def handled(self, broadcast_ids: Sequence[int]) -> dict[int, int]:
        """Per broadcast, how many recipients have an outcome (sent, failed, skipped…)."""
        if not broadcast_ids:
            return {}
        rows = self.conn.execute(
            select(broadcast_sends.c.broadcast_id, func.count())
            .where(broadcast_sends.c.broadcast_id.in_(list(broadcast_ids)))
            .group_by(broadcast_sends.c.broadcast_id)
        )
        return {int(broadcast_id): int(n) for broadcast_id, n in rows}

    def change(self, broadcast_id: int, **values: Any) -> None:
        """Set columns of a broadcast (state, times, progress_ref, cursor…)."""
        self.conn.execute(
            update(broadcasts).where(broadcasts.c.id == broadcast_id).values(**values)
        )

    def cancel_pending(self, low: str, high: str, reason: str) -> int:
        """Cancel the outbox rows still pending whose idempotency keys fall in [low, high) (a
        broadcast's, see bridge.broadcasts.key_range); how many there were."""
        result = self.conn.execute(
            update(outbox)
            .where(outbox.c.idem_key >= low, outbox.c.idem_key < high, outbox.c.state == "pending")
            .values(state="cancelled", last_error=reason)
        )
        return int(result.rowcount or 0)

    def recipients(self, broadcast: BroadcastRecord, after: int, limit: int) -> list[Recipient]:
        """The next contacts of the audience after a contact id, in id order."""
        rows = self.conn.execute(
            select(
                contacts.c.id,
                contacts.c.platform,
                contacts.c.account,
                contacts.c.chat_id,
                contacts.c.display_name,
            )
            .where(contacts.c.id > after, _audience(broadcast))
            .order_by(contacts.c.id)
            .limit(limit)
        )
        return [Recipient(int(r[0]), r[1], r[2], r[3], r[4]) for r in rows]

    def preview(self, broadcast: BroadcastRecord, now: datetime) -> dict[str, dict[str, int]]:
        """Per platform: how many contacts it goes to, and how many are skipped for each reason.

        Counted by the database (GROUP BY): a channel of a million contacts is a few rows here.
        """
        recent = case((contacts.c.last_seen > now - MESSENGER_WINDOW, true()), else_=false())
        blocked = _blocked(now)
        opted_out = contacts.c.opted_out_at.isnot(None)
        rows = self.conn.execute(
            select(
                contacts.c.platform,
                blocked.label("blocked"),
                opted_out.label("opted_out"),
                recent.label("recent"),
                func.count(),
            )
            .where(_audience(broadcast, whole=True))
            .group_by(contacts.c.platform, blocked, opted_out, recent)
        )
        counts: dict[str, dict[str, int]] = {}
        for platform, is_blocked, is_out, is_recent, n in rows:
            # Only "within the window or not" matters to skip_reason: stand in with a time.
            last_seen = now if is_recent else None
            reason = skip_reason(
                platform,
                broadcast.template is not None,
                bool(is_blocked),
                bool(is_out),
                last_seen,
                now,
            )
            per = counts.setdefault(platform, {"to": 0})
            key = reason or "to"
            per[key] = per.get(key, 0) + int(n)
        return counts

    def check(self, broadcast: BroadcastRecord, contact_id: int, now: datetime) -> str | None:
        """Send-time check of one contact: why not to send now (None: send)."""
        row = self.conn.execute(
            select(
                contacts.c.platform,
                _blocked(now).label("blocked"),
                contacts.c.opted_out_at.isnot(None).label("opted_out"),
                contacts.c.last_seen,
                _audience(broadcast).label("member"),
            ).where(contacts.c.id == contact_id)
        ).first()
        if row is None:
            return "the contact was erased"
        if not row.member:
            return "left the channel"
        return skip_reason(
            row.platform,
            broadcast.template is not None,
            bool(row.blocked),
            bool(row.opted_out),
            row.last_seen,
            now,
        )

    def verdicts(
        self, broadcast: BroadcastRecord, first: int, limit: int, now: datetime
    ) -> Verdicts:
        """The send-time checks of up to `limit` audience contacts with ids from `first` on."""
        rows = self.conn.execute(
            select(
                contacts.c.id,
                contacts.c.platform,
                _blocked(now).label("blocked"),
                contacts.c.opted_out_at.isnot(None).label("opted_out"),
                contacts.c.last_seen,
            )
            .where(contacts.c.id >= first, _audience(broadcast))
            .order_by(contacts.c.id)
            .limit(limit)
        ).all()
        has_template = broadcast.template is not None
        reasons = {
            int(r.id): skip_reason(
                r.platform, has_template, bool(r.blocked), bool(r.opted_out), r.last_seen, now
            )
            for r in rows
        }
        last = int(rows[-1].id) if len(rows) == limit else None
        return Verdicts(first, last, reasons)

    def expand(
        self,
        broadcast: BroadcastRecord,
        *,
        rate_keys: Mapping[tuple[str, str], str],
        mark: str,
        fallback: str,
        limit: int,
        now: float,
    ) -> tuple[int, int, bool]:
        """Queue the audience among the next `limit` contacts as outbox rows, in one
        INSERT … SELECT.

        `rate_keys`: per (platform, account) the row's rate keys with `mark` where the chat id
        goes (`fallback` for accounts not configured: their rows fail with a reason). Returns
        (rows queued, the new cursor, whether the audience is exhausted). Each row's key is
        `bc:<broadcast>:<contact>`, so a batch queued twice is queued once.
        """
        boundary = self._batch_boundary(broadcast, limit)
        audience = and_(contacts.c.id > broadcast.cursor, _audience(broadcast))
        if boundary is not None:
            audience = and_(audience, contacts.c.id <= boundary)
        cid = cast(contacts.c.id, String)
        rows = (
            select(
                literal("broadcast.send"),
                literal(f"bc:{broadcast.id}:") + cid,
                literal("bc:") + cid,
                _rate_keys_column(rate_keys, mark, fallback),
                self._send_payload(broadcast),
                literal("pending"),
                literal(0),
                literal(0.0),
                literal(now),
                literal(True),
            )
            .where(audience)
            .order_by(contacts.c.id)
        )
        statement = (
            self._insert(outbox)
            .from_select(
                [
                    "kind",
                    "idem_key",
                    "lane",
                    "rate_keys",
                    "payload",
                    "state",
                    "attempts",
                    "next_at",
                    "created_at",
                    "bulk",
                ],
                rows,
            )
            .on_conflict_do_nothing(index_elements=["idem_key"])
        )
        queued = int(self.conn.execute(statement).rowcount or 0)
        if boundary is None:
            cursor = self.conn.execute(select(func.max(contacts.c.id))).scalar()
            return queued, int(cursor) if cursor is not None else broadcast.cursor, True
        return queued, int(boundary), False

    def _batch_boundary(self, broadcast: BroadcastRecord, limit: int) -> Any:
        """Where a batch ends: the `limit`-th contact after the cursor, of all contacts (a walk of
        the primary key; None: the rest fits). The audience's contacts among them are queued."""
        return self.conn.execute(
            select(contacts.c.id)
            .where(contacts.c.id > broadcast.cursor)
            .order_by(contacts.c.id)
            .offset(limit - 1)
            .limit(1)
        ).scalar()

    def _send_payload(self, broadcast: BroadcastRecord) -> Any:
        """The `broadcast.send` payload of a contact, built as JSON by the database."""
        build_json = func.json_build_object if self.dialect == "postgresql" else func.json_object
        return build_json(
            literal("b"),
            literal(broadcast.id),
            literal("c"),
            contacts.c.id,
            literal("p"),
            contacts.c.platform,
            literal("a"),
            contacts.c.account,
            literal("chat"),
            contacts.c.chat_id,
            literal("n"),
            func.coalesce(contacts.c.display_name, literal("")),
        )

    def record(self, outcomes: Iterable[dict[str, Any]]) -> None:
        """What became of the broadcast for contacts (a repeated outcome is ignored, and so is one
        for a contact erased meanwhile: nothing about them may be kept)."""
        rows = list(outcomes)
        if not rows:
            return
        values = select(
            *(bindparam(name, type_=broadcast_sends.c[name].type) for name in _OUTCOME_COLUMNS)
        ).where(exists().where(contacts.c.id == bindparam("contact_id")))
        self.conn.execute(
            self._insert(broadcast_sends)
            .from_select(list(_OUTCOME_COLUMNS), values)
            .on_conflict_do_nothing(index_elements=["broadcast_id", "contact_id"]),
            rows,
        )

    def waiting(self, low: str, high: str) -> int:
        """How many outbox rows with keys from `low` up to `high` are still to be sent."""
        return int(
            self.conn.execute(
                select(func.count()).where(
                    outbox.c.idem_key >= low, outbox.c.idem_key < high, outbox.c.state == "pending"
                )
            ).scalar()
            or 0
        )

    def counts(self, broadcast_id: int) -> dict[str, int]:
        """How many contacts are in each state (sent, delivered, read, failed, skipped…)."""
        rows = self.conn.execute(
            select(broadcast_sends.c.state, func.count())
            .where(broadcast_sends.c.broadcast_id == broadcast_id)
            .group_by(broadcast_sends.c.state)
        )
        return {str(state): int(n) for state, n in rows}

    def per_platform(self, broadcast_id: int) -> dict[str, dict[str, int]]:
        """Per platform, how many contacts are in each state."""
        rows = self.conn.execute(
            select(broadcast_sends.c.platform, broadcast_sends.c.state, func.count())
            .where(broadcast_sends.c.broadcast_id == broadcast_id)
            .group_by(broadcast_sends.c.platform, broadcast_sends.c.state)
        )
        found: dict[str, dict[str, int]] = {}
        for platform, state, n in rows:
            found.setdefault(str(platform), {})[str(state)] = int(n)
        return found

    def apply_status(
        self, platform: str, account: str, external_id: str, status: str, reason: str | None
    ) -> bool:
        """A platform's delivery status for a broadcast message; False if it is not one."""
        row = self.conn.execute(
            select(broadcast_sends.c.id, broadcast_sends.c.state).where(
                broadcast_sends.c.platform == platform,
                broadcast_sends.c.account == account,
                broadcast_sends.c.external_id == external_id,
            )
        ).first()
        if row is None:
            return False
        current = str(row.state)
        if status == "failed" or (
            current in STATUS_ORDER
            and status in STATUS_ORDER
            and STATUS_ORDER.index(status) > STATUS_ORDER.index(current)
        ):
            self.conn.execute(
                update(broadcast_sends)
                .where(broadcast_sends.c.id == row.id)
                .values(state=status, reason=reason if status == "failed" else None)
            )
        return True

    def replied(
        self, contact_ids: Sequence[int], now: datetime, within: timedelta
    ) -> list[tuple[int, int]]:
        """Contacts answering a broadcast sent to them lately: (contact, broadcast), each once."""
        if not contact_ids:
            return []
        rows = self.conn.execute(
            select(
                broadcast_sends.c.id, broadcast_sends.c.contact_id, broadcast_sends.c.broadcast_id
            ).where(
                broadcast_sends.c.contact_id.in_(list(set(contact_ids))),
                broadcast_sends.c.replied_at.is_(None),
                broadcast_sends.c.state.in_(("sent", "delivered", "read")),
                broadcast_sends.c.at > now - within,
            )
        ).all()
        if not rows:
            return []
        self.conn.execute(
            update(broadcast_sends)
            .where(broadcast_sends.c.id.in_([r[0] for r in rows]))
            .values(replied_at=now)
        )
        return [(int(r[1]), int(r[2])) for r in rows]

    def record_post(
        self,
        broadcast_id: int,
        target: str,
        state: str,
        *,
        at: datetime,
        post_id: str | None = None,
        url: str | None = None,
        reason: str | None = None,
    ) -> bool:
        """Keep the outcome of publishing on a target; False (and nothing changed) if one is
        kept."""
        found = self.conn.execute(
            select(broadcast_posts.c.id).where(
                broadcast_posts.c.broadcast_id == broadcast_id, broadcast_posts.c.target == target
            )
        ).first()
        if found is not None:
            return False
        self.conn.execute(
            broadcast_posts.insert().values(
                broadcast_id=broadcast_id,
                target=target,
                state=state,
                post_id=post_id,
                url=url,
                reason=reason,
                at=at,
            )
        )
        return True

    def posts(self, broadcast_id: int) -> dict[str, PostRecord]:
        """Per target, what became of publishing the broadcast (targets not yet done are
        missing)."""
        rows = self.conn.execute(
            select(broadcast_posts).where(broadcast_posts.c.broadcast_id == broadcast_id)
        )
        return {
            str(r.target): PostRecord(
                target=str(r.target),
                state=str(r.state),
                post_id=r.post_id,
                url=r.url,
                reason=r.reason,
                at=r.at,
            )
            for r in rows
        }
