"""WhatsApp Cloud API connector: customers write to a WhatsApp Business phone number.

Inbound messages and delivery statuses arrive by one webhook for every configured number
(`WhatsAppWebhook`), signed with the Meta app's secret, and are parsed once, in
`parse_webhook`. Outbound calls go to the Graph API with the number's access token as a bearer
header, and every Graph error is turned into the bridge's error tree in `_raise_for`. Tokens
travel only in headers, and no header, token or media URL is ever logged.
"""

from __future__ import annotations

import logging
import mimetypes
import re
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, NoReturn
from urllib.parse import quote, urlsplit

import aiohttp
from aiohttp import web

from bridge.config import Settings, WhatsAppAccount
from bridge.errors import (
    BadRequest,
    PermanentError,
    RateLimited,
    TransientError,
    WindowClosed,
)
from bridge.protocols import Connector, InboundSink, MediaHost
from bridge.types import (
    WHATSAPP,
    AccountId,
    Attachment,
    ChatId,
    CustomerProfile,
    DeliveryStatus,
    ExternalMessageId,
    FileData,
    InboundEvent,
    InboundMessage,
    MediaKind,
    OutboundMessage,
    Platform,
    RateLimit,
    StatusUpdate,
    Template,
)
from connectors import meta
from connectors.chatlinks import chat_link
from connectors.wire import (
    FinalSends,
    SharedWebhook,
    aware,
    hand_over,
    int_or_none,
    json_object,
    opt_str,
    retry_after,
    split_text,
    storable,
    unreachable,
    utf16_len,
)

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/webhooks/whatsapp"

# Cloud API limits (developers.facebook.com/docs/whatsapp/cloud-api/reference/messages):
# text bodies up to 4096 characters, media captions up to 1024.
TEXT_LIMIT = 4096
CAPTION_LIMIT = 1024
# Supported media (…/cloud-api/reference/media#supported-media-types): images only as JPEG or
# PNG (WebP is for stickers only), video as MP4 or 3GPP, audio as AAC, AMR, MP3, M4A or OGG/Opus;
# images up to 5 MB, audio and video up to 16 MB, documents up to 100 MB. A file that does not
# fit its own type is sent as a document, which takes any of these.
_IMAGE_TYPES = frozenset({"image/jpeg", "image/png"})
_VIDEO_TYPES = frozenset({"video/mp4", "video/3gpp"})
_AUDIO_TYPES = frozenset({"audio/aac", "audio/amr", "audio/mpeg", "audio/mp4", "audio/ogg"})
_IMAGE_LIMIT = 5 * 1024 * 1024
_AUDIO_VIDEO_LIMIT = 16 * 1024 * 1024
_DOCUMENT_LIMIT = 100 * 1024 * 1024
# Only images, videos and documents take a caption; audio does not.
_CAPTIONED = frozenset({"image", "video", "document"})
_LINK = re.compile(r"https?://\S", re.IGNORECASE)

# The customer service window: free-form messages only within 24 hours of the customer's last
# message; outside it only approved templates (…/docs/whatsapp/pricing#customer-service-windows).
WINDOW = timedelta(hours=24)
_TEMPLATE_PAGES = 50

_CALL_TIMEOUT = aiohttp.ClientTimeout(total=30, connect=10)
_UPLOAD_TIMEOUT = aiohttp.ClientTimeout(total=300, connect=10)

_MEDIA_FIELDS: Mapping[str, MediaKind] = {
    "image": MediaKind.IMAGE,
    # Stickers are WebP images; staff see them as pictures.
    "sticker": MediaKind.IMAGE,
    "document": MediaKind.DOCUMENT,
    "audio": MediaKind.AUDIO,
    "video": MediaKind.VIDEO,
}
_STATUSES: Mapping[str, DeliveryStatus] = {
    "sent": DeliveryStatus.SENT,
    "delivered": DeliveryStatus.DELIVERED,
    "read": DeliveryStatus.READ,
    "failed": DeliveryStatus.FAILED,
}
_EXTENSIONS: Mapping[str, str] = {
    "image/jpeg": "jpg",
    "image/png": "png",
    "image/webp": "webp",
    "audio/ogg": "ogg",
    "audio/mpeg": "mp3",
    "audio/aac": "aac",
    "audio/amr": "amr",
    "audio/mp4": "m4a",
    "video/mp4": "mp4",
    "video/3gpp": "3gp",
    "application/pdf": "pdf",
    "text/plain": "txt",
}

