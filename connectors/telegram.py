"""Telegram Bot API connector: customers write to the bot in private chats.

Inbound updates arrive by webhook or long polling and are parsed once, in `parse_update`;
outbound calls go to `{api_base}/bot<token>/<method>`, and every Bot API error is turned into
the bridge's error tree in `_raise_for`. The bot token is part of every URL, so no URL and no
exception text that may hold one is ever logged.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import mimetypes
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar, Literal, NoReturn

import aiohttp
from aiohttp import web

from bridge import bodies
from bridge.config import Settings, TelegramSettings
from bridge.errors import (
    BadRequest,
    ConfigError,
    PermanentError,
    RateLimited,
    TransientError,
)
from bridge.protocols import Connector, InboundSink, MediaHost
from bridge.types import (
    TELEGRAM,
    AccountId,
    Attachment,
    ChatId,
    CustomerProfile,
    ExternalMessageId,
    FileData,
    InboundEdit,
    InboundEvent,
    InboundMessage,
    MediaKind,
    OutboundMessage,
    Platform,
    RateLimit,
    Template,
)
from connectors.chatlinks import chat_link
from connectors.markup import telegram_html, telegram_parts
from connectors.telegram_replies import external_id as _external_id
from connectors.telegram_replies import moment as _moment
from connectors.telegram_replies import parse_reaction, reply_of
from connectors.telegram_styles import shown_styled
from connectors.telegram_text import shared_line, shown_text, sticker_file
from connectors.wire import (
    hand_over,
    int_or_none,
    json_object,
    opt_str,
    storable,
    unreachable,
    utf16_len,
)

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/webhooks/telegram"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
# message_reaction is sent only to a bot that asks for it by name in allowed_updates
# (core.telegram.org/bots/api#update).
ALLOWED_UPDATES = ("message", "edited_message", "message_reaction")

# Bot API limits (core.telegram.org/bots/api): message text 1-4096 characters, captions up to
# 1024, uploads by bots up to 50 MB, sendPhoto up to 10 MB (bigger images go as documents).
TEXT_LIMIT = 4096
CAPTION_LIMIT = 1024
UPLOAD_LIMIT = 50 * 1024 * 1024
PHOTO_LIMIT = 10 * 1024 * 1024
# sendPhoto re-encodes to a still JPEG: an animated GIF would lose its animation, SVG is refused.
_NOT_AS_PHOTO = frozenset({"image/gif", "image/svg+xml"})
# Deep-link payloads are 1-64 characters of A-Za-z0-9_- (t.me/<bot>?start=<payload>).
_START = re.compile(r"/start(?:@\w+)?(?:\s+(?P<payload>[A-Za-z0-9_-]{1,64}))?\s*")

_CALL_TIMEOUT = aiohttp.ClientTimeout(total=30, connect=10)
_UPLOAD_TIMEOUT = aiohttp.ClientTimeout(total=300, connect=10)
# A long poll is held open by Telegram for `timeout` seconds; the client waits a bit longer.
_POLL_GRACE = 15.0


def parse_update(payload: Mapping[str, Any], account: AccountId) -> InboundEvent | None:
    """Turn one Bot API Update into a bridge event; None for updates the bridge ignores."""
    if not isinstance(payload, Mapping):
        msg = "an update must be a JSON object"
        raise BadRequest(msg)
    if int_or_none(payload.get("update_id")) is None:
        msg = "the update has no integer update_id"
        raise BadRequest(msg)
    if not storable(payload):
        msg = "the update holds a lone surrogate, which is no text"
        raise BadRequest(msg)
    if "message" in payload:
        return _parse_message(payload["message"], account)
    if "edited_message" in payload:
        return _parse_edit(payload["edited_message"], account)
    if "message_reaction" in payload:
        return parse_reaction(payload["message_reaction"], account)
    # channel_post, my_chat_member, callback_query...: not customer messages.
    return None


def _parse_message(raw: Any, account: AccountId) -> InboundMessage | None:
    message, chat_id, message_id, date = _message_head(raw, "message")
    if not _is_private(message):
        return None
    shared = shared_line(message)
    text = "\n".join(part for part in (shared, shown_text(message)) if part)
    styled = shown_styled(message)
    attachments = _attachments(message)
    if not text and not attachments:
        return None  # service messages, polls, games...
    start_payload = None
    raw_text = opt_str(message, "text")
    if raw_text is not None:
        match = _START.fullmatch(raw_text)
        if match is not None:
            start_payload = match.group("payload")
    reply_to, quoted = reply_of(message, chat_id)
    return InboundMessage(
        platform=TELEGRAM,
        account=account,
        chat_id=chat_id,
        external_id=_external_id(chat_id, message_id),
        profile=_profile(message, chat_id),
        text=text,
        sent_at=date,
        attachments=attachments,
        start_payload=start_payload,
        reply_to=reply_to,
        quoted=quoted,
        styled="\n".join(part for part in (shared, styled) if part) if styled else None,
    )


def _parse_edit(raw: Any, account: AccountId) -> InboundEdit | None:
    message, chat_id, message_id, date = _message_head(raw, "edited_message")
    if not _is_private(message):
        return None
    text = shown_text(message, edit=True)
    if text is None:
        return None  # live location updates also arrive as edited_message
    edit_date = int_or_none(message.get("edit_date"))
    edited_at = date if edit_date is None else _moment(edit_date, "edited_message.edit_date")
    return InboundEdit(
        platform=TELEGRAM,
        account=account,
        chat_id=chat_id,
        external_id=_external_id(chat_id, message_id),
        text=text,
        edited_at=edited_at,
        styled=shown_styled(message, edit=True),
    )


def _message_head(raw: Any, field: str) -> tuple[Mapping[str, Any], ChatId, int, datetime]:
    """The fields every Message has: the message, its chat id, its message_id and its date."""
    if not isinstance(raw, Mapping):
        msg = f"{field} is not an object"
        raise BadRequest(msg)
    chat = raw.get("chat")
    chat_id = int_or_none(chat.get("id")) if isinstance(chat, Mapping) else None
    message_id = int_or_none(raw.get("message_id"))
    date = int_or_none(raw.get("date"))
    if chat_id is None or message_id is None or date is None:
        msg = f"{field} lacks chat.id, message_id or date"
        raise BadRequest(msg)
    return raw, ChatId(str(chat_id)), message_id, _moment(date, f"{field}.date")


def _is_private(message: Mapping[str, Any]) -> bool:
    chat = message["chat"]
    # Groups, supergroups and channels are not support conversations; bots sending to the bot
    # (e.g. via another bot's API) are not customers either.
    sender = message.get("from")
    from_bot = isinstance(sender, Mapping) and sender.get("is_bot") is True
    return chat.get("type") == "private" and not from_bot


def _profile(message: Mapping[str, Any], chat_id: ChatId) -> CustomerProfile:
    sender = message.get("from")
    # In a private chat the chat carries the same names when `from` is absent.
    person: Mapping[str, Any] = sender if isinstance(sender, Mapping) else message["chat"]
    names = [opt_str(person, "first_name"), opt_str(person, "last_name")]
    display = " ".join(name.strip() for name in names if name and name.strip())
    username = opt_str(person, "username")
    return CustomerProfile(
        display_name=display or (f"@{username}" if username else f"Telegram user {chat_id}"),
        username=username,
        language=opt_str(person, "language_code"),
    )


def _attachments(message: Mapping[str, Any]) -> tuple[Attachment, ...]:
    photo = message.get("photo")
    if isinstance(photo, list) and photo:
        sizes = [size for size in photo if isinstance(size, Mapping)]
        if not sizes:
            msg = "photo has no PhotoSize"
            raise BadRequest(msg)
        # PhotoSizes come smallest first; pick the largest by pixels to be independent of order.
        largest = max(sizes, key=lambda s: (_area(s), int_or_none(s.get("file_size")) or 0))
        # Photos are re-encoded by Telegram as JPEG.
        return (
            Attachment(
                kind=MediaKind.IMAGE,
                ref=_file_id(largest, "photo"),
                mime_type="image/jpeg",
                size=int_or_none(largest.get("file_size")),
            ),
        )
    # An animation message carries a `document` too; the document is the file to forward.
    for field, kind, default_mime in (
        ("document", MediaKind.DOCUMENT, None),
        ("video", MediaKind.VIDEO, "video/mp4"),
        ("video_note", MediaKind.VIDEO, "video/mp4"),
        ("audio", MediaKind.AUDIO, None),
        ("voice", MediaKind.AUDIO, "audio/ogg"),
    ):
        media = message.get(field)
        if isinstance(media, Mapping):
            return (
                Attachment(
                    kind=kind,
                    ref=_file_id(media, field),
                    filename=opt_str(media, "file_name"),
                    mime_type=opt_str(media, "mime_type") or default_mime,
                    size=int_or_none(media.get("file_size")),
                ),
            )
    sticker = message.get("sticker")
    if isinstance(sticker, Mapping):
        return sticker_file(sticker, _file_id(sticker, "sticker"))
    return ()


def _area(size: Mapping[str, Any]) -> int:
    return (int_or_none(size.get("width")) or 0) * (int_or_none(size.get("height")) or 0)


def _file_id(media: Mapping[str, Any], field: str) -> str:
    file_id = media.get("file_id")
    if not isinstance(file_id, str) or not file_id:
        msg = f"{field} has no file_id"
        raise BadRequest(msg)
    return file_id


def _message_id_of(external_id: ExternalMessageId) -> int:
    _, _, tail = external_id.rpartition(":")
    if not tail.isdigit():
        raise PermanentError("400", f"not a Telegram message id: {external_id}")
    return int(tail)


def _sent_message_id(result: Any) -> int:
    """The message_id of the Message a send method answered with."""
    message_id = int_or_none(result.get("message_id")) if isinstance(result, Mapping) else None
    if message_id is None:
        msg = "telegram answered a send without a message_id"
        raise TransientError(msg)
    return message_id


def _edited_html(text: str, limit: int) -> str:
    """An edit's text as HTML: whole when it shows within `limit`, else what fits and "…"."""
    # An edit replaces one message, so it cannot be sent in parts; the limit counts what
    # the customer sees (Bot API, editMessageText), and a cut leaves no tag or marker open.
    parts = telegram_parts(text, limit)
    if len(parts) <= 1:
        return parts[0] if parts else telegram_html(text)
    return telegram_parts(text, limit - 1)[0] + "…"


