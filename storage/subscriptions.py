"""Subscriber channels, memberships, consent words and the blacklist."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, and_, delete, func, or_, select, update

from bridge.types import ContactId
from storage.records import Repository
from storage.tables import blacklist, channels, contacts, members, words


@dataclass(frozen=True, slots=True)
class ChannelRecord:
    """A subscriber channel."""

    id: int
    name: str
    join_keyword: str | None
    leave_keyword: str | None
    join_reply: str | None
    leave_reply: str | None
    platform: str | None
    created_by: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class BlockRecord:
    """A blacklist entry."""

    contact_id: ContactId
    direction: str  # in, out or both
    until: datetime | None
    reason: str | None
    created_by: str
    created_at: datetime

    def blocks(self, direction: str, now: datetime) -> bool:
        """Whether this entry blocks messages going `direction` (in or out) at `now`."""
        active = self.until is None or self.until > now
        return active and self.direction in (direction, "both")


def _channel(row: object) -> ChannelRecord:
    m = row._mapping  # type: ignore[attr-defined]
    return ChannelRecord(
        id=int(m["id"]),
        name=m["name"],
        join_keyword=m["join_keyword"],
        leave_keyword=m["leave_keyword"],
        join_reply=m["join_reply"],
        leave_reply=m["leave_reply"],
        platform=m["platform"],
        created_by=m["created_by"],
        created_at=m["created_at"],
    )


def _block(row: object) -> BlockRecord:
    m = row._mapping  # type: ignore[attr-defined]
    return BlockRecord(
        contact_id=ContactId(int(m["contact_id"])),
        direction=m["direction"],
        until=m["until"],
        reason=m["reason"],
        created_by=m["created_by"],
        created_at=m["created_at"],
    )


def fold(text: str) -> str:
    """How keywords and consent words are compared: trimmed, case-folded, spaces collapsed, and
    spelled one way whatever the keyboard sent (composed accents, no full-width letters, and a
    Turkish capital İ folds to i)."""
    folded = unicodedata.normalize("NFKC", " ".join(text.split())).casefold()
    return unicodedata.normalize("NFKC", folded.replace("i\u0307", "i"))


def member_rows() -> Select[tuple[int, str, str, str, datetime]]:
    """Members with what a member list shows of them: contact id, platform, name, source,
    joined at."""
    return select(
        contacts.c.id,
        contacts.c.platform,
        contacts.c.display_name,
        members.c.source,
        members.c.joined_at,
    ).join(contacts, contacts.c.id == members.c.contact_id)


class Subscriptions(Repository):
    """Channels, memberships, consent words and the blacklist on one connection."""

    # -- channels ------------------------------------------------------------------------------

    def all_channels(self) -> list[ChannelRecord]:
        """Every channel, by name."""
        return [_channel(r) for r in self.conn.execute(select(channels).order_by(channels.c.name))]

    def channel_by_name(self, name: str) -> ChannelRecord | None:
        """A channel by its name (case-insensitive)."""
        row = self.conn.execute(
            select(channels).where(func.lower(channels.c.name) == name.casefold())
        ).first()
        return _channel(row) if row is not None else None

    def channels_by_names(self, names: Iterable[str]) -> dict[str, ChannelRecord]:
        """Channels by their names, in one read; keyed by the name casefolded."""
        wanted = {name.casefold() for name in names}
        if not wanted:
            return {}
        rows = self.conn.execute(select(channels).where(func.lower(channels.c.name).in_(wanted)))
        found = (_channel(row) for row in rows)
        return {channel.name.casefold(): channel for channel in found}

    def channel_by_id(self, channel_id: int) -> ChannelRecord | None:
        """A channel by its id."""
        row = self.conn.execute(select(channels).where(channels.c.id == channel_id)).first()
        return _channel(row) if row is not None else None

    def channels_by_keyword(self) -> tuple[dict[str, ChannelRecord], dict[str, ChannelRecord]]:
        """Channels by their folded join keyword, and by their folded leave keyword."""
        join: dict[str, ChannelRecord] = {}
        leave: dict[str, ChannelRecord] = {}
        for channel in self.all_channels():
            if channel.join_keyword:
                join[fold(channel.join_keyword)] = channel
            if channel.leave_keyword:
                leave[fold(channel.leave_keyword)] = channel
        return join, leave

    def channels_for_platform(self, platform: str) -> list[ChannelRecord]:
        """Channels that customers of a platform join by signing up there."""
        rows = self.conn.execute(select(channels).where(channels.c.platform == platform))
        return [_channel(r) for r in rows]

    def create_channel(self, name: str, by: str, at: datetime) -> ChannelRecord:
        """A new channel without keywords."""
        self.conn.execute(channels.insert().values(name=name, created_by=by, created_at=at))
        found = self.channel_by_name(name)
        assert found is not None
        return found

    def update_channel(self, channel_id: int, **values: str | None) -> None:
        """Change a channel's name, keywords, replies or platform."""
        self.conn.execute(update(channels).where(channels.c.id == channel_id).values(**values))

    def delete_channel(self, channel_id: int) -> None:
        """Delete a channel and its memberships."""
        self.conn.execute(delete(members).where(members.c.channel_id == channel_id))
        self.conn.execute(delete(channels).where(channels.c.id == channel_id))

    # -- memberships ---------------------------------------------------------------------------

    def join(self, channel_id: int, contact_id: int, source: str, at: datetime) -> bool:
        """Subscribe a contact (again); False when they were subscribed already."""
        row = self.conn.execute(
            select(members.c.left_at).where(
                members.c.channel_id == channel_id, members.c.contact_id == contact_id
            )
        ).first()
        if row is None:
            self.conn.execute(
                members.insert().values(
                    channel_id=channel_id, contact_id=contact_id, joined_at=at, source=source
                )
            )
            return True
        if row[0] is None:
            return False
        self.conn.execute(
            update(members)
            .where(members.c.channel_id == channel_id, members.c.contact_id == contact_id)
            .values(joined_at=at, source=source, left_at=None, left_source=None)
        )
        return True

    def leave(
        self, contact_id: int, source: str, at: datetime, channel_id: int | None = None
    ) -> list[int]:
        """End a contact's subscriptions (one channel, or all); the channel ids that ended."""
        where = [members.c.contact_id == contact_id, members.c.left_at.is_(None)]
        if channel_id is not None:
            where.append(members.c.channel_id == channel_id)
        ended = [int(r[0]) for r in self.conn.execute(select(members.c.channel_id).where(*where))]
        if ended:
            self.conn.execute(update(members).where(*where).values(left_at=at, left_source=source))
        return ended

    def rejoin_after_stop(self, contact_id: int, at: datetime) -> list[int]:
        """Bring back the subscriptions a STOP ended; the channel ids that came back."""
        where = and_(members.c.contact_id == contact_id, members.c.left_source == "STOP")
        back = [int(r[0]) for r in self.conn.execute(select(members.c.channel_id).where(where))]
        if back:
            self.conn.execute(update(members).where(where).values(left_at=None, left_source=None))
        return back

    def active_members(
        self, channel_id: int, limit: int | None = None
    ) -> list[tuple[int, str, str, str, datetime]]:
        """A channel's current members (the first `limit`), longest-standing first: contact id,
        platform, name, source, joined at."""
        rows = self.conn.execute(
            member_rows()
            .where(members.c.channel_id == channel_id, members.c.left_at.is_(None))
            .order_by(members.c.joined_at, contacts.c.id)
            .limit(limit)
        )
        return [(int(r[0]), r[1], r[2], r[3], r[4]) for r in rows]

    def member_counts(self) -> dict[int, dict[str, int]]:
        """Per channel, current members per platform."""
        rows = self.conn.execute(
            select(members.c.channel_id, contacts.c.platform, func.count())
            .join(contacts, contacts.c.id == members.c.contact_id)
            .where(members.c.left_at.is_(None))
            .group_by(members.c.channel_id, contacts.c.platform)
        )
        counts: dict[int, dict[str, int]] = {}
        for channel_id, platform, count in rows:
            counts.setdefault(int(channel_id), {})[platform] = int(count)
        return counts

    def channels_of(self, contact_id: int) -> list[tuple[str, str, datetime, datetime | None]]:
        """A contact's channels: name, source, joined at, left at (None while subscribed)."""
        rows = self.conn.execute(
            select(channels.c.name, members.c.source, members.c.joined_at, members.c.left_at)
            .join(channels, channels.c.id == members.c.channel_id)
            .where(members.c.contact_id == contact_id)
            .order_by(channels.c.name)
        )
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    # -- consent words -------------------------------------------------------------------------

    def consent_words(self) -> dict[str, str]:
        """Every consent word (folded) with its kind: stop or start."""
        return {fold(r[0]): r[1] for r in self.conn.execute(select(words.c.word, words.c.kind))}

    def list_consent_words(self) -> list[tuple[str, str, str]]:
        """Every consent word: kind, language, word."""
        rows = self.conn.execute(
            select(words.c.kind, words.c.language, words.c.word).order_by(
                words.c.kind.desc(), words.c.language, words.c.word
            )
        )
        return [(r[0], r[1], r[2]) for r in rows]

    def add_consent_word(self, word: str, kind: str, language: str) -> bool:
        """Add a word; False when it is in the list already."""
        folded = fold(word)
        known = self.conn.execute(select(words.c.word).where(words.c.word == folded)).first()
        if known is not None:
            return False
        self.conn.execute(words.insert().values(word=folded, kind=kind, language=language))
        return True

    def remove_consent_word(self, word: str) -> bool:
        """Remove a word; False when it was not in the list."""
        return bool(self.conn.execute(delete(words).where(words.c.word == fold(word))).rowcount)

    # -- blacklist -----------------------------------------------------------------------------

    def blocks_of(self, contact_ids: Iterable[int]) -> dict[ContactId, BlockRecord]:
        """The blacklist entries of these contacts (expired ones included; check `blocks`)."""
        ids = list(contact_ids)
        if not ids:
            return {}
        rows = self.conn.execute(select(blacklist).where(blacklist.c.contact_id.in_(ids)))
        return {entry.contact_id: entry for entry in map(_block, rows)}

    def block(
        self,
        contact_id: int,
        direction: str,
        until: datetime | None,
        reason: str | None,
        by: str,
        at: datetime,
    ) -> None:
        """Put a contact on the blacklist (replacing an earlier entry)."""
        self.conn.execute(delete(blacklist).where(blacklist.c.contact_id == contact_id))
        self.conn.execute(
            blacklist.insert().values(
                contact_id=contact_id,
                direction=direction,
                until=until,
                reason=reason,
                created_by=by,
                created_at=at,
            )
        )

    def unblock(self, contact_id: int) -> bool:
        """Take a contact off the blacklist; False when they were not on it."""
        return bool(
            self.conn.execute(
                delete(blacklist).where(blacklist.c.contact_id == contact_id)
            ).rowcount
        )

    def active_blocks(self, now: datetime) -> list[tuple[BlockRecord, str, str]]:
        """Entries in force at `now`, with each contact's platform and name; expired ones are
        dropped on the way (they lift themselves)."""
        self.conn.execute(
            delete(blacklist).where(blacklist.c.until.isnot(None), blacklist.c.until <= now)
        )
        rows = self.conn.execute(
            select(blacklist, contacts.c.platform, contacts.c.display_name)
            .join(contacts, contacts.c.id == blacklist.c.contact_id)
            .where(or_(blacklist.c.until.is_(None), blacklist.c.until > now))
            .order_by(blacklist.c.created_at)
        )
        return [(_block(r), r.platform, r.display_name) for r in rows]

    def forget_contacts(self, contact_ids: Sequence[int]) -> None:
        """Drop memberships and blacklist entries of contacts being erased."""
        if contact_ids:
            self.conn.execute(delete(members).where(members.c.contact_id.in_(list(contact_ids))))
            self.conn.execute(
                delete(blacklist).where(blacklist.c.contact_id.in_(list(contact_ids)))
            )
