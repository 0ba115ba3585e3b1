"""Contacts as staff manage them: finding, the full card, adding by hand, export and erasure."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    String,
    Table,
    and_,
    delete,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy import cast as sql_cast

from bridge.types import ContactId, ConversationId, SurfaceName, ThreadRef
from storage.api_keys import ApiKeys
from storage.records import Repository, early_key, quote_key, reaction_key
from storage.shortlinks import LinkStore
from storage.subscriptions import Subscriptions
from storage.tables import (
    blacklist,
    broadcast_sends,
    channels,
    contacts,
    conversations,
    kv,
    link_clicks,
    media_files,
    members,
    messages,
    outbox,
    refs,
    rule_files,
    rule_firings,
    rules,
    threads,
)
from storage.tables import broadcasts as broadcast_rows

FIND_LIMIT = 20
# The state of outbox rows that carried an erased contact's data (emptied, never sent).
ERASED = "erased"
# The tables an erasure deletes from or empties rows of (PostgreSQL vacuums them after it).
ERASED_TABLES = tuple(
    t.name
    for t in (
        contacts,
        conversations,
        messages,
        refs,
        threads,
        outbox,
        media_files,
        rule_files,
        kv,
        members,
        blacklist,
        broadcast_sends,
        link_clicks,
        rule_firings,
    )
)


@dataclass(frozen=True, slots=True)
class ContactLine:
    """A contact as a search result shows it."""

    id: ContactId
    platform: str
    account: str
    chat_id: str
    display_name: str
    username: str | None
    last_seen: datetime | None


@dataclass(frozen=True, slots=True)
class ContactDetails:
    """Everything the contact card shows (without channels and blacklist, asked separately)."""

    id: ContactId
    platform: str
    account: str
    chat_id: str
    display_name: str
    username: str | None
    language: str | None
    first_seen: datetime
    last_seen: datetime
    message_count: int
    opt_in_source: str | None
    opt_in_at: datetime | None
    opted_out_at: datetime | None
    opt_out_source: str | None
    note: str | None
    remark: str | None
    assigned_to: str | None
    open_conversation: ConversationId | None


@dataclass(frozen=True, slots=True)
class ErasureCounts:
    """How many stored things an erasure removes."""

    conversations: int
    messages: int
    threads: int
    staff_refs: int
    memberships: int
    blacklisted: int
    outbox: int


@dataclass(frozen=True, slots=True)
class Erased:
    """What an erasure removed, and the staff threads that now need a tombstone."""

    counts: ErasureCounts
    threads: tuple[tuple[SurfaceName, ThreadRef], ...]


def digits(text: str) -> str:
    """The digits of a number as people type it (+49 151 123-45 → 4915112345)."""
    return re.sub(r"\D", "", text)


def _line(row: Any) -> ContactLine:
    return ContactLine(
        id=ContactId(row.id),
        platform=row.platform,
        account=row.account,
        chat_id=row.chat_id,
        display_name=row.display_name,
        username=row.username,
        last_seen=row.last_seen,
    )


def _looks_like_number(text: str) -> bool:
    return bool(re.fullmatch(r"\+?[\d\s().\-/]+", text)) and len(digits(text)) >= 3


def _search(text: str) -> ColumnElement[bool]:
    """Name or username contains `text`, or the chat id contains its digits."""
    c = contacts.c
    handle = text.lstrip("@")
    conditions = [c.display_name.icontains(text, autoescape=True)]
    if handle:
        conditions.append(c.username.icontains(handle, autoescape=True))
    if _looks_like_number(text):
        conditions.append(c.chat_id.contains(digits(text), autoescape=True))
    return or_(*conditions)


# -- export -----------------------------------------------------------------------------------


def _json_value(value: object) -> object:
    """A column value as JSON: datetimes as ISO 8601 UTC, bytes never (none are stored here)."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return value


