"""Slack's events as the bridge's staff events: pure functions over the payloads bolt hands on.

Only replies inside a thread speak to customers; edits and deletions name the message they
change. Nothing here calls Slack.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from bridge.types import (
    Attachment,
    MediaKind,
    StaffDelete,
    StaffEdit,
    StaffEvent,
    StaffMessage,
    StaffMessageRef,
    StaffUserId,
    SurfaceName,
    ThreadRef,
)
from connectors.slack_rich import rich_block, rich_readable
from connectors.slack_text import readable
from connectors.wire import int_or_none, opt_str, storable

SLACK = SurfaceName("slack")


def split_ref(ref: str) -> tuple[str, str]:
    """'<channel>/<ts>' → (channel, ts)."""
    channel, _, ts = ref.partition("/")
    return channel, ts


def _media_kind(mimetype: str | None) -> MediaKind:
    major = (mimetype or "").partition("/")[0]
    return {"image": MediaKind.IMAGE, "audio": MediaKind.AUDIO, "video": MediaKind.VIDEO}.get(
        major, MediaKind.DOCUMENT
    )


def string_at(obj: Any, *keys: str) -> str:
    """The string at obj[key][key]…; "" where a step is missing or not what Slack sends."""
    for key in keys:
        obj = obj.get(key) if isinstance(obj, Mapping) else None
    return obj if isinstance(obj, str) else ""


def raw_message(event: Mapping[str, Any]) -> Mapping[str, Any]:
    """The message of a message event: the changed message for an edit."""
    inner = event.get("message") if event.get("subtype") == "message_changed" else event
    return inner if isinstance(inner, Mapping) else {}


def raw_text(event: Mapping[str, Any]) -> str:
    """The text of a message event (of the changed message for an edit), as Slack sends it."""
    return string_at(raw_message(event), "text")


def message_words(
    message: Mapping[str, Any],
    names: Mapping[str, str] | None = None,
    channels: Mapping[str, str] | None = None,
) -> str:
    """What the customer reads of a message: its rich_text block when it has exactly one that
    reads (slack_rich), else its text (slack_text)."""
    block = rich_block(message)
    words = rich_readable(block, names, channels) if block is not None else None
    if words is None:
        words = readable(string_at(message, "text"), names, channels)
    return words


def parse_event(
    event: Mapping[str, Any],
    names: Mapping[str, str] | None = None,
    channels: Mapping[str, str] | None = None,
) -> StaffEvent | None:
    """Turn one Slack `message` event into a staff event; None for what the bridge ignores.

    Its text is what the customer should read (message_words); `names` are the display names
    of the users it may mention, `channels` the names of the channels.
    """
    if event.get("type") != "message" or not storable(event):
        return None
    channel = string_at(event, "channel")
    subtype = event.get("subtype")
    if subtype == "message_changed":
        inner = event.get("message")
        if not isinstance(inner, Mapping) or inner.get("bot_id"):
            return None
        if not string_at(inner, "ts") or not channel:
            return None
        # Slack lets only a message's author edit it: the author is the editor.
        editor = string_at(inner, "user")
        return StaffEdit(
            surface=SLACK,
            ref=StaffMessageRef(f"{channel}/{inner['ts']}"),
            text=message_words(inner, names, channels),
            author=StaffUserId(editor) if editor else None,
        )
    if subtype == "message_deleted":
        if not string_at(event, "deleted_ts") or not channel:
            return None
        # message_deleted does not say who deleted; the author (or a workspace admin acting
        # for them) is the best Slack tells.
        author = string_at(event, "previous_message", "user")
        return StaffDelete(
            surface=SLACK,
            ref=StaffMessageRef(f"{channel}/{event['deleted_ts']}"),
            author=StaffUserId(author) if author else None,
        )
    if subtype not in (None, "file_share", "thread_broadcast") or event.get("bot_id"):
        return None
    ts, thread_ts, user = (string_at(event, key) for key in ("ts", "thread_ts", "user"))
    if not ts or not thread_ts or thread_ts == ts or not user or not channel:
        return None  # only replies inside threads speak to customers
    files = event.get("files")
    return StaffMessage(
        surface=SLACK,
        thread=ThreadRef(f"{channel}/{thread_ts}"),
        ref=StaffMessageRef(f"{channel}/{ts}"),
        author=StaffUserId(user),
        text=message_words(event, names, channels),
        at=_ts_time(ts),
        attachments=tuple(_attachments(files if isinstance(files, list) else [])),
    )


def _attachments(files: list[Any]) -> Iterator[Attachment]:
    """The shared files of a message; a file object without a download URL is left out."""
    for f in files:
        url = string_at(f, "url_private_download") or string_at(f, "url_private")
        if url:
            yield Attachment(
                kind=_media_kind(opt_str(f, "mimetype")),
                ref=url,
                filename=opt_str(f, "name"),
                mime_type=opt_str(f, "mimetype"),
                size=int_or_none(f.get("size")),
            )


def _ts_time(ts: str) -> datetime:
    try:
        return datetime.fromtimestamp(float(ts), UTC)
    except (ValueError, OverflowError, OSError):  # not a number, or no time a datetime holds
        return datetime.now(UTC)
