"""Facebook Messenger connector: customers write to a Facebook page's Messenger inbox.

Inbound events arrive at one shared webhook for every configured page, signed with the Meta
app's secret (`X-Hub-Signature-256`), and are parsed once, in the pure `parse_webhook`. The
webhook carries no names, so the handler looks them up with the Graph API afterwards. Outbound
messages go to the Send API, `{api_base}/{page_id}/messages`; every Graph error is turned into
the bridge's error tree in `_raise_for`. The page token travels in the `Authorization` header,
never in a URL, so that no logged URL or exception text can carry it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import mimetypes
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import PurePosixPath
from typing import Any, ClassVar, NoReturn
from urllib.parse import quote, unquote, urlsplit

import aiohttp
from aiohttp import web

from bridge.config import MessengerPage, Settings
from bridge.errors import (
    BadRequest,
    PermanentError,
    RateLimited,
    TransientError,
    WindowClosed,
)
from bridge.protocols import Connector, InboundSink, MediaHost
from bridge.types import (
    MESSENGER,
    AccountId,
    Attachment,
    ChatId,
    CustomerProfile,
    DeliveryStatus,
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
    WatermarkUpdate,
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
)

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/webhooks/messenger"

# Send API: message text is at most 2000 characters; attachments are at most 25 MB.
TEXT_LIMIT = 2000
UPLOAD_LIMIT = 25 * 1024 * 1024
# Messenger platform policy: a page may answer freely ("RESPONSE") for 24 hours after the
# person's last message; with the HUMAN_AGENT tag a human may answer for 7 days.
RESPONSE_WINDOW = timedelta(hours=24)
HUMAN_AGENT_WINDOW = timedelta(days=7)
HUMAN_AGENT_TAG = "HUMAN_AGENT"

_CALL_TIMEOUT = aiohttp.ClientTimeout(total=30, connect=10)
_UPLOAD_TIMEOUT = aiohttp.ClientTimeout(total=300, connect=10)
# Graph rate-limit answers carry no delay; Meta's docs advise waiting before calling again.
_DEFAULT_RETRY_AFTER = 60.0

_ATTACHMENT_KINDS = {
    "image": MediaKind.IMAGE,
    "video": MediaKind.VIDEO,
    "audio": MediaKind.AUDIO,
    "file": MediaKind.DOCUMENT,
}
_SEND_TYPES = {
    MediaKind.IMAGE: "image",
    MediaKind.VIDEO: "video",
    MediaKind.AUDIO: "audio",
    MediaKind.DOCUMENT: "file",
}
# The Send API shows these as pictures; any other image type goes as a file.
_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif"})
_REFERRAL_SOURCES = {
    "SHORTLINK": "(opened the chat from the link m.me/…?ref={ref})",
    "ADS": "(opened the chat from an ad, ref {ref})",
    "CUSTOMER_CHAT_PLUGIN": "(opened the chat from the chat plugin on a website, ref {ref})",
}

# Graph API error codes (developers.facebook.com/docs/messenger-platform/error-codes), as
# staff should read them. Keyed by (code, subcode); (code, None) covers the other subcodes.
REASONS: dict[tuple[int, int | None], str] = {
    (10, 2018278): (
        "the customer last wrote too long ago: Messenger accepts replies for 24 hours after the"
        " customer's last message, and from a human agent for 7 days"
    ),
    (10, 2018065): (
        "the message is outside the allowed window and the page may not send it anyway"
    ),
    (10, None): "Messenger does not permit the page to send this message",
    (551, None): (
        "this person isn't available right now: they blocked the page, left Messenger or"
        " cannot receive messages from it"
    ),
    (100, 2018001): "Messenger knows no person with this id on this page",
    (100, None): "Messenger refused the request as invalid",
    (200, 2018028): (
        "the page may not message this person: they have not opted in or blocked the page,"
        " or the app lacks Messenger's pages_messaging permission"
    ),
    (200, None): "the page lacks the permission for this send",
    (190, None): "the page token was rejected (expired or revoked): renew messenger.page_token",
    (104, None): "the request carried no page token",
    (4, None): "the app made too many Graph API calls",
    (17, None): "the user's Graph API call limit was reached",
    (32, None): "the page made too many Graph API calls",
    (613, None): "the Send API call rate was exceeded",
    (80006, None): "the page sent too many Messenger messages",
    (1200, None): "Messenger had a temporary problem sending the message",
    (1, None): "Messenger had an unknown error",
    (2, None): "Messenger is temporarily unavailable",
}
_RATE_LIMIT_CODES = frozenset({4, 17, 32, 613, 80006})
_TRANSIENT_CODES = frozenset({1, 2, 1200})
# These stay permanent even when Graph answers them with a 5xx status.
_PERMANENT_CODES = frozenset({10, 100, 104, 190, 200, 551})


# ---------------------------------------------------------------------- parsing


def parse_webhook(payload: Any, pages: Collection[str]) -> list[InboundEvent]:
    """Turn one Messenger webhook body into bridge events for the pages in `pages`."""
    if not isinstance(payload, Mapping):
        msg = "a webhook body must be a JSON object"
        raise BadRequest(msg)
    if payload.get("object") != "page":
        msg = "the webhook object is not 'page'"
        raise BadRequest(msg)
    if not storable(payload):
        msg = "the webhook holds a lone surrogate, which is no text"
        raise BadRequest(msg)
    entries = payload.get("entry")
    if not isinstance(entries, list):
        msg = "the webhook body has no entry list"
        raise BadRequest(msg)
    events: list[InboundEvent] = []
    for entry in entries:
        if not isinstance(entry, Mapping):
            msg = "an entry is not an object"
            raise BadRequest(msg)
        page = _graph_id(entry.get("id"))
        if page is None:
            msg = "an entry has no page id"
            raise BadRequest(msg)
        if page not in pages:
            continue  # a page this bridge does not serve (another app subscription)
        messaging = entry.get("messaging")
        if messaging is None:
            continue  # page feed `changes` or handover `standby`: not customer messages
        if not isinstance(messaging, list):
            msg = "entry.messaging is not a list"
            raise BadRequest(msg)
        for raw in messaging:
            event = _parse_event(raw, AccountId(page))
            if event is not None:
                events.append(event)
    return events


def _parse_event(raw: Any, page: AccountId) -> InboundEvent | None:
    if not isinstance(raw, Mapping):
        msg = "a messaging event is not an object"
        raise BadRequest(msg)
    message = raw.get("message")
    if isinstance(message, Mapping) and message.get("is_echo") is True:
        return None  # our own sends come back as echoes; they are in the thread already
    if "message" in raw:
        return _parse_message(raw, page)
    if "message_edit" in raw:
        return _parse_edit(raw, page)
    if "postback" in raw:
        return _parse_postback(raw, page)
    if "referral" in raw:
        return _parse_referral(raw, page)
    if "delivery" in raw:
        return _parse_watermark(raw, page, "delivery", DeliveryStatus.DELIVERED)
    if "read" in raw:
        return _parse_watermark(raw, page, "read", DeliveryStatus.READ)
    # reaction, optin, account_linking, policy_enforcement, handover...: not for the bridge.
    return None


def _parse_message(raw: Mapping[str, Any], page: AccountId) -> InboundMessage | None:
    message = _object(raw, "message")
    psid, sent_at = _sender(raw), _timestamp(raw)
    mid = _graph_id(message.get("mid"))
    if mid is None:
        msg = "a message has no mid"
        raise BadRequest(msg)
    text = opt_str(message, "text") or ""
    attachments, notes = _attachments(message.get("attachments"))
    # quick_reply.payload is ignored: the text carries what the customer tapped.
    if notes:
        text = "\n".join([text, *notes]) if text else "\n".join(notes)
    if not text and not attachments:
        return None  # e.g. only an unknown attachment type
    return InboundMessage(
        platform=MESSENGER,
        account=page,
        chat_id=psid,
        external_id=ExternalMessageId(mid),
        profile=fallback_profile(psid),
        text=text,
        sent_at=sent_at,
        attachments=attachments,
    )


def _attachments(raw: Any) -> tuple[tuple[Attachment, ...], list[str]]:
    """Files to forward, and sentences for what can only be described (links, locations)."""
    if raw is None:
        return (), []
    if not isinstance(raw, list):
        msg = "message.attachments is not a list"
        raise BadRequest(msg)
    files: list[Attachment] = []
    notes: list[str] = []
    for item in raw:
        if not isinstance(item, Mapping):
            msg = "an attachment is not an object"
            raise BadRequest(msg)
        kind = item.get("type")
        payload = item.get("payload")
        body: Mapping[str, Any] = payload if isinstance(payload, Mapping) else {}
        if isinstance(kind, str) and kind in _ATTACHMENT_KINDS:
            # Stickers come as images with a sticker_id; their url is the sticker picture.
            url = opt_str(body, "url")
            if url:
                files.append(Attachment(kind=_ATTACHMENT_KINDS[kind], ref=url))
        elif kind == "fallback":
            # A shared link Messenger could not render: its title and URL.
            title = opt_str(item, "title") or opt_str(body, "title")
            url = opt_str(item, "url") or opt_str(item, "URL") or opt_str(body, "url")
            words = " ".join(part for part in (title, url) if part)
            if words:
                notes.append(f"(shared a link: {words})")
        elif kind == "location":
            coordinates = body.get("coordinates")
            point: Mapping[str, Any] = coordinates if isinstance(coordinates, Mapping) else {}
            lat, lon = _number(point.get("lat")), _number(point.get("long"))
            if lat is not None and lon is not None:
                notes.append(
                    f"(shared a location: {lat:g}, {lon:g}"
                    f" https://www.google.com/maps?q={lat:g},{lon:g})"
                )
        elif kind == "template":
            title = opt_str(item, "title")
            if title:
                notes.append(f"(shared: {title})")
    return tuple(files), notes


def _parse_edit(raw: Mapping[str, Any], page: AccountId) -> InboundEdit | None:
    edit = _object(raw, "message_edit")
    psid, edited_at = _sender(raw), _timestamp(raw)
    mid = _graph_id(edit.get("mid"))
    if mid is None:
        msg = "a message_edit has no mid"
        raise BadRequest(msg)
    text = opt_str(edit, "text")
    if text is None:
        return None
    return InboundEdit(
        platform=MESSENGER,
        account=page,
        chat_id=psid,
        external_id=ExternalMessageId(mid),
        text=text,
        edited_at=edited_at,
    )


def _parse_postback(raw: Mapping[str, Any], page: AccountId) -> InboundMessage | None:
    postback = _object(raw, "postback")
    psid = _sender(raw)
    stamp = int_or_none(raw.get("timestamp"))
    sent_at = _timestamp(raw)
    # The button's title is what the customer saw and tapped; the payload is for machines.
    text = opt_str(postback, "title") or opt_str(postback, "payload")
    if not text:
        return None
    mid = _graph_id(postback.get("mid")) or f"postback:{psid}:{stamp}"
    referral = postback.get("referral")
    ref = opt_str(referral, "ref") if isinstance(referral, Mapping) else None
    return InboundMessage(
        platform=MESSENGER,
        account=page,
        chat_id=psid,
        external_id=ExternalMessageId(mid),
        profile=fallback_profile(psid),
        text=text,
        sent_at=sent_at,
        start_payload=ref or None,
    )


def _parse_referral(raw: Mapping[str, Any], page: AccountId) -> InboundMessage | None:
    referral = _object(raw, "referral")
    ref = opt_str(referral, "ref")
    if not ref:
        return None  # an ad or plugin opening without a ref tells staff nothing
    psid = _sender(raw)
    stamp = int_or_none(raw.get("timestamp"))
    sent_at = _timestamp(raw)
    source = opt_str(referral, "source") or ""
    wording = _REFERRAL_SOURCES.get(source, "(opened the chat with the ref {ref})")
    return InboundMessage(
        platform=MESSENGER,
        account=page,
        chat_id=psid,
        external_id=ExternalMessageId(f"referral:{psid}:{stamp}"),
        profile=fallback_profile(psid),
        text=wording.format(ref=ref),
        sent_at=sent_at,
        start_payload=ref,
    )


def _parse_watermark(
    raw: Mapping[str, Any], page: AccountId, field: str, status: DeliveryStatus
) -> WatermarkUpdate:
    # Messenger reports delivery and reading as "everything before this time", not per mid.
    body = _object(raw, field)
    psid = _sender(raw)
    watermark = _ms_datetime(body.get("watermark"), f"{field}.watermark")
    return WatermarkUpdate(
        platform=MESSENGER, account=page, chat_id=psid, status=status, watermark=watermark
    )


def fallback_profile(psid: str) -> CustomerProfile:
    """The profile of a person whose name is not known (the webhook carries no names)."""
    return CustomerProfile(display_name=f"Messenger user {psid}")


def _object(raw: Mapping[str, Any], field: str) -> Mapping[str, Any]:
    value = raw.get(field)
    if not isinstance(value, Mapping):
        msg = f"{field} is not an object"
        raise BadRequest(msg)
    return value


def _sender(raw: Mapping[str, Any]) -> ChatId:
    sender = raw.get("sender")
    psid = _graph_id(sender.get("id")) if isinstance(sender, Mapping) else None
    if psid is None:
        msg = "a messaging event has no sender.id"
        raise BadRequest(msg)
    return ChatId(psid)


def _timestamp(raw: Mapping[str, Any]) -> datetime:
    return _ms_datetime(raw.get("timestamp"), "timestamp")


def _ms_datetime(value: Any, field: str) -> datetime:
    number = _number(value)
    if number is None:
        msg = f"{field} is not a number of milliseconds"
        raise BadRequest(msg)
    try:
        return datetime.fromtimestamp(number / 1000, tz=UTC)
    except (OverflowError, ValueError, OSError):
        msg = f"{field} is out of range"
        raise BadRequest(msg) from None


def _graph_id(value: Any) -> str | None:
    """Graph ids are strings of digits (mids are strings too); tolerate integers."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, int) and abs(value) > 2**63:
        return None  # float() of a huge integer overflows; no Graph number is that large
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return float(value)


