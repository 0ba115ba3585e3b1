"""Statements on contacts: found by address, inserted and counted in batches, staff fields."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, update

from bridge.types import (
    AccountId,
    ChatId,
    ContactId,
    Platform,
)
from storage.records import (
    ContactRecord,
    TxBase,
    contact_record,
    read_time,
    sqlite_time,
)
from storage.tables import (
    contacts,
)


class ContactQueries(TxBase):
    """Contact statements of `Tx`."""

    # -- contacts -------------------------------------------------------------------------

    def contacts_by_address(
        self, platform: Platform, account: AccountId, chat_ids: Sequence[str]
    ) -> dict[str, ContactRecord]:
        """Contacts of one platform account by their chat ids."""
        if not chat_ids:
            return {}
        c = contacts.c
        columns = (c.id, c.platform, c.account, c.chat_id, c.display_name, c.username)
        result = self.conn.execute(
            select(*columns, c.message_count, c.opt_in_source).where(
                contacts.c.platform == platform,
                contacts.c.account == account,
                contacts.c.chat_id.in_(list(chat_ids)),
            )
        )
        return {row.chat_id: contact_record(row) for row in result}

    def insert_contacts(self, rows: list[dict[str, Any]]) -> list[ContactRecord]:
        """Insert contacts; return them with their ids, in the order given."""
        if not rows:
            return []
        result = self.conn.execute(
            contacts.insert().returning(*contacts.c, sort_by_parameter_order=True), rows
        )
        return [contact_record(row) for row in result]

    def update_contacts(self, rows: list[dict[str, Any]]) -> None:
        """Per contact: add to the message count, set last_seen, name and username."""
        if not rows:
            return
        if self.dialect == "sqlite":
            self.conn.exec_driver_sql(
                "UPDATE contacts SET message_count = message_count + ?, last_seen = ?, "
                "display_name = ?, username = ? WHERE id = ?",
                [
                    (r["b_add"], sqlite_time(r["b_seen"]), r["b_name"], r["b_username"], r["b_id"])
                    for r in rows
                ],
            )
            return
        self.conn.execute(
            update(contacts)
            .where(contacts.c.id == bindparam("b_id"))
            .values(
                message_count=contacts.c.message_count + bindparam("b_add"),
                last_seen=bindparam("b_seen"),
                display_name=bindparam("b_name"),
                username=bindparam("b_username"),
            ),
            rows,
        )

    def contact(self, contact_id: ContactId) -> ContactRecord | None:
        """One contact by id."""
        row = (self.conn.execute(select(contacts).where(contacts.c.id == contact_id))).first()
        return contact_record(row) if row is not None else None

    def contacts_by_ids(self, contact_ids: Iterable[int]) -> dict[ContactId, ContactRecord]:
        """Contacts by id with what decides whether they may be sent to (last seen, opted
        out), in one read (those that exist)."""
        wanted = list(set(contact_ids))
        if not wanted:
            return {}
        names = (
            "id, platform, account, chat_id, display_name, username, message_count,"
            " opt_in_source, last_seen, opted_out_at"
        )
        if self.dialect != "sqlite":
            c = contacts.c
            rows = self.conn.execute(
                select(*(c[name.strip()] for name in names.split(","))).where(c.id.in_(wanted))
            )
            return {ContactId(row.id): contact_record(row) for row in rows}
        # Read once per batch of answers: plain tuples through the driver, the times parsed
        # here (SQLAlchemy's per-column processing costs more than the query).
        found: dict[ContactId, ContactRecord] = {}
        for start in range(0, len(wanted), 900):
            chunk = wanted[start : start + 900]
            marks = ", ".join(["?"] * len(chunk))
            rows = self.conn.exec_driver_sql(
                f"SELECT {names} FROM contacts WHERE id IN ({marks})", tuple(chunk)
            )
            for row in rows:
                record = ContactRecord(
                    id=ContactId(row[0]),
                    platform=Platform(row[1]),
                    account=AccountId(row[2]),
                    chat_id=ChatId(row[3]),
                    display_name=row[4],
                    username=row[5],
                    message_count=row[6],
                    opt_in_source=row[7],
                    last_seen=read_time(row[8]),
                    opted_out_at=read_time(row[9]),
                )
                found[record.id] = record
        return found

    def update_contact(self, contact_id: ContactId, **values: Any) -> bool:
        """Change a contact's staff fields (display_name, note, remark, assigned_to)."""
        allowed = {"display_name", "note", "remark", "assigned_to"}
        unknown = set(values) - allowed
        if unknown:
            msg = f"not a staff field of contacts: {sorted(unknown)}"
            raise ValueError(msg)
        result = self.conn.execute(
            update(contacts).where(contacts.c.id == contact_id).values(**values)
        )
        return bool(result.rowcount)

    def set_opt_out(self, contact_id: ContactId, at: datetime | None, source: str | None) -> bool:
        """Record that a contact opted out (`at` set) or back in (`at` None); False if unchanged."""
        condition = contacts.c.opted_out_at.is_(None) if at else contacts.c.opted_out_at.isnot(None)
        result = self.conn.execute(
            update(contacts)
            .where(contacts.c.id == contact_id, condition)
            .values(opted_out_at=at, opt_out_source=source)
        )
        return bool(result.rowcount)

    def contact_by_address(
        self, platform: Platform, account: AccountId, chat_id: ChatId
    ) -> ContactRecord | None:
        """One whole contact row by its address on a platform account."""
        row = self.conn.execute(
            select(contacts).where(
                contacts.c.platform == platform,
                contacts.c.account == account,
                contacts.c.chat_id == chat_id,
            )
        ).first()
        return contact_record(row) if row is not None else None
