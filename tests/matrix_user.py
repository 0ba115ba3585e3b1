"""A human staff member on a Matrix homeserver, speaking the client-server API with plain aiohttp.

    alice = await MatrixUser.register(synapse, displayname="Alice")  # or MatrixUser(url, id, token)
    room = await alice.create_room("Support", invite=[bob.user_id])
    await bob.join(room)
    root = await alice.send_text(room, "a thread root")
    reply = await bob.send_text(room, "in the thread", thread_root=root)
    events = await alice.thread(room, root)                       # oldest first
    event = await alice.wait_for_event(room, lambda e: body(e) == "hi", timeout=20)
    await alice.close()

Deliberately independent of matrix-nio (which the product uses), so a test does not share the
client code it checks. Nothing here retries: a 429 raises MatrixError with its retry hints.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

import aiohttp
from yarl import URL

if TYPE_CHECKING:
    from tests.synapse import Synapse

log = logging.getLogger(__name__)

T = TypeVar("T")
Event = dict[str, Any]

CLIENT_V3 = "/_matrix/client/v3"
CLIENT_V1 = "/_matrix/client/v1"
MEDIA_V3 = "/_matrix/media/v3"
HTML_FORMAT = "org.matrix.custom.html"
HTTP_TIMEOUT_S = 30.0
DEFAULT_WAIT_S = 20.0
_names = itertools.count(1)


class MatrixError(Exception):
    """An error answer of the homeserver: HTTP status, errcode and the retry hints of a 429."""

    def __init__(
        self,
        method: str,
        path: str,
        status: int,
        body: Mapping[str, Any],
        retry_after_header: str | None = None,
    ) -> None:
        self.status = status
        self.errcode = str(body.get("errcode", ""))
        self.error = str(body.get("error", ""))
        self.body = dict(body)
        raw_ms = body.get("retry_after_ms")
        self.retry_after_ms: int | None = int(raw_ms) if isinstance(raw_ms, int | float) else None
        self.retry_after_header = retry_after_header
        super().__init__(f"{method} {path} answered {status} {self.errcode}: {self.error}")

    @property
    def retry_after(self) -> float | None:
        """Seconds to wait: the Retry-After header if any, else retry_after_ms."""
        if self.retry_after_header is not None:
            try:
                return float(self.retry_after_header)
            except ValueError:
                pass
        return None if self.retry_after_ms is None else self.retry_after_ms / 1000


@dataclass(frozen=True)
class MediaDownload:
    """Downloaded media: the bytes and what the server says about them."""

    data: bytes
    content_type: str | None
    content_disposition: str | None


def _q(part: str) -> str:
    """One path segment, percent-encoded (room and event ids hold !, $, :, / and +)."""
    return quote(part, safe="")


def body_of(event: Mapping[str, Any]) -> str | None:
    """The `body` of an event's content, if any."""
    body = event.get("content", {}).get("body")
    return body if isinstance(body, str) else None


def relation_of(event: Mapping[str, Any]) -> dict[str, Any]:
    """The event's `m.relates_to` (empty when it has none)."""
    relates = event.get("content", {}).get("m.relates_to")
    return relates if isinstance(relates, dict) else {}


async def wait_for(
    probe: Callable[[], Awaitable[T | None]],
    timeout: float = DEFAULT_WAIT_S,
    *,
    interval: float = 0.1,
    what: str = "a condition",
) -> T:
    """Await `probe()` until it gives something truthy, and return that (else TimeoutError)."""
    deadline = time.monotonic() + timeout
    while True:
        last = await probe()
        if last:
            return last
        if time.monotonic() >= deadline:
            msg = f"waited {timeout}s for {what}; last probe gave {last!r}"
            raise TimeoutError(msg)
        await asyncio.sleep(interval)


