"""A customer's reactions on the events mirrored into a Matrix thread.

Each is an `m.annotation` (Client-Server API, "Reactions"), sent by the bot or, in appservice
mode, by the customer's own user as their messages are, and redacted when the customer takes it
back. The bot's delivery marks use a few keys itself: a customer's reaction with one of those is
told as a line in the thread, so it is never read as a delivery mark.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from nio import RoomRedactResponse

from bridge.errors import PermanentError
from bridge.types import ReactionChange, StaffMessageRef, ThreadRef
from connectors.matrix_api import Homeserver, checked
from connectors.matrix_appservice import Puppets
from connectors.matrix_events import split_ref
from connectors.matrix_render import txn_id

Send = Callable[[str, str, dict[str, Any], str], Awaitable[str]]
Notice = Callable[[ThreadRef, str, str | None, str], Awaitable[StaffMessageRef]]
FindPost = Callable[[ThreadRef, str], Awaitable[StaffMessageRef | None]]
Relations = Callable[[str, str, str], Awaitable[list[dict[str, Any]]]]


class Reactions:
    """Shows one change of a customer's reactions on a mirrored event."""

    def __init__(
        self,
        user_id: str,
        *,
        appservice: bool,
        hs: Homeserver,
        puppets: Puppets,
        send: Send,
        notice: Notice,
        find_post: FindPost,
        relations: Relations,
        marks: frozenset[str],
    ) -> None:
        self._user_id = user_id
        self._appservice = appservice
        self._hs = hs
        self._puppets = puppets
        self._send = send
        self._notice = notice
        self._find_post = find_post
        self._relations = relations
        self._marks = marks

    async def react(self, thread: ThreadRef, ref: StaffMessageRef, change: ReactionChange) -> None:
        """A customer's reactions as `m.annotation`s on the event (the bot's, or in appservice
        mode the customer's own user's, as their messages are), redacted when the customer
        takes them back; one the delivery marks use as a notice in the thread."""
        room, event = split_ref(ref)
        sender = self._user_id
        if self._appservice and change.customer:
            sender = await self._puppets.ready(room, change.customer, change.author)
        told: list[str] = []
        mine = self._marks
        if change.removed:
            for reaction in await self._annotations(room, event, sender):
                key = reaction["content"]["m.relates_to"].get("key")
                if key in change.removed and (key not in mine or sender != self._user_id):
                    await self._take_back(room, str(reaction["event_id"]), sender)
        for key in change.removed:
            if key in mine and sender == self._user_id:
                told.append(f"{change.author} took back the reaction {key}")
        for key in change.added:
            if key in mine and sender == self._user_id:
                # The bot's own delivery marks use these keys: the customer's is told apart.
                told.append(f"{change.author} reacted {key} on “{change.on}”")
                continue
            content = {"m.relates_to": {"rel_type": "m.annotation", "event_id": event, "key": key}}
            try:
                if sender == self._user_id:
                    await self._send(room, "m.reaction", content, txn_id())
                else:
                    await self._puppets.send_as(sender, room, content, txn_id(), "m.reaction")
            except PermanentError as exc:
                # Synapse refuses the same reaction from the same user twice: it is there.
                if "same reaction" not in str(exc).lower():
                    raise
        if told and not (
            change.again and change.marker and await self._find_post(thread, change.marker)
        ):
            for n, line in enumerate(told):
                txn = txn_id("react", change.marker, n) if change.marker else txn_id()
                await self._notice(thread, line, change.marker, txn)

    async def _take_back(self, room: str, reaction: str, sender: str) -> None:
        """Redact a customer's reaction as the user that sent it."""
        reason = "the customer took the reaction back"
        if sender != self._user_id:
            await self._puppets.redact(room, reaction, sender, reason)
            return
        await self._hs.ready()
        await checked(
            self._hs.client.room_redact(room, reaction, reason=reason, tx_id=txn_id()),
            RoomRedactResponse,
        )

    async def _annotations(self, room: str, event: str, sender: str) -> list[dict[str, Any]]:
        """One user's reactions on an event (the relations API, annotations only)."""
        return [
            found
            for found in await self._relations(room, event, "/m.annotation/m.reaction")
            if found.get("sender") == sender
            and isinstance((found.get("content") or {}).get("m.relates_to"), dict)
        ]
