"""WhatsApp Cloud API connector: customers write to a WhatsApp Business phone number.

Inbound messages and delivery statuses arrive by one webhook for every configured number
(`WhatsAppWebhook`), signed with the Meta app's secret, and are parsed once, in
`parse_webhook` (connectors.whatsapp_events). Outbound calls go to the Graph API with the
number's access token as a bearer header, and every Graph error is turned into the bridge's
error tree in `raise_for` (connectors.whatsapp_api). Tokens travel only in headers, and no
header, token or media URL is ever logged.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit

import aiohttp
from aiohttp import web

from bridge.config import Settings, WhatsAppAccount
from bridge.errors import PermanentError, TransientError
from bridge.protocols import Connector, InboundSink, MediaHost
from bridge.types import (
    WHATSAPP,
    AccountId,
    Attachment,
    ChatId,
    ExternalMessageId,
    FileData,
    OutboundMessage,
    Platform,
    RateLimit,
    Template,
)
from connectors import meta
from connectors.chatlinks import chat_link
from connectors.markup import whatsapp_parts
from connectors.whatsapp_api import (
    DOCUMENT_LIMIT,
    base_mime,
    extension,
    raise_for,
    send_type,
    template_of,
)
from connectors.whatsapp_events import parse_webhook
from connectors.wire import (
    FinalSends,
    SharedWebhook,
    aware,
    hand_over,
    json_object,
    opt_str,
    unreachable,
    utf16_len,
)

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/webhooks/whatsapp"

# Cloud API limits (developers.facebook.com/docs/whatsapp/cloud-api/reference/messages):
# text bodies up to 4096 characters, media captions up to 1024.
TEXT_LIMIT = 4096
CAPTION_LIMIT = 1024
# Only images, videos and documents take a caption; audio does not.
_CAPTIONED = frozenset({"image", "video", "document"})
_LINK = re.compile(r"https?://\S", re.IGNORECASE)

# The customer service window: free-form messages only within 24 hours of the customer's last
# message; outside it only approved templates (…/docs/whatsapp/pricing#customer-service-windows).
WINDOW = timedelta(hours=24)
_TEMPLATE_PAGES = 50

_CALL_TIMEOUT = aiohttp.ClientTimeout(total=30, connect=10)
_UPLOAD_TIMEOUT = aiohttp.ClientTimeout(total=300, connect=10)


# ---------------------------------------------------------------------- inbound parsing


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
        send_types = [send_type(file) for file in msg.files]
        caption_at: int | None = None
        if text and utf16_len(text) <= CAPTION_LIMIT:
            caption_at = next((i for i, t in enumerate(send_types) if t in _CAPTIONED), None)
        carrier: ExternalMessageId | None = None
        if text and caption_at is None:
            # Cut so that each part's markers stay paired: WhatsApp reads them per message.
            for chunk in whatsapp_parts(text, TEXT_LIMIT):
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
        if result is None:  # a long text of markers around white space shows nothing
            raise PermanentError("empty", "the message shows no text")
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
        if len(file.data) > DOCUMENT_LIMIT:
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
            raise_for(status, json_object(data) or {}, headers)
        mime = base_mime(opt_str(info, "mime_type") or attachment.mime_type)
        mime = mime or "application/octet-stream"
        filename = attachment.filename or f"{attachment.kind}-{attachment.ref}.{extension(mime)}"
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
                template = template_of(item)
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
            raise_for(status, answer or {}, headers)
        if answer is None:
            msg = f"whatsapp: HTTP {status} without a JSON answer"
            raise TransientError(msg)
        return answer


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