# ---------------------------------------------------------------------- outbound helpers


def messaging_type(last_inbound_at: datetime | None, now: datetime) -> tuple[str, str | None]:
    """The Send API's messaging_type and tag for a reply at `now`."""
    if last_inbound_at is not None and now - aware(last_inbound_at) <= RESPONSE_WINDOW:
        return "RESPONSE", None
    # Past 24 hours only tagged messages go through; HUMAN_AGENT lets a person answer for 7
    # days. Whether the 7 days have passed is left to Meta, which knows the last message best.
    return "MESSAGE_TAG", HUMAN_AGENT_TAG


def _raise_for(status: int, body: Mapping[str, Any], headers: Mapping[str, str]) -> NoReturn:
    """Map a Graph API error answer to the bridge's error tree."""
    raw = body.get("error")
    error: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    code = int_or_none(error.get("code"))
    subcode = int_or_none(error.get("error_subcode"))
    message = opt_str(error, "message") or f"HTTP {status}"
    if code is None:
        tag = f"HTTP {status}"
    else:
        tag = f"{code}/{subcode}" if subcode is not None else str(code)
    words = REASONS.get((code, subcode)) if code is not None else None
    if words is None and code is not None:
        words = REASONS.get((code, None))
    reason = f"{words or message} (Messenger {tag})"
    if status == 429 or code in _RATE_LIMIT_CODES:
        wait = retry_after(headers)
        # Graph's call-volume limits (4, 17, 32, 613) cover the app or the page, not one person.
        raise RateLimited(
            _DEFAULT_RETRY_AFTER if wait is None else wait,
            f"messenger: {reason}",
            per_recipient=False,
        )
    if (code, subcode) == (10, 2018278):
        raise WindowClosed(tag, reason)
    if code in _TRANSIENT_CODES or (status >= 500 and code not in _PERMANENT_CODES):
        raise TransientError(f"messenger: {reason}")
    if code is not None or 400 <= status < 500:
        raise PermanentError(tag, reason)
    raise TransientError(f"messenger: {reason}")


