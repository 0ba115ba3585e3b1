"""What the staff surfaces (Slack, Matrix) share: spotting a `!command` in a thread, remembering
what was handled already, the display names of staff, and the facts a contact card shows.

Each surface keeps its own wire format and markup; what is the same idea on both lives here
once, so the two cannot drift apart.
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from bridge.protocols import StateStore
from bridge.staffio import Reply
from bridge.types import Attachment, ContactCard, ConversationStatus, FileData

# A thread message that starts with `!word` is a command for the bridge, not a reply.
THREAD_COMMAND = re.compile(r"^!([A-Za-z][\w-]*)(?:\s|$)")
OPTED_OUT = "no: opted out, nothing is sent until they opt back in"
_BLOCKED = {"in": "inbound", "out": "outbound", "both": "inbound and outbound"}


def thread_command(text: str) -> str | None:
    """The command line of a `!word …` message (without the `!`); None for anything else."""
    return text[1:] if THREAD_COMMAND.match(text) else None


def says_something(reply: Reply) -> bool:
    """Whether a command's reply has anything to post (a note's reply may not)."""
    return bool(reply.title or reply.lines or reply.fields or reply.file)


def carries(value: object, marker: str) -> bool:
    """Whether a post's outbox mark (comma-separated row ids) names this outbox row."""
    return marker in str(value or "").split(",")


# -- contact cards -------------------------------------------------------------------------


def card_status(card: ContactCard) -> str:
    """The conversation's state as a card shows it."""
    return "open" if card.status is ConversationStatus.OPEN else "closed"


def card_handle(card: ContactCard) -> str:
    """The customer's @username, or a dash."""
    return f"@{card.username}" if card.username else "—"


def card_address(card: ContactCard) -> str:
    """The customer's id on their platform (a WhatsApp number with its +)."""
    return f"+{card.chat_id}" if card.platform == "whatsapp" else card.chat_id


def card_blocked(card: ContactCard) -> str:
    """What the blacklist holds back and until when ("" when nothing is)."""
    if not card.blocked:
        return ""
    until = f" until {card.blocked_until:%Y-%m-%d %H:%M} UTC" if card.blocked_until else " for good"
    return f"{_BLOCKED.get(card.blocked, card.blocked)}{until}"


def downloaded(attachment: Attachment, data: bytes) -> FileData:
    """The file an agent attached, once its bytes are fetched."""
    return FileData(
        kind=attachment.kind,
        filename=attachment.filename or "file",
        data=data,
        mime_type=attachment.mime_type or "application/octet-stream",
    )


# -- handled once ----------------------------------------------------------------------------


class SeenIds:
    """The ids of commands or events handled already (the newest `keep`), kept in the state
    store the surface is given, so a platform's redelivery after a restart is known too."""

    def __init__(self, state: StateStore, key: str, keep: int) -> None:
        self._state = state
        self._key = key
        self._keep = keep
        self._ids: OrderedDict[str, None] | None = None

    async def _loaded(self) -> OrderedDict[str, None]:
        if self._ids is None:
            stored = await self._state.get(self._key)
            if self._ids is None:  # another call may have loaded them meanwhile
                self._ids = OrderedDict.fromkeys(
                    str(item) for item in (json.loads(stored) if stored else [])
                )
        return self._ids

    async def seen(self, key: str) -> bool:
        """Whether the id was handled already."""
        return key in await self._loaded()

    async def remember(self, key: str) -> None:
        """Note the id as handled, and store the list before returning."""
        ids = await self._loaded()
        self._note(ids, key)
        await self._state.put(self._key, json.dumps(list(ids)))

    async def first(self, key: str) -> bool:
        """Note the id as handled; False when it was handled before (a redelivery)."""
        # Checked and noted with nothing between that waits (the ids are loaded by then): a
        # second delivery arriving meanwhile is told it is a repeat.
        if key in await self._loaded():
            return False
        await self.remember(key)
        return True

    def _note(self, ids: OrderedDict[str, None], key: str) -> None:
        ids[key] = None
        while len(ids) > self._keep:
            ids.popitem(last=False)


# -- display names ---------------------------------------------------------------------------


class NameUnknown(LookupError):
    """The platform could not tell a user's name now: ask again next time."""


class Names:
    """Display names of staff users, asked of the platform once per user.

    `look_up` answers a name, None for a user who has none (remembered as such), or raises
    NameUnknown for a user to ask about again.
    """

    def __init__(self, look_up: Callable[[str], Awaitable[str | None]]) -> None:
        self._look_up = look_up
        self._known: dict[str, str | None] = {}

    async def of(self, user: str) -> str | None:
        """The user's display name, if the platform tells one."""
        if user in self._known:
            return self._known[user]
        try:
            name = await self._look_up(user)
        except NameUnknown:
            return None
        self._known[user] = name
        return name