def _raise_for(status: int, body: Mapping[str, Any]) -> NoReturn:
    """Map a Bot API error answer to the bridge's error tree."""
    code = int_or_none(body.get("error_code")) or status
    description = str(body.get("description") or f"HTTP {code}")
    parameters = body.get("parameters")
    params: Mapping[str, Any] = parameters if isinstance(parameters, Mapping) else {}
    lowered = description.lower()
    if code == 429 or status == 429:
        retry_after = params.get("retry_after")
        if not isinstance(retry_after, int | float) or isinstance(retry_after, bool):
            found = re.search(r"retry after (\d+)", lowered)
            retry_after = int(found.group(1)) if found else 1
        raise RateLimited(float(retry_after), f"telegram: {description}")
    if "bot was blocked by the user" in lowered:
        raise PermanentError("403", "the user blocked the bot")
    if "user is deactivated" in lowered:
        raise PermanentError("403", "the user deleted their Telegram account")
    if "chat not found" in lowered:
        raise PermanentError("400", "the chat no longer exists")
    if "file is too big" in lowered:
        raise PermanentError("400", "the file is larger than the 20 MB bots may download")
    if code == 401:
        raise PermanentError("401", "the bot token was rejected")
    if 400 <= code < 500:
        raise PermanentError(str(code), description)
    raise TransientError(f"telegram: {code} {description}")