# Graph and Cloud API error codes (…/cloud-api/support/error-codes) in words for staff; used for
# send errors and for the errors of `failed` status webhooks alike.
ERROR_WORDS: Mapping[int, str] = {
    1: "the WhatsApp API had an unknown error",
    2: "the WhatsApp API service is temporarily unavailable",
    3: "the app lacks the capability or permission for this call",
    4: "the app made too many calls; WhatsApp asks to slow down",
    10: "the app lacks the permission for this call",
    100: "WhatsApp refused a parameter of the message as invalid",
    190: "the access token has expired or is invalid",
    200: "the app lacks the permission for this call",
    368: "the number is temporarily blocked for violating WhatsApp's policies",
    80007: "the WhatsApp Business Account reached its rate limit",
    130429: "the number reached its message throughput limit",
    130472: "Meta withheld the message: the customer's number is part of an experiment",
    131000: "WhatsApp failed to send the message for an unknown reason",
    131005: "WhatsApp denied access for this call",
    131008: "a required parameter of the message is missing",
    131009: "a parameter value of the message is not valid",
    131016: "the WhatsApp service is temporarily unavailable",
    131021: "the message was addressed to the business's own number",
    131026: (
        "the message could not be delivered: the number may not be on WhatsApp, may use an old"
        " app version, or has not accepted WhatsApp's new terms"
    ),
    131031: "the WhatsApp Business Account is locked",
    131042: "the WhatsApp Business Account has a payment problem",
    131045: "the number's certificate is not valid",
    131047: ("the customer has not written for more than 24 hours; only a template can be sent"),
    131048: "WhatsApp limits this number for spam: too many of its messages were blocked",
    131049: "Meta did not deliver this marketing message to keep engagement healthy",
    131050: "the customer stopped marketing messages from this business",
    131051: "WhatsApp does not support this message type",
    131052: "WhatsApp could not download the media the customer sent",
    131053: "WhatsApp could not upload or process the media file",
    131056: "too many messages to the same customer in a short time (pair rate limit)",
    131057: "the WhatsApp Business Account is in maintenance mode",
    132000: "the number of template parameters does not match the template",
    132001: "the template does not exist in that language or is not approved",
    132005: "the template text is too long once the parameters are filled in",
    132007: "the template's content violates a WhatsApp policy",
    132012: "the template parameters are not in the format the template expects",
    132015: "the template is paused for low quality",
    132016: "the template is disabled for low quality",
    133004: "the WhatsApp server is temporarily unavailable",
    133010: "the business phone number is not registered on WhatsApp",
}
# How long to wait when WhatsApp says slow down without a Retry-After header: throughput
# (130429) frees up within a second; the pair limit allows about one message per 6 s to one
# customer; app (4) and WABA (80007) limits are per hour; the spam limit needs a long pause.
_RATE_LIMITS: Mapping[int, float] = {130429: 1.0, 131056: 6.0, 4: 60.0, 80007: 60.0, 131048: 300.0}
_TRANSIENT_CODES = frozenset({1, 2, 131000, 131016, 131057, 133004})
# Numbers sent as text: ASCII digits only ("²".isdigit() is true, int("²") fails) and few of them.
_MAX_DIGITS = 20
_DIGITS = re.compile(rf"[0-9]{{1,{_MAX_DIGITS}}}")
_DEFAULT_RETRY = 60.0


# ---------------------------------------------------------------------- inbound parsing


