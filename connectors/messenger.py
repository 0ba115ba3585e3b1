"""Facebook Messenger connector: customers write to a Facebook page's Messenger inbox.

Inbound events arrive at one shared webhook for every configured page, signed with the Meta
app's secret (`X-Hub-Signature-256`), and are parsed once, in the pure `parse_webhook`
(connectors.messenger_events). The webhook carries no names, so the handler looks them up with
the Graph API afterwards. Outbound messages go to the Send API, `{api_base}/{page_id}/messages`;
every Graph error is turned into the bridge's error tree in `raise_for`
(connectors.messenger_api). The page token travels in the `Authorization` header,
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
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any, ClassVar
from urllib.parse import quote, unquote, urlsplit

import aiohttp
from aiohttp import web

from bridge.config import MessengerPage, Settings
from bridge.errors import PermanentError, TransientError
from bridge.protocols import Connector, InboundSink, MediaHost
from bridge.types import (
    MESSENGER,
    AccountId,
    Attachment,
    ChatId,
    ExternalMessageId,
    FileData,
    InboundEvent,
    InboundMessage,
    MediaKind,
    OutboundMessage,
    Platform,
    RateLimit,
    Template,
)
from connectors import meta
from connectors.chatlinks import chat_link
from connectors.markup import plain
from connectors.messenger_api import (
    HUMAN_AGENT_WINDOW,
    GraphProfiles,
    ProfileLookup,
    auth_header,
    messaging_type,
    raise_for,
)
from connectors.messenger_events import graph_id, parse_webhook
from connectors.wire import (
    FinalSends,
    SharedWebhook,
    aware,
    hand_over,
    json_object,
    opt_str,
    split_text,
    unreachable,
)

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/webhooks/messenger"

# Send API: message text is at most 2000 characters; attachments are at most 25 MB.
TEXT_LIMIT = 2000
UPLOAD_LIMIT = 25 * 1024 * 1024

_CALL_TIMEOUT = aiohttp.ClientTimeout(total=30, connect=10)
_UPLOAD_TIMEOUT = aiohttp.ClientTimeout(total=300, connect=10)

_SEND_TYPES = {
    MediaKind.IMAGE: "image",
    MediaKind.VIDEO: "video",
    MediaKind.AUDIO: "audio",
    MediaKind.DOCUMENT: "file",
}
# The Send API shows these as pictures; any other image type goes as a file.
_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif"})


# ---------------------------------------------------------------------- parsing


# ---------------------------------------------------------------------- outbound helpers


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
                url,
                params={"fields": "name"},
                headers=auth_header(self._page),
                timeout=_CALL_TIMEOUT,
            ) as resp:
                status = resp.status
                raw = await resp.read()
                headers = resp.headers
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise unreachable("messenger", "page lookup", exc) from None
        answer = json_object(raw)
        if status != 200 or answer is None or "error" in answer:
            raise_for(status, answer or {}, headers)
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
        # Messenger shows no formatting: staff's markers go, their words stay.
        chunks = split_text(plain(msg.text), TEXT_LIMIT) if msg.text.strip() else []
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
                headers=auth_header(self._page),
                timeout=timeout,
            ) as resp:
                status = resp.status
                raw = await resp.read()
                headers = resp.headers
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise unreachable("messenger", "send", exc) from None
        answer = json_object(raw)
        if status != 200 or answer is None or "error" in answer:
            raise_for(status, answer or {}, headers)
        mid = graph_id(answer.get("message_id"))
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
