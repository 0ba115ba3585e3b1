"""Rooms the bot must not post into as it is set up: an end-to-end encrypted room while
`[matrix] encryption` is off, and any encrypted room in appservice mode.

A room is encrypted once its `m.room.encryption` state event exists, and it stays so: the spec
("End-to-End Encryption", "Enabling end-to-end encryption") lets no one switch it off again. A
message posted in the clear there would break the room's promise to its members, so every send
asks `RoomGuard.check` first (the one place that decides), and a send it refuses fails for good
with the reason, which the outbox keeps on the row.

The process that syncs (or takes the appservice transactions) learns of a room's encryption
from the timeline; a process that sends without syncing (the dispatcher process, another
process on PostgreSQL) sees no timeline, so what any process learns is kept in the bridge's
key-value store, which every send reads.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from bridge.errors import PermanentError, TransientError
from bridge.protocols import StateStore

if TYPE_CHECKING:
    from connectors.matrix_api import Homeserver

log = logging.getLogger(__name__)

ENCRYPTION_EVENT = "m.room.encryption"
REFUSED = "encrypted_room"


def refusal(room: str, encrypted: bool, *, encryption: bool, appservice: bool) -> str | None:
    """Why the bot may not post into `room` as set up, in words for an admin; None when it may."""
    if not encrypted:
        return None
    if appservice:
        return (
            f"Matrix room {room} is end-to-end encrypted; appservice mode needs an unencrypted room"
        )
    if not encryption:
        return f"Matrix room {room} is end-to-end encrypted; set [matrix] encryption = true"
    return None


def turns_on_encryption(event: Mapping[str, Any]) -> bool:
    """Whether a room event is the room's `m.room.encryption` state (state key empty)."""
    return event.get("type") == ENCRYPTION_EVENT and event.get("state_key") == ""


class RoomGuard:
    """The rooms the bot keeps out of, and why; asked before every event the bridge sends."""

    def __init__(
        self,
        state: StateStore | None = None,
        *,
        encryption: bool = False,
        appservice: bool = False,
    ) -> None:
        self.encryption = encryption
        self.appservice = appservice
        self._state = state
        self._refused: dict[str, str] = {}

    async def found(self, room: str, encrypted: bool) -> str | None:
        """Take in what is known of a room's encryption; the reason when it is now refused."""
        if encrypted and self._state is not None and room not in self._refused:
            # The fact, not the refusal: turning encryption on in the settings lifts it.
            await self._state.put(_key(room), "m.room.encryption")
        reason = refusal(room, encrypted, encryption=self.encryption, appservice=self.appservice)
        if reason is not None and room not in self._refused:
            self._refused[room] = reason
            # Said once per room: every send into it fails with the same reason on its row.
            log.error("%s (the bridge posts nothing there)", reason)
        return reason

    async def keeps_out(self, room: str, event: Mapping[str, Any]) -> bool:
        """An event of the room's timeline (it may switch encryption on): whether the bot keeps
        out of the room, reading and answering nothing there either."""
        if turns_on_encryption(event):
            await self.found(room, True)
        return room in self._refused

    def refused(self, room: str) -> bool:
        """Whether the bot keeps out of this room."""
        return room in self._refused

    async def check(self, room: str) -> None:
        """Raise PermanentError when nothing may be sent into this room (as this process knows
        it, or another one has learnt it)."""
        if self.encryption and not self.appservice:
            return  # the bot encrypts: every room may have what it sends
        state = None if room in self._refused else self._state
        if state is not None and await state.get(_key(room)) is not None:
            await self.found(room, True)
        reason = self._refused.get(room)
        if reason is not None:
            raise PermanentError(REFUSED, reason)

    async def report(self, hs: Homeserver, room: str) -> tuple[bool, str]:
        """For `run.py check`: may the bot post into `room` as set up, and what was found."""
        setting = f"[matrix] encryption {'on' if self.encryption else 'off'}"
        try:
            encrypted = await room_encrypted(hs, room)
        except TransientError as exc:
            if "M_FORBIDDEN" not in str(exc):
                raise
            # Not in the room yet (the start joins a room it is invited to): nothing to read.
            return True, f"not readable by the bot yet, so its encryption is not known ({setting})"
        reason = refusal(room, encrypted, encryption=self.encryption, appservice=self.appservice)
        if reason is not None:
            return False, reason
        return True, f"{'end-to-end encrypted' if encrypted else 'not encrypted'}; {setting}"


async def room_encrypted(hs: Homeserver, room: str) -> bool:
    """Whether the room has its `m.room.encryption` state (GET .../state: 404 when it has none)."""
    try:
        await hs.api("GET", f"/_matrix/client/v3/rooms/{quote(room)}/state/{ENCRYPTION_EVENT}")
    except PermanentError as exc:
        if exc.code == "M_NOT_FOUND":
            return False
        raise
    return True


def _key(room: str) -> str:
    """The key-value store's key for a room found encrypted (hashed: room ids may be long)."""
    return "encrypted_room:" + hashlib.sha256(room.encode()).hexdigest()[:40]