def parse_webhook(payload: Any, accounts: Collection[str]) -> list[InboundEvent]:
    """Turn one Cloud API webhook body into bridge events for the numbers in `accounts`."""
    if not isinstance(payload, Mapping) or payload.get("object") != "whatsapp_business_account":
        msg = "not a whatsapp_business_account webhook"
        raise BadRequest(msg)
    if not storable(payload):
        msg = "the webhook holds a lone surrogate, which is no text"
        raise BadRequest(msg)
    entries = payload.get("entry")
    if not isinstance(entries, list):
        msg = "the webhook has no entry list"
        raise BadRequest(msg)
    events: list[InboundEvent] = []
    for entry in entries:
        changes = entry.get("changes") if isinstance(entry, Mapping) else None
        if not isinstance(changes, list):
            msg = "an entry has no changes list"
            raise BadRequest(msg)
        for change in changes:
            if not isinstance(change, Mapping):
                msg = "a change is not an object"
                raise BadRequest(msg)
            # Other fields (message_template_status_update, account_update…) are not messages.
            if change.get("field") != "messages":
                continue
            events.extend(_parse_value(change.get("value"), accounts))
    return events


def _parse_value(value: Any, accounts: Collection[str]) -> list[InboundEvent]:
    if not isinstance(value, Mapping):
        msg = "a messages change has no value object"
        raise BadRequest(msg)
    metadata = value.get("metadata")
    number_id = metadata.get("phone_number_id") if isinstance(metadata, Mapping) else None
    if not isinstance(number_id, str) or not number_id:
        msg = "a messages change lacks metadata.phone_number_id"
        raise BadRequest(msg)
    if number_id not in accounts:
        return []
    account = AccountId(number_id)
    names = _contact_names(value.get("contacts"))
    events: list[InboundEvent] = []
    for raw in _list(value, "messages"):
        message = _parse_message(raw, account, names)
        if message is not None:
            events.append(message)
    for raw in _list(value, "statuses"):
        status = _parse_status(raw, account)
        if status is not None:
            events.append(status)
    return events


def _list(obj: Mapping[str, Any], key: str) -> list[Any]:
    value = obj.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        msg = f"value.{key} is not a list"
        raise BadRequest(msg)
    return value


def _contact_names(contacts: Any) -> dict[str, str]:
    """wa_id → the profile name the customer set, from `value.contacts`."""
    names: dict[str, str] = {}
    if not isinstance(contacts, list):
        return names
    for contact in contacts:
        if not isinstance(contact, Mapping):
            continue
        wa_id = contact.get("wa_id")
        profile = contact.get("profile")
        name = profile.get("name") if isinstance(profile, Mapping) else None
        if isinstance(wa_id, str) and isinstance(name, str) and name.strip():
            names[wa_id] = name.strip()
    return names


def _parse_message(raw: Any, account: AccountId, names: Mapping[str, str]) -> InboundMessage | None:
    if not isinstance(raw, Mapping):
        msg = "a message is not an object"
        raise BadRequest(msg)
    sender, message_id = raw.get("from"), raw.get("id")
    if (
        not isinstance(sender, str)
        or not sender
        or not isinstance(message_id, str)
        or not message_id
    ):
        msg = "a message lacks from or id"
        raise BadRequest(msg)
    sent_at = _timestamp(raw.get("timestamp"), "a message")
    content = _content(raw)
    if content is None:
        return None
    text, attachments = content
    return InboundMessage(
        platform=WHATSAPP,
        account=account,
        chat_id=ChatId(sender),
        # wamids are unique across WhatsApp, so they are the external id as they are.
        external_id=ExternalMessageId(message_id),
        profile=CustomerProfile(display_name=names.get(sender) or f"+{sender}", username=None),
        text=text,
        sent_at=sent_at,
        attachments=attachments,
    )


