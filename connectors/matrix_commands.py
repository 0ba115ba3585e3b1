"""Commands on Matrix: a `!word` typed in a thread or in a room becomes a Request for
`commands`, and its Reply is answered there as a notice; a private answer only where nobody
else can read it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from bridge.errors import DeliveryError, PermanentError
from bridge.protocols import CommandRunner
from bridge.staffio import Reply, Request, private_refusal
from connectors.matrix_api import Homeserver
from connectors.matrix_events import MATRIX, CommandLine, split_ref
from connectors.matrix_render import html_content, in_thread, reply_html, txn_id
from connectors.staff import Names, says_something

log = logging.getLogger(__name__)


class MatrixCommands:
    """Runs what staff ask of the bridge on Matrix and answers them there."""

    def __init__(
        self,
        homeserver: Homeserver,
        user_id: str,
        commands: CommandRunner,
        names: Names,
        stranger: Callable[[str | None], bool],
    ) -> None:
        self._hs = homeserver
        self._user_id = user_id
        self._commands = commands
        self._names = names
        self._stranger = stranger

    async def run(self, line: CommandLine) -> None:
        """Run a command line and answer where it was typed."""
        request = Request(
            surface=MATRIX,
            user=line.sender,
            user_name=await self._names.of(line.sender),
            text=line.text,
            channel=line.room,
            thread=line.thread,
            ref=line.ref,
            private_answers=await self._only_us(line.room, line.sender),
            stranger=self._stranger(line.sender),
        )
        reply = await self._commands(request)
        if reply.private and not request.private_answers:
            # A room shows every event to all its members: a private answer never goes there.
            reply = private_refusal(f"!{(line.text.split() or ['this'])[0]}")
        if not says_something(reply):
            return
        _, root = split_ref(line.thread) if line.thread else ("", None)
        try:
            await self._reply(line.room, root, reply, key=line.ref)
        except DeliveryError as exc:
            log.warning("Matrix: the answer to a command could not be sent: %s", exc)

    async def _reply(self, room: str, root: str | None, reply: Reply, key: str) -> None:
        body, formatted = reply_html(reply)
        content: dict[str, Any] = html_content("m.notice", body, formatted)
        if root:
            content["m.relates_to"] = in_thread(root)
        await self._hs.send(room, "m.room.message", content, txn_id("reply", key))
        if reply.file is not None:
            await self._hs.send_file(room, root, reply.file, None, txn_id("reply-file", key))

    async def _only_us(self, room: str, user: str) -> bool:
        """Whether only `user` and the bot can read the room: no other member joined, invited
        or knocking, and its history is not world-readable (Matrix shows a room's events to
        all of them, past events included)."""
        base = f"/_matrix/client/v3/rooms/{quote(room)}"
        try:
            answer = await self._hs.api("GET", f"{base}/members")
        except DeliveryError:
            return False
        try:
            state = await self._hs.api("GET", f"{base}/state/m.room.history_visibility")
        except PermanentError as exc:
            if exc.code != "M_NOT_FOUND":
                return False
            state = {}  # never set: the spec's default, "shared", is members only
        except DeliveryError:
            return False
        if state.get("history_visibility") == "world_readable":
            return False
        readers = {
            str(event.get("state_key"))
            for event in answer.get("chunk") or []
            if isinstance(event, dict)
            and (event.get("content") or {}).get("membership") in ("join", "invite", "knock")
        }
        return readers == {user, self._user_id}
