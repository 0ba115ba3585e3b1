"""Broadcasts in the database: the broadcast, its audience in batches, and per-contact outcomes."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, exists, func, or_, select, update
from sqlalchemy.engine import Connection, Row

from storage.tables import blacklist, broadcast_sends, broadcasts, contacts, members

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
    )


def create(
    conn: Connection,
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
) -> int:
    """A new broadcast, as a draft; returns its id."""
    result = conn.execute(
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
            state="draft",
            cursor=0,
            queued=0,
            expanded=False,
        )
    )
    return int(result.inserted_primary_key[0])  # type: ignore[index]


def get(conn: Connection, broadcast_id: int) -> BroadcastRecord | None:
    """One broadcast."""
    row = conn.execute(select(broadcasts).where(broadcasts.c.id == broadcast_id)).first()
    return _record(row) if row is not None else None


def latest(conn: Connection, limit: int = 20) -> list[BroadcastRecord]:
    """The newest broadcasts first."""
    rows = conn.execute(select(broadcasts).order_by(broadcasts.c.id.desc()).limit(limit))
    return [_record(r) for r in rows]


def change(conn: Connection, broadcast_id: int, **values: Any) -> None:
    """Set columns of a broadcast (state, times, progress_ref, cursor…)."""
    conn.execute(update(broadcasts).where(broadcasts.c.id == broadcast_id).values(**values))


def _audience(b: BroadcastRecord) -> Any:
    """The condition that picks a broadcast's contacts (before exclusions)."""
    conditions: list[Any] = []
    if b.channel_ids:
        conditions.append(
            exists().where(
                members.c.contact_id == contacts.c.id,
                members.c.channel_id.in_(list(b.channel_ids)),
                members.c.left_at.is_(None),
            )
        )
    if b.platforms:
        conditions.append(contacts.c.platform.in_(list(b.platforms)))
    if not b.channel_ids:
        # Whole platforms: only contacts who opted in (every contact has a source).
        conditions.append(contacts.c.opt_in_source.isnot(None))
    return and_(*conditions)


def recipients(conn: Connection, b: BroadcastRecord, after: int, limit: int) -> list[Recipient]:
    """The next contacts of the audience after a contact id, in id order."""
    rows = conn.execute(
        select(
            contacts.c.id,
            contacts.c.platform,
            contacts.c.account,
            contacts.c.chat_id,
            contacts.c.display_name,
        )
        .where(contacts.c.id > after, _audience(b))
        .order_by(contacts.c.id)
        .limit(limit)
    )
    return [Recipient(int(r[0]), r[1], r[2], r[3], r[4]) for r in rows]


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


def preview(conn: Connection, b: BroadcastRecord, now: datetime) -> dict[str, dict[str, int]]:
    """Per platform: how many contacts it goes to, and how many are skipped for each reason."""
    rows = conn.execute(
        select(
            contacts.c.platform,
            _blocked(now).label("blocked"),
            contacts.c.opted_out_at.isnot(None).label("opted_out"),
            contacts.c.last_seen,
        ).where(_audience(b))
    )
    counts: dict[str, dict[str, int]] = {}
    for platform, blocked, opted_out, last_seen in rows:
        reason = skip_reason(
            platform, b.template is not None, bool(blocked), bool(opted_out), last_seen, now
        )
        per = counts.setdefault(platform, {"to": 0})
        key = reason or "to"
        per[key] = per.get(key, 0) + 1
    return counts


def check(conn: Connection, b: BroadcastRecord, contact_id: int, now: datetime) -> str | None:
    """Send-time check of one contact: why not to send now (None: send)."""
    row = conn.execute(
        select(
            contacts.c.platform,
            _blocked(now).label("blocked"),
            contacts.c.opted_out_at.isnot(None).label("opted_out"),
            contacts.c.last_seen,
            _audience(b).label("member"),
        ).where(contacts.c.id == contact_id)
    ).first()
    if row is None:
        return "the contact was erased"
    if not row.member:
        return "left the channel"
    return skip_reason(
        row.platform,
        b.template is not None,
        bool(row.blocked),
        bool(row.opted_out),
        row.last_seen,
        now,
    )


def record(conn: Connection, outcomes: Iterable[dict[str, Any]]) -> None:
    """What became of the broadcast for contacts (a repeated outcome is ignored)."""
    rows = list(outcomes)
    for row in rows:
        found = conn.execute(
            select(broadcast_sends.c.id).where(
                broadcast_sends.c.broadcast_id == row["broadcast_id"],
                broadcast_sends.c.contact_id == row["contact_id"],
            )
        ).first()
        if found is None:
            conn.execute(broadcast_sends.insert().values(**row))


def counts(conn: Connection, broadcast_id: int) -> dict[str, int]:
    """How many contacts are in each state (sent, delivered, read, failed, skipped…)."""
    rows = conn.execute(
        select(broadcast_sends.c.state, func.count())
        .where(broadcast_sends.c.broadcast_id == broadcast_id)
        .group_by(broadcast_sends.c.state)
    )
    return {str(state): int(n) for state, n in rows}


def per_platform(conn: Connection, broadcast_id: int) -> dict[str, dict[str, int]]:
    """Per platform, how many contacts are in each state."""
    rows = conn.execute(
        select(broadcast_sends.c.platform, broadcast_sends.c.state, func.count())
        .where(broadcast_sends.c.broadcast_id == broadcast_id)
        .group_by(broadcast_sends.c.platform, broadcast_sends.c.state)
    )
    found: dict[str, dict[str, int]] = {}
    for platform, state, n in rows:
        found.setdefault(str(platform), {})[str(state)] = int(n)
    return found


STATUS_ORDER = ("sent", "delivered", "read")


def apply_status(
    conn: Connection, platform: str, account: str, external_id: str, status: str, reason: str | None
) -> bool:
    """A platform's delivery status for a broadcast message; False if it is not one."""
    row = conn.execute(
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
        conn.execute(
            update(broadcast_sends)
            .where(broadcast_sends.c.id == row.id)
            .values(state=status, reason=reason if status == "failed" else None)
        )
    return True


def replied(
    conn: Connection, contact_ids: Sequence[int], now: datetime, within: timedelta
) -> list[tuple[int, int]]:
    """Contacts answering a broadcast sent to them lately: (contact, broadcast), each once."""
    if not contact_ids:
        return []
    rows = conn.execute(
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
    conn.execute(
        update(broadcast_sends)
        .where(broadcast_sends.c.id.in_([r[0] for r in rows]))
        .values(replied_at=now)
    )
    return [(int(r[1]), int(r[2])) for r in rows]