# ---------------------------------------------------------------------- profile names

ProfileLookup = Callable[[MessengerPage, ChatId], Awaitable[str | None]]
"""Finds the name of the person behind a PSID on a page; None when it cannot be had."""


class GraphProfiles:
    """Looks up a PSID's name with the Graph API's user profile endpoint."""

    def __init__(self, http: aiohttp.ClientSession, *, timeout: float = 2.0) -> None:
        self._http = http
        # Short: the lookup happens while Meta waits for the webhook's answer.
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def __call__(self, page: MessengerPage, psid: ChatId) -> str | None:
        """`first_name last_name` of the person, or None on any failure."""
        url = f"{page.api_base.rstrip('/')}/{quote(psid, safe='')}"
        try:
            async with self._http.get(
                url,
                params={"fields": "first_name,last_name"},
                headers=_auth(page),
                timeout=self._timeout,
            ) as resp:
                status = resp.status
                raw = await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.info(
                "messenger page %s: profile lookup failed: %s", page.page_id, type(exc).__name__
            )
            return None
        answer = json_object(raw)
        if status != 200 or answer is None:
            error = answer.get("error") if answer is not None else None
            code = error.get("code") if isinstance(error, Mapping) else None
            log.info("messenger page %s: no profile (HTTP %s, code %s)", page.page_id, status, code)
            return None
        names = [opt_str(answer, "first_name"), opt_str(answer, "last_name")]
        display = " ".join(name.strip() for name in names if name and name.strip())
        return display or None


