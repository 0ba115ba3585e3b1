"""Lists in pages: `limit` (default 50, at most 500) and an opaque `cursor`.

A cursor is the key of the last item shown (an id, or a name for lists ordered by name), as
unpadded URL-safe base64 of `{"after": key}`; a page says `next_cursor` and `next` (the URL of
the next page) while there is more.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field
from yarl import URL

from bridge.api.errors import ApiError
from bridge.api.schemas import ID_MAX, Record

DEFAULT_LIMIT = 50
MAX_LIMIT = 500

P = TypeVar("P", bound="Page")
T = TypeVar("T")


class PageQuery(BaseModel):
    """Base of the queries of lists: `limit` and `cursor`."""

    model_config = ConfigDict(extra="forbid")

    limit: int = Field(
        DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description="Items per page (at most 500)."
    )
    cursor: str | None = Field(
        None, min_length=1, max_length=256, description="`next_cursor` of the page before."
    )


class Page(Record):
    """Base of the answers of lists: the items (declared by each page) and where to go on."""

    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null: last.")
    next: str | None = Field(description="The URL (path and query) of the next page; null: last.")


def after_id(cursor: str | None) -> int | None:
    """The id after which the page asked for starts (None: the first page)."""
    after = _decoded(cursor)
    if after is None:
        return None
    if not isinstance(after, int) or isinstance(after, bool) or abs(after) > ID_MAX:
        raise _bad_cursor()
    return after


def after_text(cursor: str | None) -> str | None:
    """The name after which the page asked for starts, for lists ordered by a name."""
    after = _decoded(cursor)
    if after is not None and not isinstance(after, str):
        raise _bad_cursor()
    return after


def page(
    model: type[P],
    rows: Sequence[T],
    *,
    limit: int,
    url: URL,
    key: Callable[[T], int | str],
    item: Callable[[T], BaseModel],
) -> P:
    """A page of `rows` (fetched with `limit + 1` to know whether more follow); `url` is the
    request's, to which the next page's link adds its cursor."""
    shown = list(rows[:limit])
    cursor = link = None
    if len(rows) > limit and shown:
        raw = json.dumps({"after": key(shown[-1])}, separators=(",", ":")).encode()
        cursor = base64.urlsafe_b64encode(raw).decode().rstrip("=")
        link = str(url.update_query(cursor=cursor))
    return model.model_validate(
        {"items": [item(r) for r in shown], "next_cursor": cursor, "next": link}
    )


def _decoded(cursor: str | None) -> object:
    if cursor is None:
        return None
    try:
        decoded = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        after = decoded["after"]
    except (ValueError, TypeError, KeyError, binascii.Error):
        raise _bad_cursor() from None
    if after is None:
        raise _bad_cursor()
    return after


def _bad_cursor() -> ApiError:
    return ApiError(400, "bad_cursor", "the cursor is not one this API gave out", field="cursor")
