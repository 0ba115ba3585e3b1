"""Matrix timeline events as the bridge's staff events and `!commands`: pure functions over the
events /sync or an appservice transaction hands on. Nothing here calls the homeserver.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
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
from connectors.matrix_files import file_ref
from connectors.matrix_html import formatted_text
from connectors.staff import thread_command
from connectors.wire import storable

MATRIX = SurfaceName("matrix")
KINDS = {"m.image": MediaKind.IMAGE, "m.audio": MediaKind.AUDIO, "m.video": MediaKind.VIDEO}


@dataclass(frozen=True, slots=True)
class CommandLine:
    """A `!command` a staff member typed, in a thread or in the room."""

    room: str
    thread: ThreadRef | None
    ref: StaffMessageRef
    sender: StaffUserId
    text: str  # without the leading !


def split_ref(ref: str) -> tuple[str, str]:
    """'<room id>/<event id>' → (room, event); event ids never hold a slash."""
    room, _, event = ref.rpartition("/")
    return room, event


def _strip_reply_fallback(body: str) -> str:
    """Drop the quoted `> <@user> …` lines clients put before a reply's own text."""
    lines = body.split("\n")
    if not lines or not lines[0].startswith("> "):
        return body
    while lines and lines[0].startswith(">"):
        lines.pop(0)
    if lines and not lines[0].strip():
        lines.pop(0)
    return "\n".join(lines)


def parse_event(
    room: str, event: Mapping[str, Any], own_user: str, puppets: str | None = None
) -> StaffEvent | CommandLine | None:
    """Turn one timeline event of a room into a staff event or command; None for the rest.

    Events of the bridge itself are dropped: its bot user, and in appservice mode the users
    whose id starts with `puppets` (the customers it shows as Matrix users).
    """
    sender = event.get("sender")
    event_id = event.get("event_id")
    if not isinstance(sender, str) or not isinstance(event_id, str) or sender == own_user:
        return None
    if not storable(event):
        return None  # a lone surrogate: no text (and no homeserver) takes it
    if puppets and sender.startswith(puppets):
        return None
    content = event.get("content")
    if not isinstance(content, dict):
        return None
    kind = event.get("type")
    if kind == "m.room.redaction":
        return _deletion(room, event, content, sender, event_id)
    if kind != "m.room.message":
        return None
    relation = content.get("m.relates_to")
    relation = relation if isinstance(relation, dict) else {}
    rel_type, target = relation.get("rel_type"), relation.get("event_id")
    if rel_type == "m.replace":
        new = content.get("m.new_content")
        new_body = new.get("body", "") if isinstance(new, dict) else None
        if not isinstance(target, str) or not isinstance(new_body, str):
            return None
        assert isinstance(new, dict)
        return StaffEdit(
            surface=MATRIX,
            ref=StaffMessageRef(f"{room}/{target}"),
            text=formatted_text(new) or new_body,
            author=StaffUserId(sender),
            event=StaffMessageRef(f"{room}/{event_id}"),
        )
    body = content.get("body")
    msgtype = content.get("msgtype")
    if not isinstance(body, str) or not isinstance(msgtype, str):
        return None
    thread = (
        ThreadRef(f"{room}/{target}")
        if rel_type == "m.thread" and isinstance(target, str)
        else None
    )
    if thread is None and relation.get("m.in_reply_to"):
        body = _strip_reply_fallback(body)
    ref = StaffMessageRef(f"{room}/{event_id}")
    line = thread_command(body) if msgtype == "m.text" else None
    if line is not None:
        return CommandLine(room, thread, ref, StaffUserId(sender), line.strip())
    if thread is None or msgtype == "m.notice":
        return None  # talk in the room itself, or another bot's notices
    attachments: tuple[Attachment, ...] = ()
    text = body
    file = _file_ref(content)
    if msgtype in ("m.image", "m.file", "m.audio", "m.video") and file is not None:
        attachment = _attachment(msgtype, body, content, file)
        attachments = (attachment,)
        # The body is the file's name unless a separate filename makes it a caption.
        text = body if attachment.filename != body else ""
    elif msgtype not in ("m.text", "m.emote"):
        return None
    else:
        # The HTML is what the author saw formatted; `body` may be their Markdown source.
        text = formatted_text(content) or text
    return StaffMessage(
        surface=MATRIX,
        thread=thread,
        ref=ref,
        author=StaffUserId(sender),
        text=text,
        at=_sent_at(event.get("origin_server_ts")),
        attachments=attachments,
    )


def _deletion(
    room: str, event: Mapping[str, Any], content: Mapping[str, Any], sender: str, event_id: str
) -> StaffDelete | None:
    """A redaction, naming the event it removes."""
    # Room version 11 moved `redacts` into the content.
    target = event.get("redacts") or content.get("redacts")
    if not isinstance(target, str):
        return None
    return StaffDelete(
        surface=MATRIX,
        ref=StaffMessageRef(f"{room}/{target}"),
        author=StaffUserId(sender),
        event=StaffMessageRef(f"{room}/{event_id}"),
    )


def _file_ref(content: Mapping[str, Any]) -> str | None:
    """Where the file is: `url`, or in an encrypted room the `file` object (its mxc URI with
    the key to decrypt it, Matrix spec "Sending encrypted attachments")."""
    url = content.get("url")
    return url if isinstance(url, str) else file_ref(content)


def _attachment(msgtype: str, body: str, content: Mapping[str, Any], ref: str) -> Attachment:
    """The file of an m.image, m.file, m.audio or m.video event."""
    raw_info = content.get("info")
    info: dict[str, Any] = raw_info if isinstance(raw_info, dict) else {}
    filename = content.get("filename") if isinstance(content.get("filename"), str) else None
    size = info.get("size")
    return Attachment(
        kind=KINDS.get(msgtype, MediaKind.DOCUMENT),
        ref=ref,
        filename=filename or body,
        mime_type=info.get("mimetype") if isinstance(info.get("mimetype"), str) else None,
        size=size if isinstance(size, int) and not isinstance(size, bool) else None,
    )


def _sent_at(stamp: Any) -> datetime:
    """An event's origin_server_ts (milliseconds); now when it is no time a datetime holds."""
    if isinstance(stamp, int) and not isinstance(stamp, bool):
        try:
            return datetime.fromtimestamp(stamp / 1000, UTC)
        except (OverflowError, OSError, ValueError):
            pass
    return datetime.now(UTC)