def _auth(page: MessengerPage) -> dict[str, str]:
    # Graph accepts the token as a bearer header as well as an access_token parameter; the
    # header keeps it out of URLs, which aiohttp may print in errors.
    return {"Authorization": f"Bearer {page.page_token.get_secret_value()}"}


# ---------------------------------------------------------------------- webhook


class MessengerWebhook:
    """The one webhook endpoint for every configured page: verification, signatures, names."""

    # A person's name is looked up once per page; a failed lookup is tried again this much later.
    names_max = 10_000
    retry_failed_after = 600.0
    # Lookups per webhook call, so that a large batch does not hold Meta's request for long.
    lookups_per_call = 20

    def __init__(
        self, pages: Sequence[MessengerPage], sink: InboundSink, lookup: ProfileLookup
    ) -> None:
        self._pages = {page.page_id: page for page in pages}
        self._secrets = meta.app_secrets((page.page_id, page.app_secret) for page in pages)
        self._verify_tokens = meta.verify_tokens(page.verify_token for page in pages)
        self._sink = sink
        self._lookup = lookup
        # (page, psid) → (name or None, monotonic time after which a None is tried again)
        self._names: OrderedDict[tuple[str, str], tuple[str | None, float]] = OrderedDict()

    def routes(self) -> list[web.RouteDef]:
        """GET for Meta's subscription check, POST for the events."""
        return [
            web.get(WEBHOOK_PATH, self._verify),
            web.post(WEBHOOK_PATH, meta.guarded(self._receive)),
        ]

    async def _verify(self, request: web.Request) -> web.Response:
        # Meta checks the endpoint once, when the webhook is subscribed in the app dashboard.
        # An incomplete check is a bad request here; only a wrong token is refused with 403.
        query = request.query
        complete = "hub.verify_token" in query and "hub.challenge" in query
        if query.get("hub.mode") != "subscribe" or not complete:
            return web.Response(status=400, text="not a subscription check")
        challenge = meta.hub_challenge(query, self._verify_tokens)
        if challenge is None:
            return web.Response(status=403, text="wrong verify token")
        return web.Response(text=challenge)

    async def _receive(self, request: web.Request) -> web.Response:
        parsed = await meta.signed_events(request, self._secrets, "messenger", parse_webhook)
        if isinstance(parsed, web.Response):
            return parsed
        events = await self._with_names(parsed)
        if (failed := await hand_over(self._sink, events, "messenger")) is not None:
            return failed
        return web.Response(text="ok")

    async def _with_names(self, events: list[InboundEvent]) -> list[InboundEvent]:
        """The events with the names of their senders, looked up for PSIDs not seen yet."""
        wanted: list[tuple[str, str]] = []
        now = time.monotonic()
        for event in events:
            if not isinstance(event, InboundMessage):
                continue
            key: tuple[str, str] = (event.account, event.chat_id)
            cached = self._names.get(key)
            stale = cached is None or (cached[0] is None and cached[1] <= now)
            if stale and key not in wanted and len(wanted) < self.lookups_per_call:
                wanted.append(key)
        if wanted:
            found = await asyncio.gather(*(self._look_up(*key) for key in wanted))
            for asked, name in zip(wanted, found, strict=True):
                self._remember(asked, name, now)
        named: list[InboundEvent] = []
        for event in events:
            if isinstance(event, InboundMessage):
                cached = self._names.get((event.account, event.chat_id))
                if cached is not None and cached[0] is not None:
                    self._names.move_to_end((event.account, event.chat_id))
                    profile = replace(event.profile, display_name=cached[0])
                    event = replace(event, profile=profile)
            named.append(event)
        return named

    async def _look_up(self, page_id: str, psid: str) -> str | None:
        try:
            return await self._lookup(self._pages[page_id], ChatId(psid))
        except Exception:
            log.exception("messenger page %s: profile lookup raised", page_id)
            return None

    def _remember(self, key: tuple[str, str], name: str | None, now: float) -> None:
        self._names[key] = (name, math.inf if name else now + self.retry_failed_after)
        self._names.move_to_end(key)
        while len(self._names) > self.names_max:
            self._names.popitem(last=False)


