"""Look-ups the /channel and /blacklist commands need beyond `storage.subscriptions`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, or_, select
from sqlalchemy.sql.elements import ColumnElement

from bridge.types import ContactId
from storage.contacts_store import ContactQueries
from storage.records import ContactRecord, Repository
from storage.subscriptions import Subscriptions, member_rows
from storage.tables import contacts, members


@dataclass(frozen=True, slots=True)
class MemberRecord:
    """A current member of a channel, as a member list shows them."""

    contact_id: ContactId
    platform: str
    display_name: str
    source: str
    joined_at: datetime


class ChannelMembers(Repository):
    """Who is in a channel, page by page, and which contacts an address names (the people a
    member or blacklist command is about)."""

    def contacts_by_address(
        self, chat_ids: Sequence[str], username: str | None = None
    ) -> list[ContactRecord]:
        """Contacts on any platform account whose chat id is one of these (or with this
        username), by id."""
        where: list[ColumnElement[bool]] = []
        if chat_ids:
            where.append(contacts.c.chat_id.in_(list(chat_ids)))
        if username:
            where.append(func.lower(contacts.c.username) == username.lower())
        if not where:
            return []
        ids = self.conn.execute(select(contacts.c.id).where(or_(*where)).order_by(contacts.c.id))
        queries = ContactQueries(self.conn)
        found = [queries.contact(ContactId(int(row[0]))) for row in ids]
        return [c for c in found if c is not None]

    def member_page(self, channel_id: int, limit: int) -> list[MemberRecord]:
        """The first `limit` current members of a channel, longest-standing first."""
        rows = Subscriptions(self.conn).active_members(channel_id, limit)
        return [MemberRecord(ContactId(r[0]), r[1], r[2], r[3], r[4]) for r in rows]

    def is_member(self, channel_id: int, contact_id: int) -> bool:
        """Whether a contact is subscribed to a channel right now."""
        row = self.conn.execute(
            select(members.c.contact_id).where(
                members.c.channel_id == channel_id,
                members.c.contact_id == contact_id,
                members.c.left_at.is_(None),
            )
        ).first()
        return row is not None

    def members_after(
        self, channel_id: int, *, after: int | None, limit: int
    ) -> list[MemberRecord]:
        """A channel's current members by contact id, those after contact `after`."""
        where = [members.c.channel_id == channel_id, members.c.left_at.is_(None)]
        if after is not None:
            where.append(members.c.contact_id > after)
        rows = self.conn.execute(
            member_rows().where(*where).order_by(members.c.contact_id).limit(limit)
        )
        return [MemberRecord(ContactId(r[0]), r[1], r[2], r[3], r[4]) for r in rows]
