"""The homeserver as the Matrix surface talks to it: nio's client for what it offers, plain
client-server API calls for the rest, uploads, and every answer mapped into the bridge's error
tree in one place.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, NoReturn
from urllib.parse import quote

import aiohttp
from nio import (
    AsyncClient,
    AsyncClientConfig,
    ErrorResponse,
    LoginResponse,
    RoomSendResponse,
    UploadResponse,
)
from pydantic import SecretStr

from bridge.errors import (
    DeliveryError,
    PermanentError,
    RateLimited,
    TooLarge,
    TransientError,
    Unreachable,
)
from bridge.types import Attachment, FileData, MediaKind
from connectors.matrix_files import decrypt_file, split_file_ref
from connectors.matrix_guard import RoomGuard
from connectors.matrix_render import MARKER, in_thread
from connectors.staff import downloaded

log = logging.getLogger(__name__)

MSGTYPES = {
    MediaKind.IMAGE: "m.image",
    MediaKind.AUDIO: "m.audio",
    MediaKind.VIDEO: "m.video",
    MediaKind.DOCUMENT: "m.file",
}
# Errors that mean the bot is set up wrongly (not in the room, token revoked): keep the rows
# and retry with backoff, so that fixing the setup lets everything through.
SETUP_ERRORS = {"M_FORBIDDEN", "M_UNKNOWN_TOKEN", "M_MISSING_TOKEN", "M_USER_DEACTIVATED"}


def matrix_error(
    status: int | None, errcode: str, message: str, retry_after: float | None
) -> DeliveryError:
    """The one mapping of a homeserver's answer (HTTP status, errcode) into the error tree."""
    if status == 429 or errcode == "M_LIMIT_EXCEEDED":
        seconds = retry_after if retry_after is not None else 1.0
        return RateLimited(seconds, f"Matrix rate limit: retry after {seconds:g}s")
    if status == 413 or errcode == "M_TOO_LARGE":
        return TooLarge(errcode or "M_TOO_LARGE", f"Matrix refused it as too large: {message}")
    if (status is not None and status >= 500) or errcode in ("M_UNKNOWN", ""):
        return TransientError(f"Matrix answered {status} {errcode}: {message}")
    if errcode in SETUP_ERRORS:
        log.error("Matrix refused a call because of the bot's setup: %s %s", errcode, message)
        return TransientError(f"Matrix setup problem: {errcode} {message}")
    return PermanentError(errcode, f"Matrix refused it: {errcode} {message}".strip())


def retry_after_of(
    headers: Mapping[str, str] | None, body: Mapping[str, Any] | None
) -> float | None:
    """Seconds to wait: the Retry-After header (spec 1.10) or the older retry_after_ms."""
    value = (headers or {}).get("Retry-After")
    if value is not None:
        with contextlib.suppress(ValueError):
            return max(float(value), 0.0)
    ms = (body or {}).get("retry_after_ms")
    if isinstance(ms, int | float) and not isinstance(ms, bool):
        return max(float(ms) / 1000.0, 0.0)
    return None


class _Client(AsyncClient):  # type: ignore[misc]
    """nio's client, keeping the HTTP status and Retry-After of an error answer."""

    async def create_matrix_response(
        self,
        response_class: type,
        transport_response: aiohttp.ClientResponse,
        data: tuple[Any, ...] | None = None,
        save_to: Any = None,
    ) -> Any:
        """nio's response, with `http_status` and `retry_after_header` on errors."""
        response = await super().create_matrix_response(
            response_class, transport_response, data, save_to
        )
        if isinstance(response, ErrorResponse) and transport_response is not None:
            response.http_status = transport_response.status
            response.retry_after_header = transport_response.headers.get("Retry-After")
        return response


def raise_response(response: ErrorResponse) -> NoReturn:
    """Map one of nio's error responses into the bridge's error tree."""
    header = getattr(response, "retry_after_header", None)
    retry = retry_after_of(
        {"Retry-After": header} if header else None,
        {"retry_after_ms": response.retry_after_ms} if response.retry_after_ms else None,
    )
    raise matrix_error(
        getattr(response, "http_status", None),
        str(response.status_code or ""),
        str(response.message or ""),
        retry,
    )


