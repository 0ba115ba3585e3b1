"""Short links and their clicks: create with a fresh code, find, count, list."""

from __future__ import annotations

import secrets
import string
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from storage.records import Repository
from storage.tables import contacts, link_clicks, short_links

# Letters and digits only: URL-safe, and no `-` or `_` that a chat client could take for
# punctuation or markup at the end of a link.
ALPHABET = string.ascii_letters + string.digits
CODE_LENGTH = 7
_ATTEMPTS = 20


@dataclass(frozen=True, slots=True)
class ShortLink:
    """A short link: its code and the URL it leads to."""

    id: int
    code: str
    url: str
    broadcast_id: int | None
    created_by: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class LinkStats:
    """A link with how often it was clicked, by how many known contacts, and when last."""

    link: ShortLink
    clicks: int
    contacts: int
    last_click: datetime | None


@dataclass(frozen=True, slots=True)
class Click:
    """A click to record: which link, when, and the contact its token named, if any."""

    link_id: int
    at: datetime
    contact_id: int | None = None


def _link(row: Any) -> ShortLink:
    return ShortLink(
        id=int(row.id),
        code=row.code,
        url=row.url,
        broadcast_id=int(row.broadcast_id) if row.broadcast_id is not None else None,
        created_by=row.created_by,
        created_at=row.created_at,
    )


def new_code() -> str:
    """A random code of CODE_LENGTH letters and digits (62^7, about 3.5 * 10^12 of them)."""
    return "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))


class LinkStore(Repository):
    """Short links and their clicks."""

    def create_link(
        self, url: str, *, broadcast_id: int | None, by: str, at: datetime
    ) -> ShortLink:
        """A new link to `url` with a code no other link has."""
        for _ in range(_ATTEMPTS):
            code = new_code()
            taken = self.conn.execute(
                select(short_links.c.id).where(short_links.c.code == code)
            ).first()
            if taken is None:
                break
        else:  # pragma: no cover - 20 collisions in 3.5 * 10^12 codes
            msg = "no free short link code found"
            raise RuntimeError(msg)
        new_id = self.conn.execute(
            short_links.insert()
            .values(code=code, url=url, broadcast_id=broadcast_id, created_by=by, created_at=at)
            .returning(short_links.c.id)
        ).scalar_one()
        return ShortLink(int(new_id), code, url, broadcast_id, by, at)

    def link_for(self, url: str, *, broadcast_id: int, by: str, at: datetime) -> ShortLink:
        """The broadcast's link to `url`, made when it has none yet: one link per
        (broadcast, URL)."""
        row = self.conn.execute(
            select(short_links)
            .where(short_links.c.broadcast_id == broadcast_id, short_links.c.url == url)
            .order_by(short_links.c.id)
            .limit(1)
        ).first()
        if row is not None:
            return _link(row)
        return self.create_link(url, broadcast_id=broadcast_id, by=by, at=at)

    def link_by_code(self, code: str) -> ShortLink | None:
        """The link with this code (codes are case-sensitive)."""
        row = self.conn.execute(select(short_links).where(short_links.c.code == code)).first()
        return _link(row) if row is not None else None

    def record_clicks(self, clicks: Sequence[Click]) -> None:
        """Store clicks; a contact that no longer exists (erased since) is not named."""
        if not clicks:
            return
        named = {c.contact_id for c in clicks if c.contact_id is not None}
        existing = (
            {
                int(i)
                for i in self.conn.execute(
                    select(contacts.c.id).where(contacts.c.id.in_(sorted(named)))
                ).scalars()
            }
            if named
            else set()
        )
        self.conn.execute(
            link_clicks.insert(),
            [
                {
                    "link_id": c.link_id,
                    "at": c.at,
                    "contact_id": c.contact_id if c.contact_id in existing else None,
                }
                for c in clicks
            ],
        )

    def _stats(self, links: list[ShortLink]) -> list[LinkStats]:
        if not links:
            return []
        c = link_clicks.c
        counted = {
            int(row.link_id): (int(row.clicks), int(row.people), row.last)
            for row in self.conn.execute(
                select(
                    c.link_id,
                    func.count().label("clicks"),
                    func.count(c.contact_id.distinct()).label("people"),
                    func.max(c.at).label("last"),
                )
                .where(c.link_id.in_([link.id for link in links]))
                .group_by(c.link_id)
            )
        }
        out = []
        for link in links:
            clicks, people, last = counted.get(link.id, (0, 0, None))
            out.append(LinkStats(link, clicks, people, last))
        return out

    def link_stats(self, link_id: int) -> LinkStats | None:
        """One link with its clicks."""
        row = self.conn.execute(select(short_links).where(short_links.c.id == link_id)).first()
        if row is None:
            return None
        return self._stats([_link(row)])[0]

    def latest_links(self, limit: int = 20) -> list[LinkStats]:
        """The newest links first, with their clicks."""
        rows = self.conn.execute(select(short_links).order_by(short_links.c.id.desc()).limit(limit))
        return self._stats([_link(r) for r in rows])

    def links_after(self, *, after: int | None, limit: int) -> list[LinkStats]:
        """Links by id, oldest first, from after the id `after`, with their clicks."""
        query = select(short_links).order_by(short_links.c.id).limit(limit)
        if after is not None:
            query = query.where(short_links.c.id > after)
        return self._stats([_link(r) for r in self.conn.execute(query)])

    def count_links(self) -> int:
        """How many short links there are."""
        return int(self.conn.execute(select(func.count()).select_from(short_links)).scalar_one())

    def broadcast_links(self, broadcast_id: int) -> list[LinkStats]:
        """A broadcast's links (in the order they were made) with their clicks."""
        rows = self.conn.execute(
            select(short_links)
            .where(short_links.c.broadcast_id == broadcast_id)
            .order_by(short_links.c.id)
        )
        return self._stats([_link(r) for r in rows])

    def broadcast_clicks(self, broadcast_id: int) -> tuple[int, int]:
        """A broadcast's clicks over all its links, and how many known contacts clicked any."""
        c = link_clicks.c
        row = self.conn.execute(
            select(func.count(), func.count(c.contact_id.distinct()))
            .select_from(link_clicks.join(short_links, short_links.c.id == c.link_id))
            .where(short_links.c.broadcast_id == broadcast_id)
        ).one()
        return int(row[0]), int(row[1])

    def clicks_of_contact(self, contact_id: int) -> list[tuple[str, str, datetime]]:
        """(code, URL, time) of every click attributed to a contact, oldest first (for exports)."""
        rows = self.conn.execute(
            select(short_links.c.code, short_links.c.url, link_clicks.c.at)
            .join(short_links, short_links.c.id == link_clicks.c.link_id)
            .where(link_clicks.c.contact_id == contact_id)
            .order_by(link_clicks.c.id)
        )
        return [(r.code, r.url, r.at) for r in rows]
