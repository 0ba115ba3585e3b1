"""WhatsApp message templates and text blocks: what staff send with `!template send` and `!tb`."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select, update

from storage.records import Repository
from storage.tables import templates, text_blocks


@dataclass(frozen=True, slots=True)
class TemplateRecord:
    """A WhatsApp message template in one language."""

    name: str
    language: str
    body: str
    created_by: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class TextBlockRecord:
    """A saved reply with placeholders."""

    name: str
    body: str
    created_by: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class SyncCounts:
    """What an import of templates changed."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0


def _template(row: object) -> TemplateRecord:
    m = row._mapping  # type: ignore[attr-defined]
    return TemplateRecord(
        name=m["name"],
        language=m["language"],
        body=m["body"],
        created_by=m["created_by"],
        created_at=m["created_at"],
    )


def _text_block(row: object) -> TextBlockRecord:
    m = row._mapping  # type: ignore[attr-defined]
    return TextBlockRecord(
        name=m["name"], body=m["body"], created_by=m["created_by"], created_at=m["created_at"]
    )


class Templates(Repository):
    """WhatsApp message templates, one row per name and language."""

    def all_templates(self) -> list[TemplateRecord]:
        """Every template, by name and language."""
        rows = self.conn.execute(select(templates).order_by(templates.c.name, templates.c.language))
        return [_template(r) for r in rows]

    def templates_named(self, name: str) -> list[TemplateRecord]:
        """A template's languages, by language."""
        rows = self.conn.execute(
            select(templates).where(templates.c.name == name).order_by(templates.c.language)
        )
        return [_template(r) for r in rows]

    def save_template(self, name: str, language: str, body: str, by: str, at: datetime) -> bool:
        """Store a template (replacing the body of the same name and language); True when new."""
        where = (templates.c.name == name, templates.c.language == language)
        if self.conn.execute(select(templates.c.id).where(*where)).first() is not None:
            self.conn.execute(update(templates).where(*where).values(body=body, created_by=by))
            return False
        self.conn.execute(
            templates.insert().values(
                name=name, language=language, body=body, created_by=by, created_at=at
            )
        )
        return True

    def delete_templates(self, name: str, language: str | None = None) -> list[str]:
        """Delete a template in one language or in all; the languages that were deleted."""
        where = [templates.c.name == name]
        if language is not None:
            where.append(templates.c.language == language)
        gone = [str(r[0]) for r in self.conn.execute(select(templates.c.language).where(*where))]
        if gone:
            self.conn.execute(delete(templates).where(*where))
        return sorted(gone)

    def import_templates(
        self, found: Iterable[tuple[str, str, str]], by: str, at: datetime
    ) -> SyncCounts:
        """Insert or update templates (name, language, body) as the platform approved them."""
        stored = {(t.name, t.language): t.body for t in self.all_templates()}
        added = updated = unchanged = 0
        for name, language, body in found:
            known = stored.get((name, language))
            if known == body:
                unchanged += 1
                continue
            self.save_template(name, language, body, by, at)
            stored[(name, language)] = body
            if known is None:
                added += 1
            else:
                updated += 1
        return SyncCounts(added, updated, unchanged)


class TextBlocks(Repository):
    """Saved replies with placeholders, by name."""

    def all_text_blocks(self) -> list[TextBlockRecord]:
        """Every text block, by name."""
        rows = self.conn.execute(select(text_blocks).order_by(text_blocks.c.name))
        return [_text_block(r) for r in rows]

    def text_block(self, name: str) -> TextBlockRecord | None:
        """A text block by its name."""
        row = self.conn.execute(select(text_blocks).where(text_blocks.c.name == name)).first()
        return _text_block(row) if row is not None else None

    def save_text_block(self, name: str, body: str, by: str, at: datetime) -> bool:
        """Store a text block (replacing one of the same name); True when new."""
        where = text_blocks.c.name == name
        if self.conn.execute(select(text_blocks.c.name).where(where)).first() is not None:
            self.conn.execute(update(text_blocks).where(where).values(body=body, created_by=by))
            return False
        self.conn.execute(
            text_blocks.insert().values(name=name, body=body, created_by=by, created_at=at)
        )
        return True

    def delete_text_block(self, name: str) -> bool:
        """Delete a text block; False when there was none of that name."""
        return bool(
            self.conn.execute(delete(text_blocks).where(text_blocks.c.name == name)).rowcount
        )