def _content(message: Mapping[str, Any]) -> tuple[str, tuple[Attachment, ...]] | None:
    """The text and attachments of a message; None for kinds the bridge does not forward."""
    kind = message.get("type")
    if kind == "text":
        body = _object(message, "text").get("body")
        if not isinstance(body, str):
            msg = "a text message has no text.body"
            raise BadRequest(msg)
        return body, ()
    if isinstance(kind, str) and kind in _MEDIA_FIELDS:
        return _media(kind, _object(message, kind))
    if kind == "button":
        # A quick-reply button of a template: `text` is its label, `payload` the developer's.
        button = _object(message, "button")
        label = opt_str(button, "text") or opt_str(button, "payload")
        if label is None:
            msg = "a button message has no text"
            raise BadRequest(msg)
        return label, ()
    if kind == "interactive":
        return _interactive(_object(message, "interactive"))
    if kind == "location":
        return _location(_object(message, "location")), ()
    if kind == "contacts":
        return _shared_contacts(message.get("contacts")), ()
    # reaction, unsupported, system, order, request_welcome…: nothing for staff to answer.
    return None


def _object(message: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = message.get(key)
    if not isinstance(value, Mapping):
        msg = f"a {key} message has no {key} object"
        raise BadRequest(msg)
    return value


def _media(kind: str, media: Mapping[str, Any]) -> tuple[str, tuple[Attachment, ...]]:
    media_id = media.get("id")
    if not isinstance(media_id, str) or not media_id:
        msg = f"a {kind} message has no media id"
        raise BadRequest(msg)
    mime_type = opt_str(media, "mime_type")
    if kind == "sticker" and mime_type is None:
        mime_type = "image/webp"
    attachment = Attachment(
        kind=_MEDIA_FIELDS[kind],
        ref=media_id,
        # Voice notes (`audio` with `voice: true`) and other media carry no file name.
        filename=opt_str(media, "filename") if kind == "document" else None,
        mime_type=mime_type,
        size=int_or_none(media.get("file_size")),
    )
    return opt_str(media, "caption") or "", (attachment,)


def _interactive(interactive: Mapping[str, Any]) -> tuple[str, tuple[Attachment, ...]] | None:
    kind = interactive.get("type")
    if kind not in ("button_reply", "list_reply"):
        return None  # nfm_reply (flows) and others
    reply = interactive.get(kind)
    title = opt_str(reply, "title") if isinstance(reply, Mapping) else None
    if title is None:
        msg = f"an interactive {kind} has no title"
        raise BadRequest(msg)
    return title, ()


def _location(location: Mapping[str, Any]) -> str:
    latitude, longitude = location.get("latitude"), location.get("longitude")
    if not _is_number(latitude) or not _is_number(longitude):
        msg = "a location message lacks latitude or longitude"
        raise BadRequest(msg)
    place = ", ".join(
        part.strip()
        for part in (opt_str(location, "name"), opt_str(location, "address"))
        if part and part.strip()
    )
    return f"[location] {latitude}, {longitude} {place}".rstrip()


def _shared_contacts(contacts: Any) -> str:
    if not isinstance(contacts, list):
        msg = "a contacts message has no contacts list"
        raise BadRequest(msg)
    lines: list[str] = []
    for card in contacts:
        if not isinstance(card, Mapping):
            msg = "a shared contact is not an object"
            raise BadRequest(msg)
        name = card.get("name")
        formatted = opt_str(name, "formatted_name") if isinstance(name, Mapping) else None
        phones = card.get("phones")
        numbers = [
            number
            for phone in (phones if isinstance(phones, list) else [])
            if isinstance(phone, Mapping)
            for number in [opt_str(phone, "phone") or opt_str(phone, "wa_id")]
            if number
        ]
        line = formatted or "(no name)"
        if numbers:
            line += ": " + ", ".join(numbers)
        lines.append(f"[contact] {line}")
    return "\n".join(lines) or "[contact]"


def _parse_status(raw: Any, account: AccountId) -> StatusUpdate | None:
    if not isinstance(raw, Mapping):
        msg = "a status is not an object"
        raise BadRequest(msg)
    word = raw.get("status")
    status = _STATUSES.get(word) if isinstance(word, str) else None
    if status is None:
        return None  # e.g. "deleted", "warning": nothing the bridge tracks
    message_id = raw.get("id")
    if not isinstance(message_id, str) or not message_id:
        msg = "a status lacks the message id"
        raise BadRequest(msg)
    at = _timestamp(raw.get("timestamp"), "a status")
    code: str | None = None
    reason: str | None = None
    errors = raw.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], Mapping):
        code, reason = _error_words(errors[0])
    return StatusUpdate(
        platform=WHATSAPP,
        account=account,
        external_id=ExternalMessageId(message_id),
        status=status,
        at=at,
        code=code,
        reason=reason,
    )


