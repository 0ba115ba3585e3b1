"""Broadcasts: the rows that start one, the placeholders of its text, and the progress message
in the chat where it was started. The outbox handlers that carry a broadcast out are in
`bridge.handlers.broadcasts`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from datetime import datetime

from bridge import publish
from bridge.jobs import (
    BroadcastExpandJob,
    BroadcastProgressJob,
    BroadcastPublishJob,
)
from bridge.outbox_lanes import HOLD_PREFIX
from bridge.protocols import Connector
from bridge.types import AccountId, ChatId, Platform
from storage import NewJob
from storage.broadcasts_store import BroadcastRecord, PostRecord

log = logging.getLogger(__name__)

PROGRESS_EVERY = 3.0
# Where a connector's rate keys name the chat, in the templates the expansion fills in SQL.
MARK = "{chat}"


def hold_key(broadcast_id: int) -> str:
    """The rate key every row of a broadcast carries, to hold them all while it is paused."""
    return f"{HOLD_PREFIX}bc:{broadcast_id}"


def start_jobs(broadcast: BroadcastRecord, now: datetime) -> list[NewJob]:
    """What a confirmed broadcast starts with: the first expansion, the progress report and a
    post on each publishing target (at the broadcast's time)."""
    scheduled = broadcast.scheduled_at
    at = scheduled.timestamp() if scheduled and scheduled > now else 0.0
    return [
        *(
            BroadcastPublishJob(broadcast=broadcast.id, target=target).new_job(next_at=at)
            for target in broadcast.publish
        ),
        BroadcastExpandJob(broadcast=broadcast.id).new_job(next_at=at),
        BroadcastProgressJob(broadcast=broadcast.id, number=0).new_job(
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


def _duration(seconds: float) -> str:
    """A time to go, rounded up: 45s, 12 min, 2 h 5 min."""
    whole = int(seconds) + 1
    if whole < 120:
        return f"{whole}s"
    minutes = (whole + 59) // 60
    if minutes < 120:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min"


def allowed_rate(
    connectors: Mapping[tuple[Platform, AccountId], Connector], platforms: Iterable[str]
) -> float | None:
    """Messages a second the accounts of these platforms may send together, by their rate
    limits (for the time to go before any message has gone)."""
    wanted = set(platforms)
    total = 0.0
    for (platform, _), connector in connectors.items():
        if wanted and platform not in wanted:
            continue
        keys = connector.rate_keys(ChatId(MARK))
        limit = connector.rate_limits().get(keys[0]) if keys else None
        total += limit.rate if limit is not None else 0.0
    return total or None


def progress_text(
    broadcast: BroadcastRecord,
    counts: dict[str, dict[str, int]],
    finished: bool,
    now: datetime,
    clicks: tuple[int, int] = (0, 0),
    posts: Mapping[str, PostRecord] | None = None,
    limit_rate: float | None = None,
) -> str:
    """The progress (or the summary) of a broadcast in a few lines."""
    total: dict[str, int] = {}
    for per in counts.values():
        for state, n in per.items():
            total[state] = total.get(state, 0) + n
    recorded = sum(total.values())
    queued = broadcast.queued
    if broadcast.state == "scheduled" and broadcast.scheduled_at:
        at = broadcast.scheduled_at
        head = f"Broadcast #{broadcast.id} is scheduled for {at:%Y-%m-%d %H:%M} UTC"
    elif broadcast.state == "cancelled":
        head = f"Broadcast #{broadcast.id} was cancelled"
    elif broadcast.state == "draft":
        head = f"Broadcast #{broadcast.id} is prepared: nothing is sent before it is confirmed"
    elif finished:
        head = f"Broadcast #{broadcast.id} is done"
    elif broadcast.state == "paused":
        head = f"Broadcast #{broadcast.id} is paused"
    else:
        head = f"Broadcast #{broadcast.id} is sending"
    lines = [head]
    order = ("sent", "delivered", "read", "failed", "skipped", "cancelled", "interrupted")
    for platform in sorted(counts):
        per = counts[platform]
        shown = " · ".join(f"{s} {per[s]}" for s in order if per.get(s))
        lines.append(f"{platform}: {shown}")
    waiting = max(queued - recorded, 0)
    if not finished:
        lines.append(f"queued {waiting}{'' if broadcast.expanded else ' so far'}")
        elapsed = (now - broadcast.started_at).total_seconds() if broadcast.started_at else 0.0
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
    for target in broadcast.publish:
        lines.append(_post_line(broadcast, target, (posts or {}).get(target)))
    if clicks[0]:
        lines.append(f"links clicked {clicks[0]} times by {clicks[1]} recipients")
    return "\n".join(lines)


def _post_line(broadcast: BroadcastRecord, target: str, post: PostRecord | None) -> str:
    """How publishing on one target went, in one line."""
    where = publish.name(target)
    if post is None and broadcast.state == "cancelled":
        return f"not published on {where}: the broadcast was cancelled"
    if post is None:
        return f"to be published on {where}" + (
            " at the broadcast's time" if broadcast.state == "scheduled" else " (on its way)"
        )
    if post.state == "posted" and post.post_id:
        return f"published on {where}: {post.url} (post {post.post_id})"
    if post.state == "posted":
        return f"published on {where} ({post.reason})"
    return f"not published on {where}: {post.reason or post.state}"