async def checked(call: Awaitable[Any], ok: type | tuple[type, ...]) -> Any:
    """Await a nio call; its answer when it is `ok`, else the mapped error."""
    try:
        response = await call
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise Unreachable(f"the homeserver could not be reached: {type(exc).__name__}") from None
    if isinstance(response, ok):
        return response
    if isinstance(response, ErrorResponse):
        raise_response(response)
    raise TransientError(f"unexpected answer from the homeserver: {type(response).__name__}")


async def _checked_pair(call: Awaitable[tuple[Any, Any]]) -> tuple[UploadResponse, Any]:
    """nio's upload answers a pair; map its error like every other call."""
    try:
        response, keys = await call
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise Unreachable(f"the homeserver could not be reached: {type(exc).__name__}") from None
    if isinstance(response, UploadResponse):
        return response, keys
    if isinstance(response, ErrorResponse):
        raise_response(response)
    raise TransientError(f"unexpected answer to an upload: {type(response).__name__}")


class Homeserver:
    """The bot's connection to its homeserver: login, sends, uploads and plain API calls."""

    def __init__(
        self,
        homeserver: str,
        user_id: str,
        device_id: str | None,
        password: SecretStr | None,
        http: aiohttp.ClientSession,
        guard: RoomGuard | None = None,
        *,
        encryption: bool = False,
    ) -> None:
        self.url = homeserver.rstrip("/")
        # Asked before every event the bot (or a customer's user) sends: see matrix_guard.
        self.guard = guard or RoomGuard()
        self._http = http
        self._password = password
        config = AsyncClientConfig(
            # 429s and timeouts go back to the outbox, which knows the rate limits and backs off.
            max_limit_exceeded=0,
            max_timeouts=0,
            request_timeout=60,
            store_sync_tokens=False,
            # The store is the bridge's database (matrix_crypto), opened by the sync loop.
            encryption_enabled=encryption,
        )
        self.client = _Client(self.url, user_id, device_id=device_id, config=config)
        self.client.client_session = http  # the bridge's shared session; closed by the app
        self._login_lock = asyncio.Lock()
        # Called after each send: an encrypted send moves Olm ratchets on, which must be stored
        # (a restart that reused an older state would send what the staff cannot decrypt).
        self.after_send: Callable[[], Awaitable[None]] | None = None
        self.keys_required = False  # set by matrix_crypto when encryption is on

    async def ready(self) -> None:
        """Log in with the password once, when no access token is configured."""
        if self.client.access_token:
            return
        async with self._login_lock:
            if self.client.access_token:
                return
            if self._password is None:
                msg = "matrix.access_token or matrix.password is required"
                raise RuntimeError(msg)
            login = await checked(
                self.client.login(self._password.get_secret_value(), device_name="support-bridge"),
                LoginResponse,
            )
            log.info("Matrix: logged in as %s (device %s)", login.user_id, login.device_id)

    async def send(self, room: str, kind: str, content: dict[str, Any], txn: str) -> str:
        """Send an event as the bot; its event id."""
        await self.guard.check(room)
        await self.ready()
        if self.keys_required and self.client.olm is None:
            # Only the process that syncs holds the bot's keys and knows which rooms are
            # encrypted; another one would send in the clear. The row waits for that process.
            raise TransientError("with matrix.encryption only the syncing process sends")
        if kind == "m.reaction" and self._encrypted(room):
            return await self._send_sealed(room, kind, content, txn)
        # Encrypted rooms: nio encrypts for every device of the members, verified or not (as
        # the mautrix bridges do); staff need not verify each other's devices for the bot.
        answer = await checked(
            self.client.room_send(room, kind, content, tx_id=txn, ignore_unverified_devices=True),
            RoomSendResponse,
        )
        if self.after_send is not None:
            await self.after_send()
        return str(answer.event_id)

    def _encrypted(self, room: str) -> bool:
        known = self.client.rooms.get(room)
        return self.client.olm is not None and known is not None and bool(known.encrypted)

    async def _send_sealed(self, room: str, kind: str, content: dict[str, Any], txn: str) -> str:
        """Send an event nio would leave in the clear (it does not encrypt reactions) as an
        `m.room.encrypted` one, its `m.relates_to` kept outside for the server's aggregation
        (Client-Server API, "Mentions and relations in encrypted events")."""
        client = self.client
        # What room_send does before it encrypts: members, their devices, a shared room key.
        if not client.rooms[room].members_synced:
            await client.joined_members(room)
        if client.should_query_keys:
            await client.keys_query()
        if client.olm is not None and client.olm.should_share_group_session(room):
            await client.share_group_session(room, ignore_unverified_devices=True)
        sealed_kind, sealed = client.encrypt(room, kind, content)
        path = f"/_matrix/client/v3/rooms/{quote(room)}/send/{sealed_kind}/{quote(txn)}"
        answer = await self.api("PUT", path, json=sealed)
        if self.after_send is not None:
            await self.after_send()
        return str(answer["event_id"])

    async def api(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        uia: bool = False,
    ) -> dict[str, Any]:
        """A client-server API call nio does not offer (relations, pages of history).

        `uia`: a 401 asking for user-interactive auth (its body has `flows`) is the answer."""
        await self.ready()
        headers = {"Authorization": f"Bearer {self.client.access_token}"}
        try:
            async with self._http.request(
                method, self.url + path, params=params, json=json, headers=headers
            ) as response:
                try:
                    body = await response.json(content_type=None)
                except ValueError:
                    body = {}
                body = body if isinstance(body, dict) else {}
                if uia and response.status == 401 and "flows" in body:
                    return body
                if response.status >= 400:
                    raise matrix_error(
                        response.status,
                        str(body.get("errcode", "")),
                        str(body.get("error", "")),
                        retry_after_of(response.headers, body),
                    )
                return body
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Unreachable(
                f"the homeserver could not be reached: {type(exc).__name__}"
            ) from None

    def encrypted(self, room: str | None) -> bool:
        """Whether the bot encrypts what it sends into this room."""
        return bool(room and self.client.olm is not None and room in self.client.encrypted_rooms)

    async def file_content(
        self,
        root: str | None,
        file: FileData,
        marker: str | None,
        caption: str | None = None,
        room: str | None = None,
    ) -> dict[str, Any]:
        """Upload a file to the homeserver; the content of the event that shows it (an
        encrypted room gets the file encrypted, its key in the event's `file` object)."""
        await self.ready()
        data = file.data
        secret = self.encrypted(room)
        upload, keys = await _checked_pair(
            self.client.upload(
                lambda *_: data,
                content_type="application/octet-stream" if secret else file.mime_type,
                filename=None if secret else file.filename,
                encrypt=secret,
                filesize=len(data),
            )
        )
        content: dict[str, Any] = {
            "msgtype": MSGTYPES.get(file.kind, "m.file"),
            "m.mentions": {},
            "body": caption or file.filename,
            "filename": file.filename,
            "info": {"mimetype": file.mime_type, "size": len(data)},
        }
        if secret and keys:
            content["file"] = {"url": upload.content_uri, **keys}
        else:
            content["url"] = upload.content_uri
        if root:
            content["m.relates_to"] = in_thread(root)
        if marker:
            content[MARKER] = marker
        return content

    async def download(self, attachment: Attachment) -> FileData:
        """Download a file an agent attached (authenticated media, spec 1.11)."""
        mxc, keys = split_file_ref(attachment.ref)
        match = re.fullmatch(r"mxc://([^/]+)/([^/?#]+)", mxc)
        if match is None:
            raise PermanentError("bad_mxc", f"not a Matrix media URI: {attachment.ref}")
        await self.ready()
        url = (
            f"{self.url}/_matrix/client/v1/media/download/"
            f"{quote(match.group(1))}/{quote(match.group(2))}"
        )
        try:
            async with self._http.get(
                url, headers={"Authorization": f"Bearer {self.client.access_token}"}
            ) as response:
                if response.status == 429 or response.status >= 500:
                    raise matrix_error(
                        response.status, "", "", retry_after_of(response.headers, {})
                    )
                if response.status != 200:
                    raise PermanentError(
                        str(response.status), "the file could not be downloaded from Matrix"
                    )
                data = await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Unreachable(f"Matrix media download failed: {type(exc).__name__}") from None
        return downloaded(attachment, decrypt_file(data, keys) if keys else data)

    async def send_file(
        self,
        room: str,
        root: str | None,
        file: FileData,
        marker: str | None,
        txn: str,
        caption: str | None = None,
    ) -> str:
        """Upload a file and send the event that shows it (in the thread of `root`)."""
        await self.guard.check(room)  # before the upload: the file stays with the bridge
        content = await self.file_content(root, file, marker, caption, room)
        return await self.send(room, "m.room.message", content, txn)