def _error_words(error: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """The code (as text) and a reason for staff from a Cloud API error object."""
    raw_code = error.get("code")
    number = int_or_none(raw_code)
    if number is None and isinstance(raw_code, str) and _DIGITS.fullmatch(raw_code):
        number = int(raw_code)
    code = str(number) if number is not None else None
    words = ERROR_WORDS.get(number) if number is not None else None
    if words is None:
        details = error.get("error_data")
        words = (
            opt_str(error, "title")
            or opt_str(error, "message")
            or (opt_str(details, "details") if isinstance(details, Mapping) else None)
        )
    return code, words


def _timestamp(value: Any, what: str) -> datetime:
    """A Cloud API timestamp: epoch seconds as a string (integers are taken too)."""
    seconds: int | None = None
    if isinstance(value, str) and value.isascii() and value.isdigit():
        if len(value) > _MAX_DIGITS:  # int() refuses thousands of digits with a ValueError
            msg = f"{what} has an impossible timestamp"
            raise BadRequest(msg)
        seconds = int(value)
    elif int_or_none(value) is not None:
        seconds = value
    if seconds is None:
        msg = f"{what} lacks a timestamp"
        raise BadRequest(msg)
    try:
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError):
        msg = f"{what} has an impossible timestamp"
        raise BadRequest(msg) from None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# ---------------------------------------------------------------------- the shared webhook


class WhatsAppWebhook:
    """The one webhook endpoint for every configured number (verification and events)."""

    def __init__(self, accounts: Sequence[WhatsAppAccount], sink: InboundSink) -> None:
        self._sink = sink
        self._verify_tokens = meta.verify_tokens(a.verify_token for a in accounts)
        self._secrets = meta.app_secrets((a.phone_number_id, a.app_secret) for a in accounts)

    def routes(self) -> Sequence[web.RouteDef]:
        """GET for Meta's subscription check, POST for the events."""
        return [
            web.get(WEBHOOK_PATH, self._handle_verify, allow_head=False),
            web.post(WEBHOOK_PATH, meta.guarded(self._handle_event)),
        ]

    async def _handle_verify(self, request: web.Request) -> web.Response:
        challenge = meta.hub_challenge(request.query, self._verify_tokens)
        if challenge is None:
            log.warning("whatsapp webhook: refused a verification with a wrong token or mode")
            return web.Response(status=403, text="verification refused")
        return web.Response(text=challenge, content_type="text/plain")

    async def _handle_event(self, request: web.Request) -> web.Response:
        events = await meta.signed_events(
            request, self._secrets, "whatsapp", parse_webhook, refusal="not a valid webhook"
        )
        if isinstance(events, web.Response):
            return events
        # A 500 makes WhatsApp deliver the body again, for up to 7 days.
        if (failed := await hand_over(self._sink, events, "whatsapp")) is not None:
            return failed
        return web.Response(text="ok")


# ---------------------------------------------------------------------- outbound helpers


def _base_mime(mime_type: str | None) -> str:
    return (mime_type or "").partition(";")[0].strip().lower()


def _send_type(file: FileData) -> str:
    """The message type a file goes as: its own kind when WhatsApp takes it so, else document."""
    mime, size = _base_mime(file.mime_type), len(file.data)
    if file.kind is MediaKind.IMAGE and mime in _IMAGE_TYPES and size <= _IMAGE_LIMIT:
        return "image"
    if file.kind is MediaKind.VIDEO and mime in _VIDEO_TYPES and size <= _AUDIO_VIDEO_LIMIT:
        return "video"
    if file.kind is MediaKind.AUDIO and mime in _AUDIO_TYPES and size <= _AUDIO_VIDEO_LIMIT:
        return "audio"
    return "document"


def _extension(mime: str) -> str:
    known = _EXTENSIONS.get(mime)
    if known:
        return known
    guessed = mimetypes.guess_extension(mime) if mime else None
    return guessed.lstrip(".") if guessed else "bin"