class MatrixUser:
    """One logged-in Matrix account acting like a person in Element; see the module docstring."""

    def __init__(
        self,
        base_url: str,
        user_id: str,
        access_token: str,
        *,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.user_id = user_id
        self.access_token = access_token
        self._session = session
        self._owns_session = session is None

    @classmethod
    async def register(
        cls,
        synapse: Synapse,
        localpart: str | None = None,
        *,
        password: str | None = None,
        admin: bool = False,
        displayname: str | None = None,
        prefix: str = "staff",
    ) -> MatrixUser:
        """A new account on `synapse` (a unique `prefix_N_xxxx` localpart unless given)."""
        localpart = localpart or f"{prefix}_{next(_names)}_{secrets.token_hex(3)}"
        password = password or secrets.token_urlsafe(12)
        user_id, token = await asyncio.to_thread(synapse.register, localpart, password, admin)
        user = cls(synapse.base_url, user_id, token)
        if displayname is not None:
            await user.set_displayname(displayname)
        return user

    @property
    def http(self) -> aiohttp.ClientSession:
        """The HTTP session (created on first use when none was given)."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=HTTP_TIMEOUT_S)
            )
            self._owns_session = True
        return self._session

    async def close(self) -> None:
        """Close the HTTP session if it is ours."""
        if self._owns_session and self._session is not None:
            await self._session.close()
        self._session = None

    async def __aenter__(self) -> MatrixUser:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<MatrixUser {self.user_id} on {self.base_url}>"

    # -- HTTP ----------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, str | int] | None = None,
        data: bytes | None = None,
        content_type: str | None = None,
    ) -> Any:
        """One authenticated call; the JSON answer, or MatrixError on a 4xx/5xx."""
        headers = {"Authorization": f"Bearer {self.access_token}"}
        if content_type is not None:
            headers["Content-Type"] = content_type
        url = URL(self.base_url + path, encoded=True)
        async with self.http.request(
            method, url, json=json_body, params=params, data=data, headers=headers
        ) as response:
            raw = await response.read()
            log.debug("%s %s -> %d", method, path, response.status)
            if response.status >= 400:
                raise MatrixError(
                    method,
                    path,
                    response.status,
                    _json_or_text(raw),
                    response.headers.get("Retry-After"),
                )
            return json.loads(raw) if raw else {}

    # -- account and rooms -----------------------------------------------------------------

    async def set_displayname(self, name: str) -> None:
        """Set this user's display name."""
        await self.request(
            "PUT",
            f"{CLIENT_V3}/profile/{_q(self.user_id)}/displayname",
            json_body={"displayname": name},
        )

    async def create_room(
        self,
        name: str | None = None,
        invite: Iterable[str] = (),
        *,
        topic: str | None = None,
        preset: str = "private_chat",
        is_direct: bool = False,
    ) -> str:
        """Create a room, inviting `invite`; returns its room id."""
        body: dict[str, Any] = {"preset": preset, "invite": list(invite), "is_direct": is_direct}
        if name is not None:
            body["name"] = name
        if topic is not None:
            body["topic"] = topic
        answer = await self.request("POST", f"{CLIENT_V3}/createRoom", json_body=body)
        return str(answer["room_id"])

    async def join(self, room: str) -> str:
        """Join a room by id or alias (accepts a pending invite); returns the room id."""
        answer = await self.request("POST", f"{CLIENT_V3}/join/{_q(room)}", json_body={})
        return str(answer["room_id"])

    async def invite(self, room: str, user_id: str) -> None:
        """Invite `user_id` into `room`."""
        await self.request(
            "POST", f"{CLIENT_V3}/rooms/{_q(room)}/invite", json_body={"user_id": user_id}
        )

    async def leave(self, room: str) -> None:
        """Leave `room`."""
        await self.request("POST", f"{CLIENT_V3}/rooms/{_q(room)}/leave", json_body={})

    async def joined_rooms(self) -> list[str]:
        """The ids of the rooms this user is in."""
        answer = await self.request("GET", f"{CLIENT_V3}/joined_rooms")
        return [str(r) for r in answer["joined_rooms"]]

    async def invited_rooms(self) -> list[str]:
        """The ids of the rooms this user is invited to (from an immediate /sync)."""
        room_filter = json.dumps({"room": {"timeline": {"limit": 0}}, "presence": {"types": []}})
        answer = await self.request(
            "GET", f"{CLIENT_V3}/sync", params={"timeout": 0, "filter": room_filter}
        )
        return sorted(answer.get("rooms", {}).get("invite", {}))

    async def members(self, room: str) -> dict[str, str]:
        """user id → membership (join, invite, leave, ban) of everyone `room` knows."""
        answer = await self.request("GET", f"{CLIENT_V3}/rooms/{_q(room)}/members")
        return {e["state_key"]: e["content"]["membership"] for e in answer["chunk"]}

    # -- sending -------------------------------------------------------------------------

    async def send_event(self, room: str, event_type: str, content: Mapping[str, Any]) -> str:
        """Send one room event with a fresh transaction id; returns its event id."""
        txn = f"t{time.time_ns()}{secrets.token_hex(4)}"
        answer = await self.request(
            "PUT",
            f"{CLIENT_V3}/rooms/{_q(room)}/send/{_q(event_type)}/{txn}",
            json_body=dict(content),
        )
        return str(answer["event_id"])

    async def send_state(
        self, room: str, event_type: str, content: Mapping[str, Any], state_key: str = ""
    ) -> str:
        """Set a piece of the room's state (its encryption, say); returns the event id."""
        answer = await self.request(
            "PUT",
            f"{CLIENT_V3}/rooms/{_q(room)}/state/{_q(event_type)}/{_q(state_key)}",
            json_body=dict(content),
        )
        return str(answer["event_id"])

    async def send_text(
        self,
        room: str,
        body: str,
        thread_root: str | None = None,
        formatted: str | None = None,
        *,
        reply_to: str | None = None,
        msgtype: str = "m.text",
    ) -> str:
        """Send a message, in `thread_root`'s thread if given (as Element does); returns its id.

        In a thread, `m.in_reply_to` is the fallback for clients without threads: the latest
        event of the thread with `is_falling_back`, unless `reply_to` names a real reply.
        Outside a thread, `reply_to` makes a plain rich reply.
        """
        content: dict[str, Any] = {"msgtype": msgtype, "body": body}
        if formatted is not None:
            content["format"] = HTML_FORMAT
            content["formatted_body"] = formatted
        relates = await self._relation(room, thread_root, reply_to)
        if relates:
            content["m.relates_to"] = relates
        return await self.send_event(room, "m.room.message", content)

    async def _relation(
        self, room: str, thread_root: str | None, reply_to: str | None
    ) -> dict[str, Any]:
        if thread_root is None:
            return {"m.in_reply_to": {"event_id": reply_to}} if reply_to else {}
        if reply_to is not None:
            fallback, falling_back = reply_to, False
        else:
            fallback, falling_back = await self._latest_in_thread(room, thread_root), True
        return {
            "rel_type": "m.thread",
            "event_id": thread_root,
            "is_falling_back": falling_back,
            "m.in_reply_to": {"event_id": fallback},
        }

    async def _latest_in_thread(self, room: str, root: str) -> str:
        answer = await self.request(
            "GET",
            f"{CLIENT_V1}/rooms/{_q(room)}/relations/{_q(root)}/m.thread",
            params={"dir": "b", "limit": 1},
        )
        chunk = answer.get("chunk", [])
        return str(chunk[0]["event_id"]) if chunk else root

    async def edit(
        self, room: str, event_id: str, new_body: str, *, formatted: str | None = None
    ) -> str:
        """Replace the text of `event_id` (m.replace with `* ` fallback); returns the edit's id."""
        new_content: dict[str, Any] = {"msgtype": "m.text", "body": new_body}
        content: dict[str, Any] = {"msgtype": "m.text", "body": f"* {new_body}"}
        if formatted is not None:
            new_content |= {"format": HTML_FORMAT, "formatted_body": formatted}
            content |= {"format": HTML_FORMAT, "formatted_body": f"* {formatted}"}
        content["m.new_content"] = new_content
        content["m.relates_to"] = {"rel_type": "m.replace", "event_id": event_id}
        return await self.send_event(room, "m.room.message", content)

    async def redact(self, room: str, event_id: str, reason: str | None = None) -> str:
        """Redact (delete) `event_id`; returns the redaction's event id."""
        txn = f"r{time.time_ns()}{secrets.token_hex(4)}"
        body = {"reason": reason} if reason is not None else {}
        answer = await self.request(
            "PUT", f"{CLIENT_V3}/rooms/{_q(room)}/redact/{_q(event_id)}/{txn}", json_body=body
        )
        return str(answer["event_id"])

    async def react(self, room: str, event_id: str, key: str) -> str:
        """Annotate `event_id` with `key` (usually an emoji); returns the reaction's id."""
        relates = {"rel_type": "m.annotation", "event_id": event_id, "key": key}
        return await self.send_event(room, "m.reaction", {"m.relates_to": relates})

    async def read_receipt(self, room: str, event_id: str) -> None:
        """Mark `event_id` as read (a public m.read receipt)."""
        await self.request(
            "POST", f"{CLIENT_V3}/rooms/{_q(room)}/receipt/m.read/{_q(event_id)}", json_body={}
        )

    # -- media ---------------------------------------------------------------------------

    async def upload(self, data: bytes, content_type: str, filename: str | None = None) -> str:
        """Upload media; returns its mxc:// URI."""
        params = {"filename": filename} if filename else None
        answer = await self.request(
            "POST", f"{MEDIA_V3}/upload", data=data, params=params, content_type=content_type
        )
        return str(answer["content_uri"])

    async def send_media(
        self,
        room: str,
        data: bytes,
        content_type: str,
        filename: str,
        *,
        msgtype: str | None = None,
        thread_root: str | None = None,
        caption: str | None = None,
    ) -> str:
        """Upload a file and post it (m.image/m.video/m.audio/m.file by type); returns its id."""
        mxc = await self.upload(data, content_type, filename)
        if msgtype is None:
            major = content_type.split("/", 1)[0]
            msgtype = {"image": "m.image", "video": "m.video", "audio": "m.audio"}.get(
                major, "m.file"
            )
        content: dict[str, Any] = {
            "msgtype": msgtype,
            "body": caption if caption is not None else filename,
            "url": mxc,
            "info": {"mimetype": content_type, "size": len(data)},
        }
        if caption is not None:
            content["filename"] = filename
        relates = await self._relation(room, thread_root, None)
        if relates:
            content["m.relates_to"] = relates
        return await self.send_event(room, "m.room.message", content)

    async def download_media(self, mxc: str) -> MediaDownload:
        """Fetch mxc://server/id through the authenticated v1 media API."""
        if not mxc.startswith("mxc://"):
            msg = f"not an mxc URI: {mxc!r}"
            raise ValueError(msg)
        server, _, media_id = mxc.removeprefix("mxc://").partition("/")
        path = f"{CLIENT_V1}/media/download/{_q(server)}/{_q(media_id)}"
        headers = {"Authorization": f"Bearer {self.access_token}"}
        async with self.http.get(URL(self.base_url + path, encoded=True), headers=headers) as r:
            raw = await r.read()
            if r.status >= 400:
                raise MatrixError("GET", path, r.status, _json_or_text(raw))
            return MediaDownload(
                raw, r.headers.get("Content-Type"), r.headers.get("Content-Disposition")
            )

    async def download(self, mxc: str) -> bytes:
        """The bytes behind an mxc:// URI."""
        return (await self.download_media(mxc)).data

    # -- reading -------------------------------------------------------------------------

    async def event(self, room: str, event_id: str) -> Event:
        """One event as the server serves it (with `unsigned`, bundled edits)."""
        answer = await self.request("GET", f"{CLIENT_V3}/rooms/{_q(room)}/event/{_q(event_id)}")
        return dict(answer)

    async def messages(self, room: str, limit: int = 100) -> list[Event]:
        """The latest `limit` events of the room timeline (state events too), oldest first."""
        answer = await self.request(
            "GET", f"{CLIENT_V3}/rooms/{_q(room)}/messages", params={"dir": "b", "limit": limit}
        )
        return list(reversed(answer.get("chunk", [])))

    async def relations(
        self,
        room: str,
        event_id: str,
        rel_type: str | None = None,
        event_type: str | None = None,
        *,
        limit: int = 1000,
    ) -> list[Event]:
        """Events relating to `event_id` (optionally of one rel_type/type), oldest first."""
        path = f"{CLIENT_V1}/rooms/{_q(room)}/relations/{_q(event_id)}"
        if rel_type is not None:
            path += f"/{_q(rel_type)}"
            if event_type is not None:
                path += f"/{_q(event_type)}"
        events: list[Event] = []
        params: dict[str, str | int] = {"dir": "f", "limit": min(limit, 100)}
        while len(events) < limit:
            answer = await self.request("GET", path, params=params)
            events.extend(answer.get("chunk", []))
            if not answer.get("next_batch"):
                break
            params["from"] = answer["next_batch"]
        return events[:limit]

    async def thread(self, room: str, root_event_id: str) -> list[Event]:
        """The events in `root_event_id`'s thread (root excluded), oldest first."""
        return await self.relations(room, root_event_id, "m.thread")

    async def reactions(self, room: str, event_id: str) -> list[tuple[str, str]]:
        """(sender, key) of every reaction on `event_id` that is not redacted."""
        events = await self.relations(room, event_id, "m.annotation")
        return [(e["sender"], relation_of(e)["key"]) for e in events if relation_of(e).get("key")]

    async def current_content(self, room: str, event_id: str) -> dict[str, Any]:
        """The content a reader sees now: the latest edit's m.new_content, else the original."""
        original = await self.event(room, event_id)
        edits = await self.relations(room, event_id, "m.replace")
        mine = [e for e in edits if e.get("sender") == original.get("sender")]
        if mine:
            latest = max(mine, key=lambda e: e.get("origin_server_ts", 0))
            new_content = latest.get("content", {}).get("m.new_content")
            if isinstance(new_content, dict):
                return new_content
        return dict(original.get("content", {}))

    # -- waiting -------------------------------------------------------------------------

    async def wait_for(
        self,
        probe: Callable[[], Awaitable[T | None]],
        timeout: float = DEFAULT_WAIT_S,
        *,
        what: str = "a condition",
    ) -> T:
        """Await `probe()` until it gives something truthy (see the module-level wait_for)."""
        return await wait_for(probe, timeout, what=what)

    async def wait_for_event(
        self,
        room: str,
        predicate: Callable[[Event], bool],
        timeout: float = DEFAULT_WAIT_S,
        *,
        limit: int = 100,
    ) -> Event:
        """The first (oldest) event of the room's latest `limit` that matches `predicate`."""

        async def probe() -> Event | None:
            return next((e for e in await self.messages(room, limit) if predicate(e)), None)

        return await wait_for(probe, timeout, what=f"an event in {room} for {self.user_id}")

    async def wait_for_thread_event(
        self,
        room: str,
        root_event_id: str,
        predicate: Callable[[Event], bool],
        timeout: float = DEFAULT_WAIT_S,
    ) -> Event:
        """The first event in `root_event_id`'s thread that matches `predicate`."""

        async def probe() -> Event | None:
            return next((e for e in await self.thread(room, root_event_id) if predicate(e)), None)

        return await wait_for(probe, timeout, what=f"a thread event under {root_event_id}")

    async def wait_for_invite(self, timeout: float = DEFAULT_WAIT_S) -> str:
        """The id of a room this user is invited to, once there is one."""

        async def probe() -> str | None:
            rooms = await self.invited_rooms()
            return rooms[0] if rooms else None

        return await wait_for(probe, timeout, what=f"an invite for {self.user_id}")


def _json_or_text(raw: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(raw)
    except ValueError:
        return {"error": raw.decode(errors="replace")[:500]}
    return parsed if isinstance(parsed, dict) else {"error": str(parsed)[:500]}
