"""Storage: the database, its schema and migrations, batched queries and the group-commit writer.

Nothing outside this package sees an ORM row; queries return records.
"""

from __future__ import annotations

from storage.db import Database
from storage.queries import (
    Completion,
    ContactRecord,
    ConversationRecord,
    Job,
    MessageRecord,
    MessageStatusWrite,
    NewJob,
    Tx,
    early_key,
    quote_key,
    reaction_key,
)
from storage.writer import BatchKind, Writer, WriterClosed

__all__ = [
    "BatchKind",
    "Completion",
    "ContactRecord",
    "ConversationRecord",
    "Database",
    "Job",
    "MessageRecord",
    "MessageStatusWrite",
    "NewJob",
    "Tx",
    "Writer",
    "WriterClosed",
    "early_key",
    "quote_key",
    "reaction_key",
]