def _raise_for(
    status: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None
) -> NoReturn:
    """Map a Graph API error answer to the bridge's error tree."""
    raw_error = body.get("error")
    error: Mapping[str, Any] = raw_error if isinstance(raw_error, Mapping) else {}
    code = int_or_none(error.get("code"))
    message = opt_str(error, "message") or f"HTTP {status}"
    data = error.get("error_data")
    details = opt_str(data, "details") if isinstance(data, Mapping) else None
    words = ERROR_WORDS.get(code) if code is not None else None
    described = f"whatsapp: {message}" + (f" — {details}" if details else "")
    if code in _RATE_LIMITS or status == 429:
        default = _RATE_LIMITS.get(code, _DEFAULT_RETRY) if code is not None else _DEFAULT_RETRY
        wait = retry_after(headers)
        # 131056 is the pair limit (this one customer); the others cover the whole number.
        raise RateLimited(
            default if wait is None else wait, described, per_recipient=code == 131056
        )
    if code == 131047:
        raise WindowClosed("131047", ERROR_WORDS[131047])
    if code in _TRANSIENT_CODES:
        raise TransientError(described)
    if words is not None:
        if code in (100, 131008, 131009) and (details or message):
            # "Invalid parameter" alone does not say which one; Graph's details do.
            words = f"{words}: {details or message}"
        raise PermanentError(str(code), words)
    if status >= 500:
        raise TransientError(described)
    if status == 401:
        raise PermanentError(str(code or 190), ERROR_WORDS[190])
    raise PermanentError(str(code or status), details or message)