class TelegramConnector:
    """One Telegram bot: updates by webhook or long polling in, Bot API calls out."""

    platform: ClassVar[Platform] = TELEGRAM

    def __init__(
        self,
        settings: TelegramSettings,
        http: aiohttp.ClientSession,
        sink: InboundSink,
        *,
        mode: Literal["webhook", "polling"],
        public_url: str | None,
    ) -> None:
        if settings.token is None:
            raise ConfigError("telegram.token", "is missing")
        token = settings.token.get_secret_value()
        bot_id, sep, rest = token.partition(":")
        if not (sep and bot_id.isdigit() and rest):
            raise ConfigError(
                "telegram.token", "must look like <bot id>:<secret>, as from BotFather"
            )
        if mode == "webhook" and settings.webhook_secret is None:
            raise ConfigError(
                "telegram.webhook_secret",
                "webhook mode needs a secret so that forged updates are refused",
            )
        self.account = AccountId(bot_id)
        self.username: str | None = None
        self._settings = settings
        self._http = http
        self._sink = sink
        self._mode = mode
        self._public_url = public_url
        base = settings.api_base.rstrip("/")
        self._api = f"{base}/bot{token}/"
        self._files = f"{base}/file/bot{token}/"
        self._secret = (
            settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
        )
        self._poll_task: asyncio.Task[None] | None = None
        # The polling loop's backoff after a failure: first wait, doubling up to the maximum.
        self.backoff_first = 1.0
        self.backoff_max = 30.0

    # ------------------------------------------------------------------ lifecycle

    def routes(self) -> Sequence[web.RouteDef]:
        """The webhook endpoint, in webhook mode only."""
        if self._mode != "webhook":
            return []
        # The secret token comes in a header: without one, nothing of the body is read.
        screen = bodies.requires(SECRET_HEADER, status=401)
        return [web.post(WEBHOOK_PATH, bodies.guarded(self._handle_webhook, screen=screen))]

    async def start(self) -> None:
        """Learn the bot's username, then register the webhook (polling: see start_loop)."""
        me = await self._call("getMe")
        self.username = opt_str(me, "username") if isinstance(me, Mapping) else None
        if self._mode == "webhook":
            if self._public_url:
                await self._call(
                    "setWebhook",
                    {
                        "url": self._public_url.rstrip("/") + WEBHOOK_PATH,
                        "secret_token": self._secret,
                        "allowed_updates": list(ALLOWED_UPDATES),
                    },
                )
                log.info("telegram bot @%s: webhook registered", self.username)
            else:
                log.info("telegram bot @%s: no public URL, webhook left as it is", self.username)
            return

    async def start_loop(self) -> None:
        """Long polling (one process at a time: Telegram answers a second getUpdates 409)."""
        if self._mode != "polling" or self._poll_task is not None:
            return
        # getUpdates answers 409 while a webhook is set (core.telegram.org/bots/api#getupdates).
        await self._call("deleteWebhook", {"drop_pending_updates": False})
        self._poll_task = asyncio.create_task(self._poll_loop(), name="telegram-poll")
        log.info("telegram bot @%s: long polling", self.username)

    async def probe(self) -> str:
        """A harmless authenticated call (getMe) for `run.py check`: who the bot is."""
        me = await self._call("getMe")
        username = opt_str(me, "username") if isinstance(me, Mapping) else None
        return f"bot @{username}" if username else "the bot token was accepted"

    async def stop(self) -> None:
        """Stop the polling loop, if any."""
        await self.stop_loop()

    async def stop_loop(self) -> None:
        """Stop the polling loop, if any."""
        task, self._poll_task = self._poll_task, None
        if task is None:
            return
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise

    # ------------------------------------------------------------------ inbound

    async def _handle_webhook(self, request: web.Request) -> web.Response:
        given = request.headers.get(SECRET_HEADER)
        if given is None:
            return web.Response(status=401, text="missing secret token")
        assert self._secret is not None  # checked in __init__ for webhook mode
        if not hmac.compare_digest(given.encode("utf-8", "replace"), self._secret.encode("utf-8")):
            return web.Response(status=403, text="wrong secret token")
        try:
            payload = json.loads(await request.read())
            event = parse_update(payload, self.account)
        except (ValueError, RecursionError, BadRequest) as exc:
            log.warning("telegram webhook: refused a malformed update: %s", exc)
            return web.Response(status=400, text="not a valid update")
        if event is None:
            # Group chats, bots, service messages, other update kinds: nothing for staff.
            kinds = ", ".join(sorted(str(key) for key in payload if key != "update_id"))
            log.debug("telegram webhook: ignored an update (%s)", kinds or "empty")
            return web.Response(text="ignored")
        if (failed := await hand_over(self._sink, [event], "telegram")) is not None:
            return failed
        return web.Response(text="ok")

    async def _poll_loop(self) -> None:
        offset: int | None = None
        failures = 0
        while True:
            try:
                offset = await self._poll_once(offset)
                failures = 0
            except RateLimited as exc:
                log.warning("telegram getUpdates rate limited; waiting %gs", exc.retry_after)
                await asyncio.sleep(exc.retry_after)
            except Exception as exc:
                delay = min(self.backoff_max, self.backoff_first * 2**failures)
                failures = min(failures + 1, 16)  # keeps 2**failures a small number
                log.warning(
                    "telegram polling failed (%s: %s); retrying in %gs",
                    type(exc).__name__,
                    exc,
                    delay,
                    exc_info=not isinstance(exc, TransientError | PermanentError),
                )
                await asyncio.sleep(delay)

    async def _poll_once(self, offset: int | None) -> int | None:
        """One getUpdates; hand the batch to the sink and return the offset that confirms it."""
        params: dict[str, Any] = {
            "timeout": self._settings.poll_timeout,
            "allowed_updates": list(ALLOWED_UPDATES),
        }
        if offset is not None:
            params["offset"] = offset
        timeout = aiohttp.ClientTimeout(total=self._settings.poll_timeout + _POLL_GRACE, connect=10)
        result = await self._call("getUpdates", params, timeout=timeout)
        if not isinstance(result, list):
            msg = "telegram getUpdates did not answer a list"
            raise TransientError(msg)
        batch: list[InboundEvent] = []
        last = None
        for payload in result:
            update_id = int_or_none(payload.get("update_id")) if isinstance(payload, dict) else None
            if update_id is not None:
                last = update_id if last is None else max(last, update_id)
            try:
                event = parse_update(payload, self.account)
            except BadRequest as exc:
                log.warning("telegram: skipping malformed update %s: %s", update_id, exc)
                continue
            if event is not None:
                batch.append(event)
        if batch:
            await self._sink(batch)
        # Only now confirm: updates the sink did not commit come again with the next call.
        return offset if last is None else last + 1

    # ------------------------------------------------------------------ outbound

    async def send(self, msg: OutboundMessage) -> ExternalMessageId:
        """Send text and/or files; return the id of the message that carries the text."""
        chat = msg.chat_id
        text = msg.text if msg.text.strip() else ""
        if not text and not msg.files:
            raise PermanentError("400", "the message has neither text nor files")
        carrier: int | None = None
        caption: str | None = None
        if msg.files and utf16_len(text) <= CAPTION_LIMIT:
            caption = text or None
        elif text:
            # Cut after the HTML is read, where the 4096 characters are counted, so that each
            # part's tags stay whole.
            for part in telegram_parts(text, TEXT_LIMIT):
                message_id = await self._send_html(chat, part)
                carrier = message_id if carrier is None else carrier
        if carrier is None and not msg.files:
            raise PermanentError("400", "the message shows no text")
        for file in msg.files:
            message_id = await self._send_file(chat, file, caption)
            carrier = message_id if carrier is None else carrier
            caption = None
        assert carrier is not None
        return _external_id(chat, carrier)

    async def _send_html(self, chat: ChatId, text: str) -> int:
        params = {"chat_id": chat, "text": text, "parse_mode": "HTML"}
        result = await self._call("sendMessage", params)
        return _sent_message_id(result)

    async def _send_file(self, chat: ChatId, file: FileData, caption: str | None) -> int:
        if len(file.data) > UPLOAD_LIMIT:
            raise PermanentError("413", "the file is larger than the 50 MB bots may send")
        as_photo = (
            file.kind is MediaKind.IMAGE
            and len(file.data) <= PHOTO_LIMIT
            and file.mime_type not in _NOT_AS_PHOTO
        )
        method, field = ("sendPhoto", "photo") if as_photo else ("sendDocument", "document")
        form = aiohttp.FormData()
        form.add_field("chat_id", chat)
        if caption:
            form.add_field("caption", telegram_html(caption))
            form.add_field("parse_mode", "HTML")
        form.add_field(field, file.data, filename=file.filename, content_type=file.mime_type)
        result = await self._call(method, form=form, timeout=_UPLOAD_TIMEOUT)
        return _sent_message_id(result)

    async def edit(self, chat_id: ChatId, external_id: ExternalMessageId, text: str) -> None:
        """Change a sent message's text (or its caption, when it is a file)."""
        message_id = _message_id_of(external_id)
        params: dict[str, Any] = {
            "chat_id": chat_id,
            "message_id": message_id,
            "text": _edited_html(text, TEXT_LIMIT),
            "parse_mode": "HTML",
        }
        try:
            await self._call("editMessageText", params)
        except PermanentError as exc:
            if "message is not modified" in exc.reason:
                return
            if "no text in the message" not in exc.reason:
                raise
            # send() puts short texts into a file's caption; those are edited as captions.
            caption = {
                "chat_id": chat_id,
                "message_id": message_id,
                "caption": _edited_html(text, CAPTION_LIMIT),
                "parse_mode": "HTML",
            }
            try:
                await self._call("editMessageCaption", caption)
            except PermanentError as again:
                if "message is not modified" not in again.reason:
                    raise

    async def delete(self, chat_id: ChatId, external_id: ExternalMessageId) -> None:
        """Delete a sent message; one that is already gone counts as deleted."""
        params = {"chat_id": chat_id, "message_id": _message_id_of(external_id)}
        try:
            await self._call("deleteMessage", params)
        except PermanentError as exc:
            if "message to delete not found" not in exc.reason:
                raise

    async def fetch(self, attachment: Attachment) -> FileData:
        """Download a file a customer sent (getFile, then the file URL)."""
        result = await self._call("getFile", {"file_id": attachment.ref})
        file_path = opt_str(result, "file_path") if isinstance(result, Mapping) else None
        if not file_path:
            msg = "telegram getFile answered without a file_path"
            raise TransientError(msg)
        try:
            async with self._http.get(self._files + file_path, timeout=_UPLOAD_TIMEOUT) as resp:
                status = resp.status
                data = await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise unreachable("telegram", "file download", exc, detail=True) from None
        if status != 200:
            _raise_for(status, json_object(data) or {"description": "file download failed"})
        filename = attachment.filename or file_path.rpartition("/")[2] or "file"
        mime_type = (
            attachment.mime_type or mimetypes.guess_type(filename)[0] or "application/octet-stream"
        )
        return FileData(kind=attachment.kind, filename=filename, data=data, mime_type=mime_type)

    # ------------------------------------------------------------------ policy

    def window_refusal(self, last_inbound_at: datetime | None, now: datetime) -> str | None:
        """A bot may write to anyone who started it, at any time: no window."""
        return None

    async def templates(self) -> Sequence[Template]:
        """Telegram has no message templates."""
        return ()

    def chat_link(self, payload: str | None = None) -> str | None:
        """t.me/<bot>?start=<payload>, once the bot's username is known (after start)."""
        return chat_link(TELEGRAM, self.username, payload) if self.username else None

    # ------------------------------------------------------------------ rate limits

    def rate_keys(self, chat_id: ChatId) -> tuple[str, ...]:
        """The bot's overall key and the chat's key."""
        return (f"telegram:{self.account}", f"telegram:{self.account}:chat:{chat_id}")

    def rate_limits(self) -> Mapping[str, RateLimit]:
        """About 30 messages a second overall and 1 a second per chat (Bot API FAQ)."""
        settings = self._settings
        return {
            f"telegram:{self.account}": RateLimit(
                rate=settings.rate_global, burst=settings.rate_global
            ),
            f"telegram:{self.account}:chat:*": RateLimit(
                rate=settings.rate_per_chat, burst=settings.burst_per_chat
            ),
        }

    # ------------------------------------------------------------------ HTTP

    async def _call(
        self,
        method: str,
        params: Mapping[str, Any] | None = None,
        *,
        form: aiohttp.FormData | None = None,
        timeout: aiohttp.ClientTimeout = _CALL_TIMEOUT,
    ) -> Any:
        """Call a Bot API method; return its result or raise the bridge's error."""
        body = {key: value for key, value in (params or {}).items() if value is not None}
        try:
            if form is not None:
                request = self._http.post(self._api + method, data=form, timeout=timeout)
            else:
                request = self._http.post(self._api + method, json=body, timeout=timeout)
            async with request as resp:
                status = resp.status
                raw = await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise unreachable("telegram", method, exc, detail=True) from None
        answer = json_object(raw)
        if answer is None:
            msg = f"telegram {method}: HTTP {status} without a JSON answer"
            raise TransientError(msg)
        if answer.get("ok") is True:
            return answer.get("result")
        _raise_for(status, answer)


def build(
    settings: Settings, http: aiohttp.ClientSession, sink: InboundSink, media: MediaHost
) -> list[Connector]:
    """The Telegram connector, when a token is configured."""
    if not settings.telegram.enabled:
        return []
    connector = TelegramConnector(
        settings.telegram,
        http,
        sink,
        mode=settings.telegram_mode,
        public_url=settings.bridge.public_url,
    )
    return [connector]
