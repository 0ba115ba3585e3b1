"""A fake Telegram Bot API server that speaks the real wire format and records what a bot did.

It runs as a real aiohttp server on 127.0.0.1, so a connector's real HTTP code runs against it:
`{base_url}/bot{token}/{method}` with parameters in the query string, a JSON body, a urlencoded
form or multipart/form-data (files as parts), answered with `{"ok": true, "result": ...}` or
`{"ok": false, "error_code": N, "description": "...", "parameters": {...}}` and HTTP status N.
The inbound side plays Telegram pushing customer messages: build Update dicts with the
`*_update` helpers, then `push()` them for getUpdates or `deliver()` them to the webhook.
`sample_update` takes any Update of tests/corpus/telegram (what Telegram really sends) and
makes it this fake's customer's: their chat, names and ids, with its files served by getFile.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import math
import mimetypes
import re
import secrets
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.fakes.server import FakeServer
from tests.fakes.telegram_html import ParseError, parse_html

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
CORPUS = Path(__file__).parent.parent / "corpus" / "telegram"

# The Bot API's documented limits (core.telegram.org/bots/api): sendMessage text 1-4096
# characters, captions 0-1024, uploads up to 50 MB, downloads through getFile up to 20 MB.
# Characters are counted as Unicode scalars (measured: 4096 astral emoji are accepted).
TEXT_LIMIT = 4096
CAPTION_LIMIT = 1024
UPLOAD_LIMIT = 50 * 1024 * 1024
DOWNLOAD_LIMIT = 20 * 1024 * 1024

# getUpdates/setWebhook without allowed_updates deliver every kind except these three.
_NOT_BY_DEFAULT = frozenset({"chat_member", "message_reaction", "message_reaction_count"})
_SEND_METHODS = frozenset({"sendmessage", "sendphoto", "senddocument"})
_SECRET_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,256}")
_UNSET: Any = object()

CORPUS = Path(__file__).resolve().parent.parent / "corpus" / "telegram"
# Every Message has these; a sample's other fields are its content.
_HEAD_FIELDS = frozenset({"message_id", "from", "chat", "date"})
# The file fields of a Message, with the folder getFile's file_path names and the extension
# of the format the Bot API reference gives for the kind (Voice: OGG with OPUS; Audio: MP3…).
_FILE_FIELDS = {
    "voice": ("voice", ".ogg"),
    "audio": ("music", ".mp3"),
    "document": ("documents", ""),
    "video": ("videos", ".mp4"),
    "video_note": ("video_notes", ".mp4"),
    "animation": ("animations", ".mp4"),
    "sticker": ("stickers", ".webp"),
}


def load_sample(name: str) -> dict[str, Any]:
    """One Update of tests/corpus/telegram, by file name without `.json`."""
    return json.loads((CORPUS / f"{name}.json").read_text(encoding="utf-8"))


NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are "
    "exactly the same as a current content and reply markup of the message"
)


@dataclass
class SentMessage:
    """One message the bot sent, as the fake received it; edits and deletion are noted on it."""

    method: str
    chat_id: str
    message_id: int
    text: str | None = None
    caption: str | None = None
    file_name: str | None = None
    file_bytes: bytes | None = field(default=None, repr=False)
    mime_type: str | None = None
    edited_texts: list[str] = field(default_factory=list)
    deleted: bool = False
    parse_mode: str | None = None
    # What Telegram made of the formatting: entities with UTF-16 offsets (the last edit's).
    entities: list[dict[str, Any]] = field(default_factory=list)
    reply_markup: Any = None
    file_id: str | None = None
    date: int = 0

    @property
    def current_text(self) -> str | None:
        """The text (or caption) the customer sees now."""
        if self.edited_texts:
            return self.edited_texts[-1]
        return self.text if self.method == "sendMessage" else self.caption


@dataclass
class _File:
    file_id: str
    file_unique_id: str
    file_path: str
    data: bytes = field(repr=False)
    file_name: str | None = None
    mime_type: str | None = None


@dataclass
class _Upload:
    file_name: str | None
    data: bytes = field(repr=False)
    content_type: str | None


class _ApiError(Exception):
    """An error answer of the Bot API."""

    def __init__(self, code: int, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.retry_after = retry_after

    def response(self) -> web.Response:
        body: dict[str, Any] = {
            "ok": False,
            "error_code": self.code,
            "description": self.description,
        }
        if self.retry_after is not None:
            body["parameters"] = {"retry_after": self.retry_after}
        return web.json_response(body, status=self.code)


@dataclass
class _Described:
    """A result that Telegram answers with a description next to it (setWebhook...)."""

    result: Any
    description: str


class _Bucket:
    """A token bucket: `rate` per second, at most `capacity` saved up."""

    def __init__(self, rate: float, capacity: float) -> None:
        self.rate = rate
        self.capacity = max(1.0, capacity)
        self.tokens = self.capacity
        self.stamp = time.monotonic()

    def wait(self, now: float) -> float:
        elapsed = max(0.0, now - self.stamp)
        self.tokens = min(self.capacity, self.tokens + elapsed * self.rate)
        self.stamp = max(self.stamp, now)
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate

    def take(self) -> None:
        self.tokens -= 1


class FakeTelegram(FakeServer):
    """A Bot API server on 127.0.0.1 with a free port; `base_url` is the connector's api_base."""

    # A long poll whose client went away stops waiting at once.
    runner_options = {"handler_cancellation": True}

    def __init__(self, token: str = "123456:TEST-token", bot_username: str = "test_bot") -> None:
        super().__init__()
        self.token = token
        self.bot_username = bot_username
        self.bot_id = int(token.partition(":")[0])
        self.sent: list[SentMessage] = []
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.downloads: list[str] = []
        self.rate_limited_count = 0
        self.webhook_url = ""
        self.webhook_secret: str | None = None
        self.webhook_max_connections = 40
        self.webhook_drop_pending_updates = False
        self.allowed_updates: list[str] | None = None
        self._closing = False
        self._updates: list[dict[str, Any]] = []
        self._next_update_id = 100_001
        self._wakeup = asyncio.Event()
        self._poll_generation = 0
        self._message_ids: dict[str, int] = {}
        self._customer_messages: dict[tuple[str, int], dict[str, Any]] = {}
        self._deleted_customer_messages: set[tuple[str, int]] = set()
        self._media: dict[tuple[str, int], dict[str, Any]] = {}
        self._files: dict[str, _File] = {}
        self._blocked: set[str] = set()
        self._failures: dict[str, deque[_ApiError]] = {}
        self._storm_until = 0.0
        self._per_chat: tuple[float, float] | None = None
        self._global: _Bucket | None = None
        self._chat_buckets: dict[str, _Bucket] = {}
        self._methods: dict[str, tuple[str, Callable[..., Any]]] = {
            name.lower(): (name, handler)
            for name, handler in {
                "getMe": self._get_me,
                "getUpdates": self._get_updates,
                "setWebhook": self._set_webhook,
                "deleteWebhook": self._delete_webhook,
                "getWebhookInfo": self._get_webhook_info,
                "sendMessage": self._send_message,
                "sendPhoto": self._send_photo,
                "sendDocument": self._send_document,
                "getFile": self._get_file,
                "editMessageText": self._edit_message_text,
                "editMessageCaption": self._edit_message_caption,
                "deleteMessage": self._delete_message,
            }.items()
        }

    # ------------------------------------------------------------------ lifecycle

    def app(self) -> web.Application:
        """The Bot API methods and the file downloads."""
        # Bot uploads may be up to 50 MB; aiohttp refuses bodies over 1 MB by default.
        app = web.Application(client_max_size=UPLOAD_LIMIT + 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._api)
        app.router.add_get("/file/bot{token}/{path:.+}", self._download)
        return app

    async def stop(self) -> None:
        """Answer waiting long polls and shut the server down."""
        self._closing = True
        self._wake()
        await super().stop()

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:PORT`, without a trailing slash: the Bot API's root."""
        return self.root_url

    # ------------------------------------------------------------------ records

    def messages_to(self, chat_id: int | str) -> list[SentMessage]:
        """The messages the bot sent to a chat and did not delete, oldest first."""
        key = _chat_key(chat_id)
        return [m for m in self.sent if m.chat_id == key and not m.deleted]

    def count(self, method: str) -> int:
        """How many calls of a method arrived (failed ones included)."""
        wanted = method.lower()
        return sum(1 for name, _ in self.calls if name.lower() == wanted)

    def params_of(self, method: str) -> list[dict[str, Any]]:
        """The parameters of every call of a method, oldest first."""
        wanted = method.lower()
        return [params for name, params in self.calls if name.lower() == wanted]

    # ------------------------------------------------------------------ behaviour switches

    def block(self, chat_id: int | str) -> None:
        """The customer blocks the bot: sends to the chat answer 403."""
        self._blocked.add(_chat_key(chat_id))

    def unblock(self, chat_id: int | str) -> None:
        """The customer unblocks the bot."""
        self._blocked.discard(_chat_key(chat_id))

    def fail_next(
        self,
        method: str,
        error_code: int,
        description: str,
        retry_after: int | None = None,
        times: int = 1,
    ) -> None:
        """The next `times` calls of `method` answer this error instead of working."""
        queue = self._failures.setdefault(method.lower(), deque())
        for _ in range(times):
            queue.append(_ApiError(error_code, description, retry_after))

    def set_rate_limits(
        self,
        per_chat: float | None,
        global_: float | None,
        burst: float = 1,
        *,
        global_burst: float | None = None,
    ) -> None:
        """Token buckets on the send methods: per chat (`burst` at once) and over all chats.

        The global bucket saves up `global_burst` sends, by default one second's worth
        (at least `burst`), which is what a sender pacing itself at `global_` per second needs.
        """
        self._per_chat = None if per_chat is None else (per_chat, burst)
        self._chat_buckets.clear()
        if global_ is None:
            self._global = None
        else:
            capacity = global_burst if global_burst is not None else max(burst, global_)
            self._global = _Bucket(global_, capacity)

    def storm(self, seconds: float) -> None:
        """For `seconds`, every send method answers 429 with the time left as retry_after."""
        self._storm_until = time.monotonic() + seconds

    # ------------------------------------------------------------------ inbound side

    def text_update(
        self,
        chat_id: int | str,
        text: str,
        *,
        first_name: str = "Ann",
        last_name: str | None = None,
        username: str | None = None,
        language_code: str | None = "en",
        message_id: int | None = None,
    ) -> dict[str, Any]:
        """An Update with a customer's text message in their private chat with the bot."""
        message = self._customer_message(
            chat_id, first_name, last_name, username, language_code, message_id
        )
        self._with_sample("text", message)
        message["text"] = text
        if text.startswith("/"):
            # Telegram marks a leading command as an entity, offsets in UTF-16 code units.
            command = text.split(maxsplit=1)[0]
            message["entities"] = [
                {"type": "bot_command", "offset": 0, "length": _utf16_len(command)}
            ]
        return self._update("message", message)

    def sample_update(
        self,
        name: str,
        chat_id: int | str,
        *,
        first_name: str = "Ann",
        last_name: str | None = None,
        username: str | None = None,
        language_code: str | None = "en",
        message_id: int | None = None,
        data: bytes | None = None,
    ) -> dict[str, Any]:
        """A corpus sample (tests/corpus/telegram/<name>.json) as this customer's Update.

        The sample's content stays as Telegram sent it; its chat, sender, message_id and date
        become the customer's, and getFile serves its files (`data`, or a few bytes).
        """
        message = self._customer_message(
            chat_id, first_name, last_name, username, language_code, message_id
        )
        kind = self._with_sample(name, message)
        if kind == "edited_message":
            message["date"] -= 60
            message["edit_date"] = message["date"] + 60
        reply = message.get("reply_to_message")
        if isinstance(reply, dict):
            reply["chat"] = copy.deepcopy(message["chat"])
        self.serve_files(message, data)
        return self._update(kind, message)

    def serve_files(self, message: dict[str, Any], data: bytes | None = None) -> None:
        """Give the files of a message (a sample's) ids that getFile serves, with `data`."""
        payload = data if data is not None else b"sample file"
        found = [(key, message.get(key)) for key in _FILE_FIELDS]
        found += [("photo", size) for size in message.get("photo") or []]
        for key, item in found:
            if not isinstance(item, dict):
                continue
            folder, extension = _FILE_FIELDS.get(key, ("photos", ".jpg"))
            if key == "sticker" and (item.get("is_animated") or item.get("is_video")):
                # Sticker formats: .WEBP still, .TGS animated, .WEBM video (Sticker).
                extension = ".tgs" if item.get("is_animated") else ".webm"
            stored = self._register_file(
                payload,
                folder,
                prefix=str(item.get("file_id", "BQAC"))[:4],
                file_name=item.get("file_name"),
                mime_type=item.get("mime_type"),
                extension=extension,
            )
            item.update(
                file_id=stored.file_id, file_unique_id=stored.file_unique_id, file_size=len(payload)
            )

    def photo_update(
        self,
        chat_id: int | str,
        data: bytes,
        caption: str | None = None,
        *,
        first_name: str = "Ann",
        last_name: str | None = None,
        username: str | None = None,
        language_code: str | None = "en",
        message_id: int | None = None,
    ) -> dict[str, Any]:
        """An Update with a photo; getFile serves `data` for the largest size."""
        message = self._customer_message(
            chat_id, first_name, last_name, username, language_code, message_id
        )
        message["photo"] = self._photo_sizes(data)
        if caption is not None:
            message["caption"] = caption
        return self._update("message", message)

    def document_update(
        self,
        chat_id: int | str,
        data: bytes,
        file_name: str,
        mime_type: str,
        caption: str | None = None,
        *,
        first_name: str = "Ann",
        last_name: str | None = None,
        username: str | None = None,
        language_code: str | None = "en",
        message_id: int | None = None,
    ) -> dict[str, Any]:
        """An Update with a file sent as a document; getFile serves `data`."""
        message = self._customer_message(
            chat_id, first_name, last_name, username, language_code, message_id
        )
        stored = self._register_file(
            data, "documents", prefix="BQAC", file_name=file_name, mime_type=mime_type
        )
        message["document"] = {
            "file_name": file_name,
            "mime_type": mime_type,
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": len(data),
        }
        if caption is not None:
            message["caption"] = caption
        return self._update("message", message)

    def edit_update(self, chat_id: int | str, message_id: int, new_text: str) -> dict[str, Any]:
        """An Update saying the customer edited the text (or caption) of one of their messages."""
        key = (_chat_key(chat_id), message_id)
        original = self._customer_messages.get(key)
        if original is None:
            message = self._customer_message(chat_id, "Ann", None, None, "en", message_id)
            message["date"] -= 60
            message["text"] = new_text
        else:
            message = copy.deepcopy(original)
            message.pop("entities", None)
            if "text" in message:
                message["text"] = new_text
            else:
                message["caption"] = new_text
        message["edit_date"] = max(int(time.time()), message["date"] + 1)
        self._customer_messages[key] = copy.deepcopy(message)
        return self._update("edited_message", message)

    # ------------------------------------------------------------------ replies and reactions

    def reply_update(self, chat_id: int | str, text: str, to: int, **kw: Any) -> dict[str, Any]:
        """An Update with a customer's text answering message `to` of the chat (the bot's or
        their own): `reply_to_message` is that message as sent, without a reply of its own."""
        update = self.text_update(chat_id, text, **kw)
        chat = _chat_key(chat_id)
        sent = next((m for m in self.messages_to(chat) if m.message_id == to), None)
        if sent is not None:
            earlier = self._message_json(sent)
        else:
            earlier = copy.deepcopy(self._customer_messages[(chat, to)])
        earlier.pop("reply_to_message", None)
        update["message"]["reply_to_message"] = earlier
        self._customer_messages[(chat, update["message"]["message_id"])] = copy.deepcopy(
            update["message"]
        )
        return update

    def reaction_update(
        self, chat_id: int | str, message_id: int, new: Sequence[str], old: Sequence[str] = ()
    ) -> dict[str, Any]:
        """An Update with `message_reaction` (after the documented sample): the customer's
        emoji on message `message_id` of the chat changed from `old` to `new`."""
        sample = load_sample("message_reaction_added")
        changed = sample["message_reaction"]
        chat = int(_chat_key(chat_id))
        changed.update(
            chat={"id": chat, "first_name": "Ann", "type": "private"},
            user={"id": chat, "is_bot": False, "first_name": "Ann", "language_code": "en"},
            message_id=message_id,
            date=int(time.time()),
            old_reaction=[{"type": "emoji", "emoji": e} for e in old],
            new_reaction=[{"type": "emoji", "emoji": e} for e in new],
        )
        update = {"update_id": self._next_update_id, "message_reaction": changed}
        self._next_update_id += 1
        return update

    def push(self, update: Mapping[str, Any]) -> None:
        """Queue an Update for getUpdates (and wake a waiting long poll)."""
        self._updates.append(copy.deepcopy(dict(update)))
        self._wake()

    @property
    def pending_updates(self) -> list[dict[str, Any]]:
        """The updates getUpdates has not had confirmed yet."""
        return copy.deepcopy(self._updates)

    async def deliver(
        self,
        update: Mapping[str, Any] | bytes,
        *,
        secret: str | None = _UNSET,
        url: str | None = None,
    ) -> int:
        """POST an Update to the webhook as Telegram does; return the HTTP status of the answer.

        `secret` defaults to the secret_token given to setWebhook (None: no header at all);
        `url` defaults to the webhook's url. Bytes are sent as they are (malformed bodies).
        """
        target = url or self.webhook_url
        if not target:
            msg = "no webhook is set and no url was given"
            raise RuntimeError(msg)
        session = self._session()
        if secret is _UNSET:
            secret = self.webhook_secret
        headers = {"Content-Type": "application/json"}
        if secret is not None:
            headers[SECRET_HEADER] = secret
        body = update if isinstance(update, bytes) else json.dumps(update).encode()
        async with session.post(target, data=body, headers=headers) as response:
            await response.read()
            return response.status

    # ------------------------------------------------------------------ HTTP

    async def _api(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return _ApiError(401, "Unauthorized").response()
        entry = self._methods.get(request.match_info["method"].lower())
        if entry is None:
            return _ApiError(404, "Not Found: method not found").response()
        name, handler = entry
        try:
            params, files = await _read_params(request)
            self.calls.append((name, copy.deepcopy(params)))
            self._before(name, params)
            result = handler(params, files)
            if asyncio.iscoroutine(result):
                result = await result
        except _ApiError as exc:
            if exc.code == 429:
                self.rate_limited_count += 1
            return exc.response()
        if isinstance(result, _Described):
            body = {"ok": True, "result": result.result, "description": result.description}
        else:
            body = {"ok": True, "result": result}
        return web.json_response(body)

    async def _download(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return _ApiError(401, "Unauthorized").response()
        path = request.match_info["path"]
        for stored in self._files.values():
            if stored.file_path == path:
                self.downloads.append(path)
                return web.Response(body=stored.data, content_type="application/octet-stream")
        return _ApiError(404, "Not Found").response()

    def _before(self, name: str, params: Mapping[str, Any]) -> None:
        """Injected failures, storms and rate limits, checked before the method runs."""
        queue = self._failures.get(name.lower())
        if queue:
            planned = queue.popleft()
            raise _ApiError(planned.code, planned.description, planned.retry_after)
        if name.lower() not in _SEND_METHODS:
            return
        now = time.monotonic()
        if now < self._storm_until:
            raise _too_many(self._storm_until - now)
        buckets: list[_Bucket] = []
        if self._global is not None:
            buckets.append(self._global)
        if self._per_chat is not None:
            try:
                chat = _chat_id(params)
            except _ApiError:
                chat = None  # the method itself answers the bad chat_id
            if chat is not None:
                rate, burst = self._per_chat
                buckets.append(self._chat_buckets.setdefault(chat, _Bucket(rate, burst)))
        wait = max((bucket.wait(now) for bucket in buckets), default=0.0)
        if wait > 0:
            raise _too_many(wait)
        for bucket in buckets:
            bucket.take()

    # ------------------------------------------------------------------ methods

    def _get_me(self, params: Mapping[str, Any], files: Mapping[str, _Upload]) -> Any:
        return {
            **self._bot_user(),
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }

    async def _get_updates(self, params: Mapping[str, Any], files: Mapping[str, _Upload]) -> Any:
        if self.webhook_url:
            raise _ApiError(409, _WEBHOOK_ACTIVE)
        offset = _int(params, "offset", 0)
        limit = min(100, max(1, _int(params, "limit", 100)))
        timeout = max(0, _int(params, "timeout", 0))
        allowed = _json_param(params, "allowed_updates")
        if allowed is not None:
            self.allowed_updates = list(allowed)
        # A new getUpdates ends one still waiting (Telegram answers the old one 409).
        self._poll_generation += 1
        generation = self._poll_generation
        self._wake()
        self._confirm(offset)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            batch = self._deliverable(limit)
            remaining = deadline - loop.time()
            if batch or self._closing or remaining <= 0:
                return batch
            event = self._wakeup
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), remaining)
            if self._poll_generation != generation:
                raise _ApiError(409, _TERMINATED)
            if self.webhook_url:
                raise _ApiError(409, _WEBHOOK_ACTIVE)

    def _set_webhook(self, params: Mapping[str, Any], files: Mapping[str, _Upload]) -> Any:
        url = _str(params, "url") or ""
        secret = _str(params, "secret_token")
        if secret is not None and not _SECRET_TOKEN.fullmatch(secret):
            raise _ApiError(400, "Bad Request: secret token contains unallowed characters")
        # Telegram insists on HTTPS (ports 443, 80, 88, 8443); the fake takes http:// too so that
        # tests can point it at a local server.
        if url and not url.startswith(("https://", "http://")):
            raise _ApiError(400, "Bad Request: bad webhook: An HTTPS URL must be provided")
        allowed = _json_param(params, "allowed_updates")
        max_connections = _int(params, "max_connections", 40)
        if not 1 <= max_connections <= 100:
            raise _ApiError(400, "Bad Request: bad webhook: max_connections must be in 1-100")
        drop = _bool(params, "drop_pending_updates")
        if drop:
            self._updates.clear()
        was_set = bool(self.webhook_url)
        self.webhook_url = url
        self.webhook_secret = secret if url else None
        self.webhook_max_connections = max_connections
        self.webhook_drop_pending_updates = drop
        if allowed is not None:
            self.allowed_updates = list(allowed)
        self._wake()
        if url:
            return _Described(True, "Webhook was set")
        return _Described(True, "Webhook was deleted" if was_set else "Webhook is already deleted")

    def _delete_webhook(self, params: Mapping[str, Any], files: Mapping[str, _Upload]) -> Any:
        if _bool(params, "drop_pending_updates"):
            self._updates.clear()
        was_set = bool(self.webhook_url)
        self.webhook_url = ""
        self.webhook_secret = None
        return _Described(True, "Webhook was deleted" if was_set else "Webhook is already deleted")

    def _get_webhook_info(self, params: Mapping[str, Any], files: Mapping[str, _Upload]) -> Any:
        info: dict[str, Any] = {
            "url": self.webhook_url,
            "has_custom_certificate": False,
            "pending_update_count": len(self._updates),
        }
        if self.webhook_url:
            info["max_connections"] = self.webhook_max_connections
            if self.allowed_updates:
                info["allowed_updates"] = list(self.allowed_updates)
        return info

    def _send_message(self, params: Mapping[str, Any], files: Mapping[str, _Upload]) -> Any:
        chat = _chat_id(params)
        text, entities = _shown(params, "text")
        _check_text(text)
        self._check_blocked(chat)
        sent = SentMessage(
            method="sendMessage",
            chat_id=chat,
            message_id=self._next_message_id(chat),
            text=text,
            entities=entities,
            parse_mode=_str(params, "parse_mode"),
            reply_markup=_json_param(params, "reply_markup"),
            date=int(time.time()),
        )
        self.sent.append(sent)
        return self._message_json(sent)

    def _send_photo(self, params: Mapping[str, Any], files: Mapping[str, _Upload]) -> Any:
        return self._send_media("sendPhoto", "photo", params, files)

    def _send_document(self, params: Mapping[str, Any], files: Mapping[str, _Upload]) -> Any:
        return self._send_media("sendDocument", "document", params, files)

    def _send_media(
        self, method: str, kind: str, params: Mapping[str, Any], files: Mapping[str, _Upload]
    ) -> Any:
        chat = _chat_id(params)
        caption, entities = _shown(params, "caption")
        if caption is not None and len(caption) > CAPTION_LIMIT:
            raise _ApiError(400, "Bad Request: message caption is too long")
        upload = files.get(kind)
        data: bytes | None
        stored: _File | None = None
        if upload is not None:
            if not upload.data:
                raise _ApiError(400, "Bad Request: file must be non-empty")
            if len(upload.data) > UPLOAD_LIMIT:
                raise _ApiError(413, "Request Entity Too Large")
            file_name, data, mime_type = upload.file_name, upload.data, upload.content_type
        else:
            ref = _str(params, kind)
            if not ref:
                raise _ApiError(400, f"Bad Request: there is no {kind} in the request")
            if ref.startswith(("http://", "https://")):
                # Telegram would download the URL; the fake only notes it.
                file_name, data, mime_type = None, None, None
            elif ref in self._files:
                stored = self._files[ref]
                file_name, data, mime_type = stored.file_name, stored.data, stored.mime_type
            else:
                raise _ApiError(400, "Bad Request: wrong file identifier/HTTP URL specified")
        self._check_blocked(chat)
        message_id = self._next_message_id(chat)
        sent = SentMessage(
            method=method,
            chat_id=chat,
            message_id=message_id,
            caption=caption,
            file_name=file_name,
            file_bytes=data,
            mime_type=mime_type,
            entities=entities,
            parse_mode=_str(params, "parse_mode"),
            reply_markup=_json_param(params, "reply_markup"),
            date=int(time.time()),
        )
        payload = data or b"\0"
        if kind == "photo":
            sizes = self._photo_sizes(payload)
            sent.file_id = sizes[-1]["file_id"]
            self._media[(chat, message_id)] = {"photo": sizes}
        else:
            mime = _document_mime(file_name, mime_type)
            if stored is None:
                stored = self._register_file(
                    payload, "documents", prefix="BQAC", file_name=file_name, mime_type=mime
                )
            document: dict[str, Any] = {
                "file_id": stored.file_id,
                "file_unique_id": stored.file_unique_id,
                "file_size": len(stored.data),
                "mime_type": mime,
            }
            if file_name:
                document["file_name"] = file_name
            sent.file_id = stored.file_id
            self._media[(chat, message_id)] = {"document": document}
        self.sent.append(sent)
        return self._message_json(sent)

    def _get_file(self, params: Mapping[str, Any], files: Mapping[str, _Upload]) -> Any:
        file_id = _str(params, "file_id")
        stored = self._files.get(file_id or "")
        if stored is None:
            raise _ApiError(400, "Bad Request: invalid file_id")
        if len(stored.data) > DOWNLOAD_LIMIT:
            raise _ApiError(400, "Bad Request: file is too big")
        return {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": len(stored.data),
            "file_path": stored.file_path,
        }

    def _edit_message_text(self, params: Mapping[str, Any], files: Mapping[str, _Upload]) -> Any:
        chat, message_id = _chat_id(params), _message_id(params)
        text, entities = _shown(params, "text")
        _check_text(text)
        assert text is not None
        sent = self._editable(chat, message_id)
        if sent.method != "sendMessage":
            raise _ApiError(400, "Bad Request: there is no text in the message to edit")
        return self._apply_edit(sent, text, params, entities)

    def _edit_message_caption(self, params: Mapping[str, Any], files: Mapping[str, _Upload]) -> Any:
        chat, message_id = _chat_id(params), _message_id(params)
        shown, entities = _shown(params, "caption")
        caption = shown or ""
        if len(caption) > CAPTION_LIMIT:
            raise _ApiError(400, "Bad Request: message caption is too long")
        sent = self._editable(chat, message_id)
        if sent.method == "sendMessage":
            raise _ApiError(400, "Bad Request: there is no caption in the message to edit")
        return self._apply_edit(sent, caption, params, entities)

    def _delete_message(self, params: Mapping[str, Any], files: Mapping[str, _Upload]) -> Any:
        chat, message_id = _chat_id(params), _message_id(params)
        for sent in self.sent:
            if sent.chat_id == chat and sent.message_id == message_id and not sent.deleted:
                sent.deleted = True
                return True
        key = (chat, message_id)
        # A bot may delete incoming messages in a private chat too.
        if key in self._customer_messages and key not in self._deleted_customer_messages:
            self._deleted_customer_messages.add(key)
            return True
        raise _ApiError(400, "Bad Request: message to delete not found")

    # ------------------------------------------------------------------ helpers

    def _editable(self, chat: str, message_id: int) -> SentMessage:
        for sent in self.sent:
            if sent.chat_id == chat and sent.message_id == message_id and not sent.deleted:
                return sent
        if (chat, message_id) in self._customer_messages:
            raise _ApiError(400, "Bad Request: message can't be edited")
        raise _ApiError(400, "Bad Request: message to edit not found")

    def _apply_edit(
        self,
        sent: SentMessage,
        text: str,
        params: Mapping[str, Any],
        entities: list[dict[str, Any]],
    ) -> Any:
        markup = _json_param(params, "reply_markup")
        if text == sent.current_text and markup == sent.reply_markup and entities == sent.entities:
            raise _ApiError(400, NOT_MODIFIED)
        sent.edited_texts.append(text)
        sent.entities = entities
        sent.reply_markup = markup
        message = self._message_json(sent)
        message["edit_date"] = int(time.time())
        return message

    def _check_blocked(self, chat: str) -> None:
        if chat in self._blocked:
            raise _ApiError(403, "Forbidden: bot was blocked by the user")

    def _wake(self) -> None:
        self._wakeup.set()
        self._wakeup = asyncio.Event()

    def _confirm(self, offset: int) -> None:
        """An offset confirms every earlier update; a negative one keeps only the last -offset."""
        if offset > 0:
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
        elif offset < 0:
            self._updates = self._updates[offset:]

    def _deliverable(self, limit: int) -> list[dict[str, Any]]:
        """Pending updates of allowed kinds; others are dropped as Telegram never makes them."""
        allowed = set(self.allowed_updates or ())
        kept = []
        for update in self._updates:
            kind = next((key for key in update if key != "update_id"), "")
            if (kind in allowed) if allowed else (kind not in _NOT_BY_DEFAULT):
                kept.append(update)
        self._updates = kept
        return copy.deepcopy(kept[:limit])

    def _next_message_id(self, chat: str) -> int:
        # One message_id sequence per chat, shared by the customer's and the bot's messages.
        self._message_ids[chat] = self._message_ids.get(chat, 0) + 1
        return self._message_ids[chat]

    def _customer_message(
        self,
        chat_id: int | str,
        first_name: str,
        last_name: str | None,
        username: str | None,
        language_code: str | None,
        message_id: int | None,
    ) -> dict[str, Any]:
        chat = _chat_key(chat_id)
        if message_id is None:
            message_id = self._next_message_id(chat)
        else:
            self._message_ids[chat] = max(self._message_ids.get(chat, 0), message_id)
        user: dict[str, Any] = {"id": int(chat), "is_bot": False, "first_name": first_name}
        chat_json: dict[str, Any] = {"id": int(chat), "first_name": first_name}
        if last_name:
            user["last_name"] = chat_json["last_name"] = last_name
        if username:
            user["username"] = chat_json["username"] = username
        if language_code:
            user["language_code"] = language_code
        chat_json["type"] = "private"
        return {
            "message_id": message_id,
            "from": user,
            "chat": chat_json,
            "date": int(time.time()),
        }

    def _with_sample(self, name: str, message: dict[str, Any]) -> str:
        """Give a customer's message the content of a corpus sample; return the sample's kind."""
        sample = load_sample(name)
        [kind] = [key for key in sample if key != "update_id"]
        message.update({k: v for k, v in sample[kind].items() if k not in _HEAD_FIELDS})
        return kind

    def _update(self, kind: str, message: dict[str, Any]) -> dict[str, Any]:
        key = (str(message["chat"]["id"]), message["message_id"])
        self._customer_messages[key] = copy.deepcopy(message)
        update = {"update_id": self._next_update_id, kind: message}
        self._next_update_id += 1
        return update

    def _photo_sizes(self, data: bytes) -> list[dict[str, Any]]:
        """Two PhotoSize entries, smallest first; the thumbnail serves a cut of the bytes."""
        thumb = self._register_file(
            data[: max(1, len(data) // 10)], "photos", prefix="AgAC", mime_type="image/jpeg"
        )
        full = self._register_file(data, "photos", prefix="AgAC", mime_type="image/jpeg")
        return [
            {
                "file_id": thumb.file_id,
                "file_unique_id": thumb.file_unique_id,
                "file_size": len(thumb.data),
                "width": 90,
                "height": 68,
            },
            {
                "file_id": full.file_id,
                "file_unique_id": full.file_unique_id,
                "file_size": len(full.data),
                "width": 1280,
                "height": 960,
            },
        ]

    def _register_file(
        self,
        data: bytes,
        folder: str,
        *,
        prefix: str,
        file_name: str | None = None,
        mime_type: str | None = None,
        extension: str = "",
    ) -> _File:
        number = len(self._files)
        suffix = extension
        if folder == "photos":
            suffix = ".jpg"
        elif file_name and "." in file_name:
            suffix = "." + re.sub(r"[^A-Za-z0-9]", "", file_name.rpartition(".")[2])
        stored = _File(
            file_id=prefix + secrets.token_urlsafe(24),
            file_unique_id="AQAD" + secrets.token_urlsafe(8),
            file_path=f"{folder}/file_{number}{suffix}",
            data=data,
            file_name=file_name,
            mime_type=mime_type,
        )
        self._files[stored.file_id] = stored
        return stored

    def _bot_user(self) -> dict[str, Any]:
        return {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": "Test Bot",
            "username": self.bot_username,
        }

    def _message_json(self, sent: SentMessage) -> dict[str, Any]:
        chat_json: dict[str, Any] = {"id": _chat_json_id(sent.chat_id), "type": "private"}
        message: dict[str, Any] = {
            "message_id": sent.message_id,
            "from": self._bot_user(),
            "chat": chat_json,
            "date": sent.date,
        }
        if sent.method == "sendMessage":
            message["text"] = sent.current_text
        else:
            message.update(copy.deepcopy(self._media[(sent.chat_id, sent.message_id)]))
            if sent.current_text:
                message["caption"] = sent.current_text
        if sent.reply_markup is not None:
            message["reply_markup"] = sent.reply_markup
        return message


_WEBHOOK_ACTIVE = (
    "Conflict: can't use getUpdates method while webhook is active; "
    "use deleteWebhook to delete the webhook first"
)
_TERMINATED = (
    "Conflict: terminated by other getUpdates request; "
    "make sure that only one bot instance is running"
)


async def _read_params(request: web.Request) -> tuple[dict[str, Any], dict[str, _Upload]]:
    """Parameters from the query string and the body (JSON, urlencoded or multipart)."""
    params: dict[str, Any] = dict(request.query)
    files: dict[str, _Upload] = {}
    if not request.body_exists:
        return params, files
    content_type = request.content_type
    if content_type == "application/json":
        try:
            body = json.loads(await request.read())
        except ValueError:
            raise _ApiError(400, "Bad Request: can't parse JSON object") from None
        if not isinstance(body, dict):
            raise _ApiError(400, "Bad Request: JSON object expected")
        params.update(body)
    elif content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.post()
        for key, value in form.items():
            if isinstance(value, web.FileField):
                files[key] = _Upload(value.filename, value.file.read(), value.content_type)
            elif isinstance(value, bytes):
                files[key] = _Upload(None, value, None)
            else:
                params[key] = value
    return params, files


def _too_many(wait: float) -> _ApiError:
    seconds = max(1, math.ceil(wait))
    return _ApiError(429, f"Too Many Requests: retry after {seconds}", retry_after=seconds)


def _chat_key(chat_id: int | str) -> str:
    return str(int(chat_id)) if re.fullmatch(r"\s*-?\d+\s*", str(chat_id)) else str(chat_id)


def _chat_json_id(chat: str) -> int | str:
    return int(chat) if re.fullmatch(r"-?\d+", chat) else chat


def _chat_id(params: Mapping[str, Any]) -> str:
    value = params.get("chat_id")
    if value is None or value == "" or isinstance(value, bool):
        raise _ApiError(400, "Bad Request: chat_id is empty")
    if isinstance(value, int) or (isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value)):
        return str(int(value))
    # "@channelusername" names channels; no customer chat has one.
    raise _ApiError(400, "Bad Request: chat not found")


def _message_id(params: Mapping[str, Any]) -> int:
    if params.get("message_id") in (None, ""):
        raise _ApiError(400, "Bad Request: message identifier is not specified")
    return _int(params, "message_id", 0)


def _str(params: Mapping[str, Any], key: str) -> str | None:
    value = params.get(key)
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise _ApiError(400, f'Bad Request: field "{key}" must be of type String')


def _int(params: Mapping[str, Any], key: str, default: int) -> int:
    value = params.get(key)
    if value is None or value == "":
        return default
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        return int(value)
    raise _ApiError(400, f'Bad Request: field "{key}" must be of type Integer')


def _bool(params: Mapping[str, Any], key: str) -> bool:
    value = params.get(key)
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1")
    return bool(value)


def _json_param(params: Mapping[str, Any], key: str) -> Any:
    """Arrays and objects arrive JSON-serialized in query strings and forms."""
    value = params.get(key)
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            raise _ApiError(400, f"Bad Request: can't parse {key} JSON object") from None
    return value


def _shown(params: Mapping[str, Any], key: str) -> tuple[str | None, list[dict[str, Any]]]:
    """A text or caption as the customer sees it, after the message's parse mode."""
    given = _str(params, key)
    mode = (_str(params, "parse_mode") or "").upper()
    if given is None or not mode:
        return given, []
    if mode != "HTML":
        raise _ApiError(400, f"Bad Request: unsupported parse_mode {mode!r} in this fake")
    try:
        parsed = parse_html(given)
    except ParseError as exc:
        raise _ApiError(400, f"Bad Request: can't parse entities: {exc}") from None
    return parsed.text, parsed.entities


def _check_text(text: str | None) -> None:
    # Telegram trims surrounding whitespace; nothing left means an empty message.
    if text is None or not text.strip():
        raise _ApiError(400, "Bad Request: message text is empty")
    if len(text) > TEXT_LIMIT:
        raise _ApiError(400, "Bad Request: message is too long")


def _document_mime(file_name: str | None, given: str | None) -> str:
    if given and given != "application/octet-stream":
        return given
    guessed = mimetypes.guess_type(file_name or "")[0]
    return guessed or "application/octet-stream"


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2