def _ago(elapsed: timedelta) -> str:
    hours = int(elapsed.total_seconds() // 3600)
    if hours < 48:
        return f"{hours} hours"
    return f"{hours // 24} days"


# ---------------------------------------------------------------------- the connector


class WhatsAppConnector(SharedWebhook, FinalSends):
    """One WhatsApp Business phone number on the Cloud API (no API edits or deletes a send)."""

    platform: ClassVar[Platform] = WHATSAPP
    display_name = "WhatsApp"
    ready_message = "whatsapp number %s ready"

    def __init__(
        self,
        account: WhatsAppAccount,
        http: aiohttp.ClientSession,
        sink: InboundSink,
        *,
        webhook: WhatsAppWebhook | None = None,
    ) -> None:
        self.account = AccountId(account.phone_number_id)
        self._settings = account
        self._http = http
        self._sink = sink
        self._webhook = webhook
        self._base = account.api_base.rstrip("/")
        self._auth = {"Authorization": f"Bearer {account.access_token.get_secret_value()}"}

    async def probe(self) -> str:
        """A harmless authenticated call for `run.py check`: the phone number's own node."""
        node = quote(self._settings.phone_number_id, safe="")
        answer = await self._call(
            "GET",
            f"{self._base}/{node}",
            params={"fields": "display_phone_number,verified_name"},
        )
        number = opt_str(answer, "display_phone_number") or self._settings.phone_number_id
        name = opt_str(answer, "verified_name")
        return f"number {number}" + (f" ({name})" if name else "")

    # ------------------------------------------------------------------ outbound

    async def send(self, msg: OutboundMessage) -> ExternalMessageId:
        """Send a template, or text and/or files; return the wamid of the text's message."""
        chat = msg.chat_id
        if msg.template is not None:
            template: dict[str, Any] = {
                "name": msg.template.name,
                "language": {"code": msg.template.language},
            }
            if msg.template.params:
                parameters = [{"type": "text", "text": p} for p in msg.template.params]
                template["components"] = [{"type": "body", "parameters": parameters}]
            return await self._send_message(chat, "template", template)
        text = msg.text if msg.text.strip() else ""
        if not text and not msg.files:
            raise PermanentError("empty", "the message has neither text nor files")
        send_types = [_send_type(file) for file in msg.files]
        caption_at: int | None = None
        if text and utf16_len(text) <= CAPTION_LIMIT:
            caption_at = next((i for i, t in enumerate(send_types) if t in _CAPTIONED), None)
        carrier: ExternalMessageId | None = None
        if text and caption_at is None:
            for chunk in split_text(text, TEXT_LIMIT):
                body: dict[str, Any] = {"body": chunk}
                if _LINK.search(chunk):
                    body["preview_url"] = True
                wamid = await self._send_message(chat, "text", body)
                carrier = carrier or wamid
        first: ExternalMessageId | None = None
        for index, (file, kind) in enumerate(zip(msg.files, send_types, strict=True)):
            media_id = await self._upload(file)
            media: dict[str, Any] = {"id": media_id}
            if index == caption_at:
                media["caption"] = text
            if kind == "document":
                media["filename"] = file.filename
            wamid = await self._send_message(chat, kind, media)
            first = first or wamid
            if index == caption_at:
                carrier = wamid
        result = carrier or first
        assert result is not None  # there was text or at least one file
        return result

    async def _send_message(self, chat: ChatId, kind: str, content: Any) -> ExternalMessageId:
        body = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": chat,
            "type": kind,
            kind: content,
        }
        answer = await self._call("POST", f"{self._base}/{self.account}/messages", json_body=body)
        messages = answer.get("messages")
        first = messages[0] if isinstance(messages, list) and messages else None
        wamid = first.get("id") if isinstance(first, Mapping) else None
        if not isinstance(wamid, str) or not wamid:
            msg = "whatsapp answered a send without a message id"
            raise TransientError(msg)
        return ExternalMessageId(wamid)

    async def _upload(self, file: FileData) -> str:
        if len(file.data) > _DOCUMENT_LIMIT:
            raise PermanentError("too_large", "the file is larger than the 100 MB WhatsApp takes")
        form = aiohttp.FormData()
        form.add_field("messaging_product", "whatsapp")
        form.add_field("type", file.mime_type)
        form.add_field("file", file.data, filename=file.filename, content_type=file.mime_type)
        answer = await self._call(
            "POST", f"{self._base}/{self.account}/media", form=form, timeout=_UPLOAD_TIMEOUT
        )
        media_id = answer.get("id")
        if not isinstance(media_id, str) or not media_id:
            msg = "whatsapp answered an upload without a media id"
            raise TransientError(msg)
        return media_id

    async def fetch(self, attachment: Attachment) -> FileData:
        """Download a file a customer sent: the media's URL from Graph, then its bytes."""
        info = await self._call("GET", f"{self._base}/{attachment.ref}")
        url = opt_str(info, "url")
        if not url:
            msg = "whatsapp answered a media lookup without a url"
            raise TransientError(msg)
        # The media URL (lookaside.fbsbx.com) wants the same bearer token and expires in 5 min.
        try:
            async with self._http.get(url, headers=self._auth, timeout=_UPLOAD_TIMEOUT) as resp:
                status = resp.status
                headers = dict(resp.headers)
                data = await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise unreachable("whatsapp", "media download", exc) from None
        if status != 200:
            _raise_for(status, json_object(data) or {}, headers)
        mime = _base_mime(opt_str(info, "mime_type") or attachment.mime_type)
        mime = mime or "application/octet-stream"
        filename = attachment.filename or f"{attachment.kind}-{attachment.ref}.{_extension(mime)}"
        return FileData(kind=attachment.kind, filename=filename, data=data, mime_type=mime)

    async def templates(self) -> Sequence[Template]:
        """The WABA's message templates, every page; none without a business_account_id."""
        waba = self._settings.business_account_id
        if not waba:
            return []
        found: list[Template] = []
        url: str | None = f"{self._base}/{waba}/message_templates"
        params: Mapping[str, str] | None = {"limit": "100"}
        seen: set[str] = set()
        for _ in range(_TEMPLATE_PAGES):
            if url is None or url in seen:
                break
            seen.add(url)
            answer = await self._call("GET", url, params=params)
            data = answer.get("data")
            for item in data if isinstance(data, list) else []:
                template = _template(item)
                if template is not None:
                    found.append(template)
            paging = answer.get("paging")
            following = opt_str(paging, "next") if isinstance(paging, Mapping) else None
            # `next` is absolute and carries its own query; the bearer token only goes to it
            # when it points at the Graph host the account is configured with.
            url, params = (following, None) if self._same_origin(following) else (None, None)
        return found

    def _same_origin(self, url: str | None) -> bool:
        if url is None:
            return False
        here, there = urlsplit(self._base), urlsplit(url)
        return (here.scheme, here.netloc) == (there.scheme, there.netloc)

    # ------------------------------------------------------------------ policy

    def window_refusal(self, last_inbound_at: datetime | None, now: datetime) -> str | None:
        """A sentence for staff when the 24-hour customer service window is closed."""
        if last_inbound_at is None:
            return (
                "The customer has not written to this WhatsApp number yet; WhatsApp allows only"
                " approved templates until they do."
            )
        elapsed = aware(now) - aware(last_inbound_at)
        if elapsed <= WINDOW:
            return None
        return (
            f"The customer last wrote {_ago(elapsed)} ago; WhatsApp allows only approved"
            " templates more than 24 hours after the customer's last message."
        )

    def chat_link(self, payload: str | None = None) -> str | None:
        """A wa.me link to the number, with `payload` as the prefilled text."""
        number = self._settings.number
        return chat_link(WHATSAPP, number, payload) if number else None

    def rate_keys(self, chat_id: ChatId) -> tuple[str, ...]:
        """The number's throughput key and the pair (number, customer) key."""
        return (f"whatsapp:{self.account}", f"whatsapp:{self.account}:to:{chat_id}")

    def rate_limits(self) -> Mapping[str, RateLimit]:
        """Throughput per number, and about one message per 6 s to the same customer."""
        settings = self._settings
        return {
            f"whatsapp:{self.account}": RateLimit(rate=settings.rate, burst=settings.rate),
            f"whatsapp:{self.account}:to:*": RateLimit(
                rate=settings.rate_pair, burst=settings.burst_pair
            ),
        }

    # ------------------------------------------------------------------ HTTP

    async def _call(
        self,
        method: str,
        url: str,
        *,
        json_body: Mapping[str, Any] | None = None,
        form: aiohttp.FormData | None = None,
        params: Mapping[str, str] | None = None,
        timeout: aiohttp.ClientTimeout = _CALL_TIMEOUT,
    ) -> Mapping[str, Any]:
        """Call the Graph API; return its JSON object or raise the bridge's error."""
        try:
            async with self._http.request(
                method,
                url,
                headers=self._auth,
                json=json_body,
                data=form,
                params=params,
                timeout=timeout,
            ) as resp:
                status = resp.status
                headers = dict(resp.headers)
                raw = await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise unreachable("whatsapp", f"{method} call", exc) from None
        answer = json_object(raw)
        if status >= 400 or (answer is not None and "error" in answer):
            _raise_for(status, answer or {}, headers)
        if answer is None:
            msg = f"whatsapp: HTTP {status} without a JSON answer"
            raise TransientError(msg)
        return answer


def _template(item: Any) -> Template | None:
    if not isinstance(item, Mapping):
        return None
    name, language, status = (opt_str(item, key) for key in ("name", "language", "status"))
    if not name or not language or not status:
        return None
    body: str | None = None
    components = item.get("components")
    for component in components if isinstance(components, list) else []:
        if isinstance(component, Mapping) and component.get("type") == "BODY":
            body = opt_str(component, "text")
            break
    return Template(
        name=name,
        language=language,
        status=status,
        category=opt_str(item, "category"),
        body=body,
    )


def build(
    settings: Settings, http: aiohttp.ClientSession, sink: InboundSink, media: MediaHost
) -> list[Connector]:
    """One connector per configured number; they share one webhook, served by the first."""
    accounts = settings.whatsapp.accounts
    if not accounts:
        return []
    webhook = WhatsAppWebhook(accounts, sink)
    return [
        WhatsAppConnector(account, http, sink, webhook=webhook if index == 0 else None)
        for index, account in enumerate(accounts)
    ]
