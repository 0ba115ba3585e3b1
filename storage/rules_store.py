"""Chatbot rules in the database: load, save with a change record, firings for limits."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, replace
from datetime import datetime, time
from typing import Any

from sqlalchemy import delete, func, select, tuple_, update
from sqlalchemy.engine import Row

from bridge.types import Action, FileData, MediaKind, Rule
from storage.records import Repository, read_time, sqlite_time
from storage.tables import contacts, rules
from storage.tables import rule_changes as changes
from storage.tables import rule_files as files
from storage.tables import rule_firings as firings


def _time(value: str | None) -> time | None:
    return time.fromisoformat(value) if value else None


def _rule(row: Row[Any]) -> Rule:
    m = row._mapping
    return Rule(
        id=int(m["id"]),
        name=m["name"],
        keyword_type=m["keyword_type"],
        pattern=m["pattern"],
        platforms=frozenset(p for p in (m["platforms"] or "").split(",") if p),
        start=_time(m["start_time"]),
        end=_time(m["end_time"]),
        weekdays=frozenset(int(d) for d in m["weekdays"]),
        limit=m["limit_type"],
        limit_seconds=m["limit_seconds"],
        priority=int(m["priority"]),
        enabled=bool(m["enabled"]),
        actions=tuple(Action(**a) for a in m["actions"] or []),
    )


def snapshot(rule: Rule) -> dict[str, Any]:
    """The rule as JSON (for the change log and exports)."""
    return {
        "name": rule.name,
        "keyword_type": rule.keyword_type,
        "pattern": rule.pattern,
        "platforms": sorted(rule.platforms),
        "start": rule.start.strftime("%H:%M") if rule.start else None,
        "end": rule.end.strftime("%H:%M") if rule.end else None,
        "weekdays": sorted(rule.weekdays),
        "limit": rule.limit,
        "limit_seconds": rule.limit_seconds,
        "priority": rule.priority,
        "enabled": rule.enabled,
        "actions": [_action(a) for a in rule.actions],
    }


def _action(action: Action) -> dict[str, Any]:
    return {k: v for k, v in asdict(action).items() if v is not None}


def _values(rule: Rule) -> dict[str, Any]:
    return {
        "name": rule.name,
        "keyword_type": rule.keyword_type,
        "pattern": rule.pattern,
        "platforms": ",".join(sorted(rule.platforms)),
        "start_time": rule.start.strftime("%H:%M") if rule.start else None,
        "end_time": rule.end.strftime("%H:%M") if rule.end else None,
        "weekdays": "".join(str(d) for d in sorted(rule.weekdays)),
        "limit_type": rule.limit,
        "limit_seconds": rule.limit_seconds,
        "priority": rule.priority,
        "enabled": rule.enabled,
        "actions": [_action(a) for a in rule.actions],
    }


class RuleStore(Repository):
    """Chatbot rules, their change log, firings per contact and answer-files."""

    def all_rules(self) -> list[Rule]:
        """Every rule, enabled or not, by priority (highest first) then id."""
        rows = self.conn.execute(select(rules).order_by(rules.c.priority.desc(), rules.c.id))
        return [_rule(r) for r in rows]

    def rule_named(self, name: str) -> Rule | None:
        """One rule by its name (case-blind)."""
        for row in self.conn.execute(select(rules)):
            if row.name.casefold() == name.casefold():
                return _rule(row)
        return None

    def rule_by_id(self, rule_id: int) -> Rule | None:
        """One rule by its id."""
        row = self.conn.execute(select(rules).where(rules.c.id == rule_id)).first()
        return _rule(row) if row is not None else None

    def rule_meta(self, rule_id: int) -> tuple[str, datetime, str, datetime] | None:
        """(created_by, created_at, updated_by, updated_at) of a rule."""
        row = self.conn.execute(
            select(
                rules.c.created_by, rules.c.created_at, rules.c.updated_by, rules.c.updated_at
            ).where(rules.c.id == rule_id)
        ).first()
        return (row[0], row[1], row[2], row[3]) if row is not None else None

    def _log(
        self,
        rule_id: int,
        name: str,
        change: str,
        by: str,
        at: datetime,
        state: Rule | None,
    ) -> None:
        self.conn.execute(
            changes.insert().values(
                rule_id=rule_id,
                rule_name=name,
                change=change,
                by=by,
                at=at,
                snapshot=snapshot(state) if state is not None else None,
            )
        )

    def add_rule(self, rule: Rule, by: str, at: datetime) -> Rule:
        """Store a new rule (its name must be free); returns it with its id."""
        result = self.conn.execute(
            rules.insert().values(
                **_values(rule), created_by=by, created_at=at, updated_by=by, updated_at=at
            )
        )
        rule_id = int(result.inserted_primary_key[0])  # type: ignore[index]
        stored = replace(rule, id=rule_id)
        self._log(rule_id, rule.name, "add", by, at, stored)
        return stored

    def edit_rule(self, rule: Rule, by: str, at: datetime, change: str = "edit") -> None:
        """Overwrite a rule (by id) and record who did it."""
        self.conn.execute(
            update(rules)
            .where(rules.c.id == rule.id)
            .values(**_values(rule), updated_by=by, updated_at=at)
        )
        self._log(rule.id, rule.name, change, by, at, rule)

    def delete_rule(self, rule: Rule, by: str, at: datetime) -> None:
        """Remove a rule (its firings go with it); the change log keeps what it was."""
        self.conn.execute(delete(firings).where(firings.c.rule_id == rule.id))
        self.conn.execute(delete(rules).where(rules.c.id == rule.id))
        self._log(rule.id, rule.name, "delete", by, at, rule)

    def history(self, rule_id: int, limit: int = 10) -> list[tuple[str, str, datetime]]:
        """The latest changes of a rule: (change, by, at), newest first."""
        rows = self.conn.execute(
            select(changes.c.change, changes.c.by, changes.c.at)
            .where(changes.c.rule_id == rule_id)
            .order_by(changes.c.id.desc())
            .limit(limit)
        )
        return [(r[0], r[1], r[2]) for r in rows]

    # -- firings -----------------------------------------------------------------------------------

    def version(self) -> tuple[Any, ...]:
        """What changes whenever a rule is added, edited or removed (each is logged): the
        compiled rules are built again only when it does."""
        row = self.conn.execute(
            select(
                select(func.max(changes.c.id)).scalar_subquery(),
                func.count(rules.c.id),
                func.max(rules.c.updated_at),
            ).select_from(rules)
        ).one()
        return tuple(row)

    def last_firings(self, pairs: Iterable[tuple[int, int]]) -> dict[tuple[int, int], datetime]:
        """When each (rule, contact) pair last fired, for the pairs that ever did."""
        wanted = list(set(pairs))
        if not wanted:
            return {}
        found: dict[tuple[int, int], datetime] = {}
        for start in range(0, len(wanted), 400):
            chunk = wanted[start : start + 400]
            if self.dialect == "sqlite":
                # The hot read of every batch that fires rules: plain tuples through the driver
                # (SQLAlchemy's expanding tuple IN costs more than the query).
                values = ", ".join(["(?, ?)"] * len(chunk))
                rows: Iterable[Any] = self.conn.exec_driver_sql(
                    "SELECT rule_id, contact_id, last_at FROM rule_firings"
                    f" WHERE (rule_id, contact_id) IN (VALUES {values})",
                    tuple(n for pair in chunk for n in pair),
                )
            else:
                rows = self.conn.execute(
                    select(firings.c.rule_id, firings.c.contact_id, firings.c.last_at).where(
                        tuple_(firings.c.rule_id, firings.c.contact_id).in_(chunk)
                    )
                )
            for rule_id, contact_id, last_at in rows:
                at = read_time(last_at)
                if at is not None:  # never: the column is NOT NULL
                    found[(int(rule_id), int(contact_id))] = at
        return found

    def record_firings(self, fired: Sequence[tuple[int, int, datetime]]) -> None:
        """Note that rules fired for contacts (rule id, contact id, when): one upsert for all,
        a pair fired twice counted twice."""
        if not fired:
            return
        counts: dict[tuple[int, int], tuple[int, datetime]] = {}
        for rule_id, contact_id, at in fired:
            n, last = counts.get((rule_id, contact_id), (0, at))
            counts[(rule_id, contact_id)] = (n + 1, max(last, at))
        if self.dialect == "sqlite":
            self.conn.exec_driver_sql(
                "INSERT INTO rule_firings (rule_id, contact_id, count, last_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (rule_id, contact_id) DO UPDATE"
                " SET count = count + excluded.count, last_at = excluded.last_at",
                [(r, c, n, sqlite_time(at)) for (r, c), (n, at) in counts.items()],
            )
            return
        stmt = self._insert(firings)
        self.conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[firings.c.rule_id, firings.c.contact_id],
                set_={
                    "count": firings.c.count + stmt.excluded["count"],
                    "last_at": stmt.excluded.last_at,
                },
            ),
            [
                {"rule_id": r, "contact_id": c, "count": n, "last_at": at}
                for (r, c), (n, at) in counts.items()
            ],
        )

    # -- files -------------------------------------------------------------------------------------

    def save_file(self, file: FileData, by: str, at: datetime) -> int:
        """Store a file a rule answers with; returns its id."""
        result = self.conn.execute(
            files.insert().values(
                filename=file.filename,
                mime_type=file.mime_type,
                data=file.data,
                created_by=by,
                created_at=at,
            )
        )
        return int(result.inserted_primary_key[0])  # type: ignore[index]

    def delete_files(self, ids: Sequence[int]) -> None:
        """Remove stored files (a bot's answer for one contact that was never sent)."""
        if ids:
            self.conn.execute(delete(files).where(files.c.id.in_(list(ids))))

    def load_file(self, file_id: int) -> FileData | None:
        """A stored rule file."""
        row = self.conn.execute(select(files).where(files.c.id == file_id)).first()
        if row is None:
            return None
        major = str(row.mime_type).partition("/")[0]
        kind = {"image": MediaKind.IMAGE, "audio": MediaKind.AUDIO, "video": MediaKind.VIDEO}.get(
            major, MediaKind.DOCUMENT
        )
        return FileData(kind=kind, filename=row.filename, data=row.data, mime_type=row.mime_type)

    def file_names(self, ids: Iterable[int]) -> dict[int, str]:
        """The names of stored rule files."""
        wanted = list(set(ids))
        if not wanted:
            return {}
        rows = self.conn.execute(select(files.c.id, files.c.filename).where(files.c.id.in_(wanted)))
        return {int(r[0]): str(r[1]) for r in rows}

    def remarks_of(self, contact_ids: Iterable[int]) -> dict[int, str]:
        """The remarks of these contacts ({CONTACTREMARK}), for those that have one."""
        wanted = list(set(contact_ids))
        if not wanted:
            return {}
        rows = self.conn.execute(
            select(contacts.c.id, contacts.c.remark).where(
                contacts.c.id.in_(wanted), contacts.c.remark.isnot(None)
            )
        )
        return {int(r[0]): str(r[1]) for r in rows}