# ---------------------------------------------------------------------- connector


class MessengerConnector(SharedWebhook, FinalSends):
    """One Facebook page: events from the shared webhook in, Send API calls out."""

    platform: ClassVar[Platform] = MESSENGER
    display_name = "Messenger"
    ready_message = "messenger page %s: ready"

    def __init__(
        self,
        page: MessengerPage,
        http: aiohttp.ClientSession,
        sink: InboundSink,
        *,
        webhook: MessengerWebhook | None,
    ) -> None:
        self.account = AccountId(page.page_id)
        self._page = page
        self._http = http
        self._sink = sink
        self._webhook = webhook
        self._messages_url = f"{page.api_base.rstrip('/')}/{quote(page.page_id, safe='')}/messages"

    async def probe(self) -> str:
        """A harmless authenticated call for `run.py check`: the page's own node."""
        url = f"{self._page.api_base.rstrip('/')}/{quote(self._page.page_id, safe='')}"
        try:
            async with self._http.get(
                url, params={"fields": "name"}, headers=_auth(self._page), timeout=_CALL_TIMEOUT
            ) as resp:
                status = resp.status
                raw = await resp.read()
                headers = resp.headers
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise unreachable("messenger", "page lookup", exc) from None
        answer = json_object(raw)
        if status != 200 or answer is None or "error" in answer:
            _raise_for(status, answer or {}, headers)
        name = opt_str(answer, "name")
        return f"page {name}" if name else f"page {self._page.page_id}"

    # ------------------------------------------------------------------ outbound

    async def send(self, msg: OutboundMessage) -> ExternalMessageId:
        """Send the text (in 2000-character parts), then each file; return the first id."""
        if msg.template is not None:
            raise PermanentError(
                "unsupported",
                "Messenger has no message templates; templates are a WhatsApp feature",
            )
        chunks = split_text(msg.text, TEXT_LIMIT) if msg.text.strip() else []
        if not chunks and not msg.files:
            raise PermanentError("empty", "the message has neither text nor files")
        for file in msg.files:
            if len(file.data) > UPLOAD_LIMIT:
                raise PermanentError(
                    "413", f"{file.filename} is larger than the 25 MB Messenger accepts"
                )
        kind, tag = messaging_type(msg.last_inbound_at, datetime.now(UTC))
        first: str | None = None
        # A Messenger message carries text or one attachment, never both: text goes first.
        for chunk in chunks:
            body: dict[str, Any] = {
                "recipient": {"id": msg.chat_id},
                "messaging_type": kind,
                "message": {"text": chunk},
            }
            if tag is not None:
                body["tag"] = tag
            mid = await self._send(json_body=body)
            first = first or mid
        for file in msg.files:
            mid = await self._send(form=self._upload_form(msg.chat_id, kind, tag, file))
            first = first or mid
        assert first is not None
        return ExternalMessageId(first)

    def _upload_form(
        self, psid: ChatId, kind: str, tag: str | None, file: FileData
    ) -> aiohttp.FormData:
        send_type = _SEND_TYPES[file.kind]
        if send_type == "image" and file.mime_type not in _IMAGE_TYPES:
            send_type = "file"
        form = aiohttp.FormData()
        form.add_field("recipient", json.dumps({"id": psid}))
        form.add_field("messaging_type", kind)
        if tag is not None:
            form.add_field("tag", tag)
        attachment = {"type": send_type, "payload": {"is_reusable": False}}
        form.add_field("message", json.dumps({"attachment": attachment}))
        form.add_field("filedata", file.data, filename=file.filename, content_type=file.mime_type)
        return form

    async def _send(
        self, *, json_body: Mapping[str, Any] | None = None, form: aiohttp.FormData | None = None
    ) -> str:
        """One Send API call; the message_id it answers."""
        timeout = _UPLOAD_TIMEOUT if form is not None else _CALL_TIMEOUT
        try:
            async with self._http.post(
                self._messages_url,
                json=json_body,
                data=form,
                headers=_auth(self._page),
                timeout=timeout,
            ) as resp:
                status = resp.status
                raw = await resp.read()
                headers = resp.headers
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise unreachable("messenger", "send", exc) from None
        answer = json_object(raw)
        if status != 200 or answer is None or "error" in answer:
            _raise_for(status, answer or {}, headers)
        mid = _graph_id(answer.get("message_id"))
        if mid is None:
            msg = "messenger answered a send without a message_id"
            raise TransientError(msg)
        return mid

    async def fetch(self, attachment: Attachment) -> FileData:
        """Download a file the customer sent from Messenger's CDN (its URL needs no token)."""
        try:
            async with self._http.get(attachment.ref, timeout=_UPLOAD_TIMEOUT) as resp:
                status = resp.status
                data = await resp.read()
                content_type = resp.content_type
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise unreachable("messenger", "file download", exc) from None
        if status >= 500 or status == 429:
            msg = f"messenger file download: HTTP {status}"
            raise TransientError(msg)
        if status != 200:
            # CDN URLs are signed and expire after a while.
            raise PermanentError(
                str(status), f"the file is no longer on Messenger's servers (HTTP {status})"
            )
        mime_type = content_type if content_type != "application/octet-stream" else None
        mime_type = mime_type or attachment.mime_type
        filename = attachment.filename or _filename_from_url(attachment.ref)
        if mime_type is None and filename is not None:
            mime_type = mimetypes.guess_type(filename)[0]
        mime_type = mime_type or "application/octet-stream"
        if filename is None:
            extension = mimetypes.guess_extension(mime_type) or ".bin"
            filename = f"{attachment.kind.value}{extension}"
        return FileData(kind=attachment.kind, filename=filename, data=data, mime_type=mime_type)

    # ------------------------------------------------------------------ policy

    async def templates(self) -> Sequence[Template]:
        """Messenger has no templates to choose from."""
        return []

    def window_refusal(self, last_inbound_at: datetime | None, now: datetime) -> str | None:
        """A sentence for staff when the 7 days of the HUMAN_AGENT tag are over."""
        rule = (
            "Messenger lets a person reply (with the HUMAN_AGENT tag) only up to 7 days after"
            " the customer's last message."
        )
        if last_inbound_at is None:
            return f"The customer has not written to this page on Messenger; {rule}"
        age = now - aware(last_inbound_at)
        if age <= HUMAN_AGENT_WINDOW:
            return None
        return f"The customer last wrote {age.days} days ago; {rule}"

    def chat_link(self, payload: str | None = None) -> str | None:
        """An m.me link to the page carrying `payload` as its ref."""
        return chat_link(MESSENGER, self._page.page_name or self._page.page_id, payload)

    def rate_keys(self, chat_id: ChatId) -> tuple[str, ...]:
        """One key per page: the Send API limit is per page."""
        return (f"messenger:{self.account}",)

    def rate_limits(self) -> Mapping[str, RateLimit]:
        """About 300 Send API calls a second per page (Meta's documented limit)."""
        rate = self._page.rate
        return {f"messenger:{self.account}": RateLimit(rate=rate, burst=rate)}


def _filename_from_url(url: str) -> str | None:
    """The last path segment when it looks like a file name (Meta's CDN keeps it for files)."""
    try:
        path = urlsplit(url).path
    except ValueError:
        return None
    name = PurePosixPath(unquote(path)).name
    return name if "." in name.strip(".") else None


def build(
    settings: Settings, http: aiohttp.ClientSession, sink: InboundSink, media: MediaHost
) -> list[Connector]:
    """One connector per configured page, all served by one webhook."""
    pages = settings.messenger.accounts
    if not pages:
        return []
    webhook = MessengerWebhook(pages, sink, GraphProfiles(http))
    return [
        MessengerConnector(page, http, sink, webhook=webhook if index == 0 else None)
        for index, page in enumerate(pages)
    ]