def _as_json(row: Any) -> dict[str, object]:
    return {key: _json_value(value) for key, value in row._mapping.items()}


# -- erasure ----------------------------------------------------------------------------------


def _conversation_ids(contact_id: int) -> Any:
    """The ids of a contact's conversations, as a subquery."""
    return select(conversations.c.id).where(conversations.c.contact_id == contact_id)


def _message_ids(contact_id: int) -> Any:
    """The ids of a contact's messages, as a subquery."""
    return select(messages.c.id).where(
        messages.c.conversation_id.in_(_conversation_ids(contact_id))
    )


def _served_name(filename: str) -> str:
    """The name a file is stored under when the bridge serves it (bridge.web.media's rule)."""
    return (re.sub(r"[^A-Za-z0-9._-]+", "_", filename).strip("._") or "file")[:200]


def _file_ids(files: object) -> set[int]:
    """The stored rule files a message's attachments (or a send's files) name."""
    found: set[int] = set()
    for item in files if isinstance(files, list) else []:
        value = item.get("rule_file") if isinstance(item, dict) else None
        if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
            found.add(int(value))
    return found


class ContactAdmin(Repository):
    """Contacts as staff manage them: finding, the card, adding by hand, export and erasure."""

    def _lines(self, where: ColumnElement[bool], limit: int) -> list[ContactLine]:
        c = contacts.c
        rows = self.conn.execute(
            select(c.id, c.platform, c.account, c.chat_id, c.display_name, c.username, c.last_seen)
            .where(where)
            .order_by(c.last_seen.desc(), c.id.desc())
            .limit(limit)
        )
        return [_line(r) for r in rows]

    def find_contacts(self, text: str, limit: int = FIND_LIMIT) -> list[ContactLine]:
        """Contacts whose name or username contains `text`, or whose chat id contains its digits;
        most recently seen first (ask for one more than you show to know whether there are more)."""
        return self._lines(_search(text), limit)

    def contact_page(
        self,
        *,
        text: str | None = None,
        platform: str | None = None,
        channel_id: int | None = None,
        after: int | None = None,
        limit: int,
    ) -> list[ContactLine]:
        """Contacts by id (those after `after`), optionally matching `text` as `find_contacts`
        does, on one platform, or subscribed to a channel right now."""
        c = contacts.c
        where: list[ColumnElement[bool]] = []
        if text:
            where.append(_search(text))
        if platform is not None:
            where.append(c.platform == platform)
        if channel_id is not None:
            where.append(
                c.id.in_(
                    select(members.c.contact_id).where(
                        members.c.channel_id == channel_id, members.c.left_at.is_(None)
                    )
                )
            )
        if after is not None:
            where.append(c.id > after)
        rows = self.conn.execute(
            select(c.id, c.platform, c.account, c.chat_id, c.display_name, c.username, c.last_seen)
            .where(*where)
            .order_by(c.id)
            .limit(limit)
        )
        return [_line(r) for r in rows]

    def resolve_contact(self, who: str) -> list[ContactLine]:
        """The contacts `who` may mean: `#12` is an id; a number is an id or a chat id / phone
        number; anything else a name (exact, else a part of it) or an @username."""
        c = contacts.c
        who = who.strip()
        if re.fullmatch(r"#\d+", who):
            return self._lines(c.id == int(who[1:]), 2)
        if _looks_like_number(who) or who.isdigit():
            number = digits(who)
            address = c.chat_id.in_([number, f"+{number}"])
            is_id = not who.startswith("+") and who.isdigit() and len(number) <= 18
            return self._lines(or_(address, c.id == int(number)) if is_id else address, FIND_LIMIT)
        if who.startswith("@") and len(who) > 1:
            found = self._lines(func.lower(c.username) == who[1:].lower(), FIND_LIMIT)
            if found:
                return found
        exact = self._lines(func.lower(c.display_name) == who.lower(), FIND_LIMIT)
        if exact:
            return exact
        return self._lines(c.display_name.icontains(who, autoescape=True), FIND_LIMIT)

    def contact_details(self, contact_id: int) -> ContactDetails | None:
        """A contact's whole row, with its open conversation."""
        row = self.conn.execute(select(contacts).where(contacts.c.id == contact_id)).first()
        if row is None:
            return None
        open_id = self.conn.execute(
            select(func.max(conversations.c.id)).where(
                conversations.c.contact_id == contact_id, conversations.c.status == "open"
            )
        ).scalar()
        return ContactDetails(
            id=ContactId(row.id),
            platform=row.platform,
            account=row.account,
            chat_id=row.chat_id,
            display_name=row.display_name,
            username=row.username,
            language=row.language,
            first_seen=row.first_seen,
            last_seen=row.last_seen,
            message_count=row.message_count,
            opt_in_source=row.opt_in_source,
            opt_in_at=row.opt_in_at,
            opted_out_at=row.opted_out_at,
            opt_out_source=row.opt_out_source,
            note=row.note,
            remark=row.remark,
            assigned_to=row.assigned_to,
            open_conversation=ConversationId(open_id) if open_id is not None else None,
        )

    def add_contact(
        self,
        *,
        platform: str,
        account: str,
        chat_id: str,
        name: str,
        opt_in_source: str,
        at: datetime,
    ) -> tuple[ContactId, bool]:
        """Add a contact by hand (no conversation); the existing one's id and False if the address
        is known already."""
        existing = self.conn.execute(
            select(contacts.c.id).where(
                contacts.c.platform == platform,
                contacts.c.account == account,
                contacts.c.chat_id == chat_id,
            )
        ).scalar()
        if existing is not None:
            return ContactId(existing), False
        new_id = self.conn.execute(
            contacts.insert()
            .values(
                platform=platform,
                account=account,
                chat_id=chat_id,
                display_name=name,
                first_seen=at,
                last_seen=at,
                message_count=0,
                opt_in_source=opt_in_source,
                opt_in_at=at,
            )
            .returning(contacts.c.id)
        ).scalar_one()
        return ContactId(new_id), True

    def counts(self) -> tuple[int, int]:
        """How many contacts there are, and how many open conversations."""
        total = self.conn.execute(select(func.count()).select_from(contacts)).scalar_one()
        open_count = self.conn.execute(
            select(func.count()).select_from(conversations).where(conversations.c.status == "open")
        ).scalar_one()
        return int(total), int(open_count)

    # -- export

    def export_contact(self, contact_id: int, at: datetime) -> dict[str, Any] | None:
        """Everything stored about a contact, as a JSON-ready document (None if unknown)."""
        row = self.conn.execute(select(contacts).where(contacts.c.id == contact_id)).first()
        if row is None:
            return None
        conv_ids = select(conversations.c.id).where(conversations.c.contact_id == contact_id)
        conversation_docs = self._conversation_docs(contact_id, conv_ids)
        message_docs = self._message_docs(conv_ids)
        memberships = self._membership_docs(contact_id)
        block = self.conn.execute(
            select(blacklist).where(blacklist.c.contact_id == contact_id)
        ).first()
        received = self._broadcast_docs(contact_id)
        clicks = [
            {"code": code, "url": url, "at": _json_value(at)}
            for code, url, at in LinkStore(self.conn).clicks_of_contact(contact_id)
        ]
        return {
            "exported_at": _json_value(at),
            "contact": _as_json(row),
            "conversations": conversation_docs,
            "messages": message_docs,
            "channel_memberships": memberships,
            "blacklist": _as_json(block) if block is not None else None,
            "broadcasts": received,
            "link_clicks": clicks,
        }

    def _conversation_docs(self, contact_id: int, conv_ids: Any) -> list[dict[str, object]]:
        """A contact's conversations, each with the staff threads it had."""
        thread_rows = self.conn.execute(
            select(threads.c.conversation_id, threads.c.surface, threads.c.thread_ref)
            .where(threads.c.conversation_id.in_(conv_ids))
            .order_by(threads.c.id)
        )
        threads_of: dict[int, list[dict[str, object]]] = {}
        for t in thread_rows:
            threads_of.setdefault(int(t.conversation_id), []).append(
                {"surface": t.surface, "thread": t.thread_ref}
            )
        conversation_docs = []
        for conv in self.conn.execute(
            select(conversations)
            .where(conversations.c.contact_id == contact_id)
            .order_by(conversations.c.id)
        ):
            doc = _as_json(conv)
            doc["staff_threads"] = threads_of.get(int(conv.id), [])
            conversation_docs.append(doc)
        return conversation_docs

    def _message_docs(self, conv_ids: Any) -> list[dict[str, object]]:
        """The messages of these conversations, each with where staff surfaces show it."""
        message_ids = select(messages.c.id).where(messages.c.conversation_id.in_(conv_ids))
        refs_of: dict[int, list[dict[str, object]]] = {}
        for r in self.conn.execute(
            select(refs.c.message_id, refs.c.surface, refs.c.ref, refs.c.kind)
            .where(refs.c.message_id.in_(message_ids))
            .order_by(refs.c.id)
        ):
            refs_of.setdefault(int(r.message_id), []).append(
                {"surface": r.surface, "ref": r.ref, "kind": r.kind}
            )
        message_docs = []
        for m in self.conn.execute(
            select(messages).where(messages.c.conversation_id.in_(conv_ids)).order_by(messages.c.id)
        ):
            doc = _as_json(m)
            doc["attachments"] = list(m.attachments or [])
            doc["staff_refs"] = refs_of.get(int(m.id), [])
            message_docs.append(doc)
        return message_docs

    def _membership_docs(self, contact_id: int) -> list[dict[str, object]]:
        """The channels a contact is or was a member of."""
        return [
            _as_json(r)
            for r in self.conn.execute(
                select(
                    channels.c.name.label("channel"),
                    members.c.source,
                    members.c.joined_at,
                    members.c.left_at,
                    members.c.left_source,
                )
                .join(channels, channels.c.id == members.c.channel_id)
                .where(members.c.contact_id == contact_id)
                .order_by(channels.c.name)
            )
        ]

    def _broadcast_docs(self, contact_id: int) -> list[dict[str, object]]:
        """The broadcasts sent (or not) to a contact, with their outcome."""
        return [
            _as_json(r)
            for r in self.conn.execute(
                select(
                    broadcast_sends.c.broadcast_id,
                    broadcast_sends.c.state,
                    broadcast_sends.c.reason,
                    broadcast_sends.c.at,
                    broadcast_sends.c.replied_at,
                )
                .where(broadcast_sends.c.contact_id == contact_id)
                .order_by(broadcast_sends.c.id)
            )
        ]

    # -- erasure

    def _outbox_condition(self, contact: Any) -> ColumnElement[bool]:
        """Outbox rows that carry anything of the contact: their conversations' lanes (thread
        posts, cards, sends), and any row whose payload names one of their conversations or
        messages, the contact itself, or their address."""
        payload = outbox.c.payload
        conditions: list[ColumnElement[bool]] = []
        for conv in self.conn.execute(_conversation_ids(contact.id)).scalars():
            conditions.append(outbox.c.lane.startswith(f"c{conv}:", autoescape=True))
            conditions.append(outbox.c.lane.startswith(f"card{conv}:", autoescape=True))
        conditions.append(payload["conv"].as_integer().in_(_conversation_ids(contact.id)))
        conditions.append(payload["msg"].as_integer().in_(_message_ids(contact.id)))
        conditions.append(payload["contact"].as_integer() == int(contact.id))
        # A broadcast's message to them (their lane; the payload names them as "c").
        conditions.append(outbox.c.lane == f"bc:{contact.id}")
        conditions.append(
            and_(
                payload["chat"].as_string() == contact.chat_id,
                payload["platform"].as_string() == contact.platform,
                payload["account"].as_string() == contact.account,
            )
        )
        return or_(*conditions)

    def _early_keys(self, contact_id: int) -> list[str]:
        """The kv keys under which early delivery statuses of the contact's messages (and the
        broadcasts sent to them) may be kept (a Telegram external id holds the chat id)."""
        rows = list(
            self.conn.execute(
                select(messages.c.platform, messages.c.account, messages.c.external_id).where(
                    messages.c.id.in_(_message_ids(contact_id)), messages.c.external_id.isnot(None)
                )
            )
        )
        rows += self.conn.execute(
            select(
                broadcast_sends.c.platform, broadcast_sends.c.account, broadcast_sends.c.external_id
            ).where(
                broadcast_sends.c.contact_id == contact_id,
                broadcast_sends.c.external_id.isnot(None),
            )
        ).all()
        return [
            early_key(platform, account, external_id) for platform, account, external_id in rows
        ]

    def _media_condition(self, contact_id: int) -> ColumnElement[bool] | None:
        """Files the bridge served at its own URLs for the contact's outgoing messages (MMS media
        that Twilio fetches). A stored file names no owner: it is known by its name and size, from
        the time the first of those messages was written."""
        files: set[tuple[str, int | None]] = set()
        first: datetime | None = None
        rows = self.conn.execute(
            select(messages.c.attachments, messages.c.sent_at).where(
                messages.c.id.in_(_message_ids(contact_id)),
                messages.c.direction == "out",
                messages.c.attachments.isnot(None),
            )
        )
        for attachments, sent_at in rows:
            for attachment in attachments or []:
                size = attachment.get("size")
                name = _served_name(attachment.get("filename") or "file")
                files.add((name, int(size) if isinstance(size, int) else None))
                first = sent_at if first is None else min(first, sent_at)
        if first is None:
            return None
        named = [
            media_files.c.filename == name
            if size is None
            else and_(media_files.c.filename == name, func.length(media_files.c.data) == size)
            for name, size in sorted(files, key=lambda f: (f[0], f[1] or 0))
        ]
        # A minute of leeway for clocks: sent_at is the pipeline's clock, created_at time.time().
        return and_(media_files.c.created_at >= first.timestamp() - 60, or_(*named))

    def _contacts_files(self, contact: Any) -> list[int]:
        """Files sent to the contact alone: those their messages (or queued sends) carried that
        no rule answers with and no broadcast sends, such as a bot's answer downloaded for them.
        A rule's own answer file is everybody's and stays."""
        sent: set[int] = set()
        for (attachments,) in self.conn.execute(
            select(messages.c.attachments).where(
                messages.c.id.in_(_message_ids(contact.id)),
                messages.c.direction == "out",
                messages.c.attachments.isnot(None),
            )
        ):
            sent |= _file_ids(attachments)
        for (payload,) in self.conn.execute(
            select(outbox.c.payload).where(self._outbox_condition(contact))
        ):
            sent |= _file_ids(payload.get("files") if isinstance(payload, dict) else None)
        if not sent:
            return []
        shared: set[int] = set()
        for (actions,) in self.conn.execute(select(rules.c.actions)):
            for action in actions or []:
                media = action.get("media_id") if isinstance(action, dict) else None
                if isinstance(media, int):
                    shared.add(media)
        shared.update(
            int(f)
            for (f,) in self.conn.execute(
                select(broadcast_rows.c.file_id).where(broadcast_rows.c.file_id.in_(sent))
            )
        )
        return sorted(sent - shared)

    def _count(self, table: Table, where: ColumnElement[bool]) -> int:
        return int(
            self.conn.execute(select(func.count()).select_from(table).where(where)).scalar_one()
        )

    def erasure_counts(self, contact_id: int) -> ErasureCounts | None:
        """What erasing a contact would remove (None if the contact is unknown)."""
        contact = self.conn.execute(select(contacts).where(contacts.c.id == contact_id)).first()
        if contact is None:
            return None
        return ErasureCounts(
            conversations=self._count(conversations, conversations.c.contact_id == contact_id),
            messages=self._count(messages, messages.c.id.in_(_message_ids(contact_id))),
            threads=self._count(
                threads, threads.c.conversation_id.in_(_conversation_ids(contact_id))
            ),
            staff_refs=self._count(refs, refs.c.message_id.in_(_message_ids(contact_id))),
            memberships=self._count(members, members.c.contact_id == contact_id),
            blacklisted=self._count(blacklist, blacklist.c.contact_id == contact_id),
            outbox=self._count(outbox, self._outbox_condition(contact)),
        )

    def erase_contact(self, contact_id: int) -> Erased | None:
        """Delete a contact and everything stored about them, in the caller's transaction: outbox
        rows (pending ones too: nothing may be sent after erasure), early statuses, staff refs,
        messages, threads, conversations, memberships, the blacklist entry and the contact row.
        Returns what went, with the staff threads that now need a tombstone."""
        counted = self.erasure_counts(contact_id)
        contact = self.conn.execute(select(contacts).where(contacts.c.id == contact_id)).first()
        if counted is None or contact is None:
            return None
        gone = tuple(
            (SurfaceName(r.surface), ThreadRef(r.thread_ref))
            for r in self.conn.execute(
                select(threads.c.surface, threads.c.thread_ref)
                .where(threads.c.conversation_id.in_(_conversation_ids(contact_id)))
                .order_by(threads.c.id)
            )
        )
        # Outbox rows are emptied, not deleted: their ids must never come back. SQLite hands a
        # new row the highest id plus one, and the dispatcher only looks for ids above the ones it
        # has seen (and Slack posts carry the ids of their rows): a reused id is never dispatched,
        # or is taken for a post of the erased contact.
        self.conn.execute(
            update(outbox)
            .where(self._outbox_condition(contact))
            .values(
                state=ERASED,
                idem_key=literal(f"{ERASED}:") + sql_cast(outbox.c.id, String),
                lane=ERASED,
                rate_keys="",
                payload={},
                last_error=None,
            )
        )
        own_files = self._contacts_files(contact)
        served = self._media_condition(contact_id)
        if served is not None:
            self.conn.execute(delete(media_files).where(served))
        for start in range(0, len(own_files), 500):
            chunk = own_files[start : start + 500]
            self.conn.execute(delete(rule_files).where(rule_files.c.id.in_(chunk)))
        early = self._early_keys(contact_id)
        for m in self.conn.execute(_message_ids(contact_id)).scalars():
            early += [reaction_key(m), quote_key(m)]
        for start in range(0, len(early), 500):
            self.conn.execute(delete(kv).where(kv.c.key.in_(early[start : start + 500])))
        self.conn.execute(delete(refs).where(refs.c.message_id.in_(_message_ids(contact_id))))
        self.conn.execute(
            delete(messages).where(messages.c.conversation_id.in_(_conversation_ids(contact_id)))
        )
        self.conn.execute(
            delete(threads).where(threads.c.conversation_id.in_(_conversation_ids(contact_id)))
        )
        # Their conversations link each other (previous_id): clear the links, then delete.
        self.conn.execute(
            update(conversations)
            .where(conversations.c.contact_id == contact_id)
            .values(previous_id=None)
        )
        self.conn.execute(delete(conversations).where(conversations.c.contact_id == contact_id))
        Subscriptions(self.conn).forget_contacts([contact_id])
        ApiKeys(self.conn).forget_contact_answers(contact_id)
        self.conn.execute(delete(contacts).where(contacts.c.id == contact_id))
        return Erased(counts=counted, threads=gone)
