"""A fake WhatsApp Cloud API (Meta Graph) that speaks the real wire format and records sends.

It runs as a real aiohttp server on 127.0.0.1, so a connector's real HTTP code runs against it:
`POST {base_url}/{phone_number_id}/messages` and `/media` with `Authorization: Bearer <token>`,
`GET {base_url}/{media_id}` and the media URL it answers with, and
`GET {base_url}/{waba_id}/message_templates` with cursor paging. Errors are Graph error objects
`{"error": {"message", "type", "code", "error_data": {"details"}, "fbtrace_id"}}`.

The inbound side plays WhatsApp pushing webhooks to the bridge: `customer_says`,
`customer_sends_media`, `customer_shares_location`, `customer_taps` and `status` post the
bodies `tests/fakes/whatsapp_inbound.py` builds from the samples in `tests/corpus/whatsapp/`,
signed with the app secret (`X-Hub-Signature-256: sha256=<hex HMAC-SHA256>`), to
`webhook_url`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from tests.fakes.meta import MetaFake
from tests.fakes.whatsapp_inbound import InboundPayloads, new_media_id, new_wamid

VERSION = "v21.0"
TEXT_LIMIT = 4096
CAPTION_LIMIT = 1024
WINDOW_SECONDS = 24 * 3600
UPLOAD_LIMIT = 100 * 1024 * 1024

_TYPES = frozenset(
    {
        "text",
        "image",
        "document",
        "audio",
        "video",
        "sticker",
        "template",
        "interactive",
        "location",
        "contacts",
        "reaction",
    }
)
_MEDIA_TYPES = frozenset({"image", "document", "audio", "video", "sticker"})
# What each media message type accepts (developers.facebook.com/docs/whatsapp/cloud-api/
# reference/media#supported-media-types); documents take any file.
_ACCEPTED_MIME: Mapping[str, frozenset[str]] = {
    "image": frozenset({"image/jpeg", "image/png"}),
    "video": frozenset({"video/mp4", "video/3gpp"}),
    "audio": frozenset({"audio/aac", "audio/amr", "audio/mpeg", "audio/mp4", "audio/ogg"}),
    "sticker": frozenset({"image/webp"}),
}
_PLACEHOLDER = re.compile(r"\{\{(\d+)\}\}")

# Titles WhatsApp gives its error codes (…/cloud-api/support/error-codes).
ERROR_TITLES: Mapping[int, str] = {
    4: "Application request limit reached",
    100: "Invalid parameter",
    131000: "Something went wrong",
    131016: "Service unavailable",
    131026: "Message Undeliverable",
    131047: "Re-engagement message",
    131048: "Spam rate limit hit",
    131050: "User has stopped receiving marketing messages",
    131053: "Media upload error",
    131056: "(Business Account, Consumer Account) pair rate limit hit",
    130429: "Rate limit hit",
    132000: "Number of parameters does not match the expected number of params",
    132001: "Template name does not exist in the translation",
    190: "Invalid OAuth access token - Cannot parse access token",
    80007: "Rate limit issues",
}
_WINDOW_DETAILS = (
    "Message failed to send because more than 24 hours have passed since the customer last"
    " replied to this number."
)


@dataclass
class _Failure:
    code: int
    message: str
    status: int
    headers: dict[str, str] = field(default_factory=dict)


class GraphError(Exception):
    """An error answer of the Graph API."""

    def __init__(
        self,
        code: int,
        message: str | None = None,
        *,
        status: int = 400,
        details: str | None = None,
        subcode: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        title = message or ERROR_TITLES.get(code, "Unknown error")
        super().__init__(title)
        self.code = code
        self.title = title
        self.status = status
        self.details = details
        self.subcode = subcode
        self.headers = dict(headers or {})

    def response(self) -> web.Response:
        """The error as Graph answers it."""
        error: dict[str, Any] = {
            "message": f"(#{self.code}) {self.title}",
            "type": "OAuthException",
            "code": self.code,
            "fbtrace_id": "A" + secrets.token_urlsafe(15),
        }
        if self.subcode is not None:
            error["error_subcode"] = self.subcode
        if self.details is not None:
            error["error_data"] = {"messaging_product": "whatsapp", "details": self.details}
        return web.json_response({"error": error}, status=self.status, headers=self.headers)


def default_templates() -> list[dict[str, Any]]:
    """Two approved templates and one rejected, as Graph lists them."""
    return [
        {
            "name": "order_update",
            "language": "en_US",
            "status": "APPROVED",
            "category": "UTILITY",
            "id": "1000000000000001",
            "components": [{"type": "BODY", "text": "Hello {{1}}, your order {{2}} has shipped."}],
        },
        {
            "name": "welcome_back",
            "language": "en",
            "status": "APPROVED",
            "category": "MARKETING",
            "id": "1000000000000002",
            "components": [
                {"type": "HEADER", "format": "TEXT", "text": "Welcome back"},
                {"type": "BODY", "text": "Hi {{1}}, we have news for you."},
                {"type": "FOOTER", "text": "Reply STOP to opt out"},
            ],
        },
        {
            "name": "spring_sale",
            "language": "en",
            "status": "REJECTED",
            "category": "MARKETING",
            "id": "1000000000000003",
            "components": [{"type": "BODY", "text": "Everything is 50% off, {{1}}!"}],
        },
    ]


def _bearer(request: web.Request, token: str) -> bool:
    given = request.headers.get("Authorization", "")
    return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())


class FakeWhatsApp(InboundPayloads, MetaFake):
    """A Cloud API server on 127.0.0.1 with a free port; `base_url` is the connector's api_base."""

    def __init__(
        self,
        *,
        phone_number_ids: Iterable[str] = ("1001",),
        app_secret: str = "wa-app-secret-0123456789",
        verify_token: str = "wa-verify-token-0123",
        access_token: str = "wa-token",
        waba_id: str = "2002",
    ) -> None:
        super().__init__(app_secret=app_secret, verify_token=verify_token)
        self.phone_number_ids = tuple(phone_number_ids)
        self.access_token = access_token
        self.waba_id = waba_id
        self.sent: list[dict[str, Any]] = []
        self.media: dict[str, tuple[bytes, str, str | None]] = {}
        self.templates: list[dict[str, Any]] = default_templates()
        self.requests: list[tuple[str, str]] = []
        self.downloads: list[str] = []
        self.enforce_window = False
        # Statuses (e.g. ["delivered"]) POSTed to the webhook for a new wamid before the send is
        # answered: WhatsApp's status webhooks can overtake the API answer. Kept until cleared.
        self.report_before_answer: list[str] = []
        self.last_customer_message: dict[str, float] = {}
        self.last_inbound_id: str | None = None
        self._failures: deque[_Failure] = deque()

    # ------------------------------------------------------------------ lifecycle

    def app(self) -> web.Application:
        """The Graph API routes, each behind the bearer token check."""
        app = web.Application(
            client_max_size=UPLOAD_LIMIT + 1024 * 1024, middlewares=[self._record]
        )
        prefix = f"/{VERSION}"
        app.router.add_post(prefix + "/{node}/messages", self._guard(self._messages))
        app.router.add_post(prefix + "/{node}/media", self._guard(self._upload))
        app.router.add_get(prefix + "/{node}/message_templates", self._guard(self._templates))
        app.router.add_get(prefix + "/{node}", self._guard(self._node))
        app.router.add_get("/_files/{media_id}", self._guard(self._download))
        app.router.add_route("*", "/{tail:.*}", self._guard(self._unknown))
        return app

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:PORT/v21.0`: the Graph base including the version."""
        return f"{self.root_url}/{VERSION}"

    # ------------------------------------------------------------------ records and switches

    def fail_next(
        self,
        code: int,
        message: str | None = None,
        *,
        status: int = 400,
        times: int = 1,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """The next `times` message sends answer this Graph error (title from the code)."""
        title = message or ERROR_TITLES.get(code, "Unknown error")
        for _ in range(times):
            self._failures.append(_Failure(code, title, status, dict(headers or {})))

    # ------------------------------------------------------------------ replies and reactions

    def reaction_message(self, wa_id: str, wamid: str, emoji: str | None) -> dict[str, Any]:
        """A `value.messages[]` reaction on `wamid`, from the documented sample: with `emoji`,
        or without one (the reaction taken back)."""
        sample = "reaction_added" if emoji else "reaction_removed"
        message = self.sample_message(sample, wa_id)
        message["reaction"] = {"message_id": wamid}
        if emoji:
            message["reaction"]["emoji"] = emoji
        return message

    def answer_message(self, wa_id: str, text: str, wamid: str) -> dict[str, Any]:
        """A `value.messages[]` text answering `wamid`, from the documented sample with a
        `context` (less its `referred_product`, which only a product question carries)."""
        message = self.sample_message("text_reply_context", wa_id)
        number = self._number_of(wamid) or self.phone_number_ids[0]
        message["context"] = {"from": f"1555{number}", "id": wamid}
        message["text"] = {"body": text}
        return message

    async def customer_reacts(self, wa_id: str, wamid: str, emoji: str | None) -> int:
        """The customer reacts with `emoji` on message `wamid` (None: takes it back)."""
        payload = self.build_payload(
            messages=[self.reaction_message(wa_id, wamid, emoji)],
            contacts=[self.contact(wa_id)],
            phone_number_id=self._number_of(wamid),
        )
        return await self.deliver(payload)

    async def customer_replies(self, wa_id: str, text: str, wamid: str) -> int:
        """The customer answers message `wamid` with `text`."""
        message = self.answer_message(wa_id, text, wamid)
        return await self._customer(wa_id, message, "Customer", self._number_of(wamid))

    def _number_of(self, wamid: str) -> str | None:
        record = next((body for body in self.sent if body["_id"] == wamid), None)
        return str(record["_phone_number_id"]) if record is not None else None

    # ------------------------------------------------------------------ inbound: delivery

    async def customer_says(
        self, wa_id: str, text: str, *, name: str = "Customer", phone_number_id: str | None = None
    ) -> int:
        """A customer writes a text; POST it to the webhook and return the HTTP status."""
        message = self.text_message(wa_id, text)
        return await self._customer(wa_id, message, name, phone_number_id)

    async def customer_wrote_ago(
        self, wa_id: str, hours: float, text: str = "Hello?", *, name: str = "Customer"
    ) -> int:
        """A text the customer wrote `hours` ago, delivered only now (WhatsApp delivers late
        webhooks too); the fake's service window is left as it is. Return the HTTP status."""
        message = self.text_message(wa_id, text)
        message["timestamp"] = str(int(time.time() - hours * 3600))
        payload = self.build_payload(messages=[message], contacts=[self.contact(wa_id, name)])
        return await self.deliver(payload)

    async def customer_sends_media(
        self,
        wa_id: str,
        kind: str,
        data: bytes,
        mime: str,
        *,
        caption: str | None = None,
        filename: str | None = None,
        name: str = "Customer",
        phone_number_id: str | None = None,
        voice: bool = False,
    ) -> int:
        """A customer sends a file (image, document, audio, video, sticker); return the status."""
        message = self.media_message(
            wa_id, kind, data, mime, caption=caption, filename=filename, voice=voice
        )
        return await self._customer(wa_id, message, name, phone_number_id)

    async def customer_shares_location(
        self, wa_id: str, latitude: float, longitude: float, **place: str
    ) -> int:
        """A customer shares a place (`name`, `address`, `url`) or a pin; return the status."""
        message = self.location_message(wa_id, latitude, longitude, **place)
        return await self._customer(wa_id, message, "Customer", None)

    async def customer_taps(
        self,
        wa_id: str,
        title: str,
        reply_id: str,
        *,
        sample: str = "interactive_button_reply",
        customer: str = "Customer",
    ) -> int:
        """A customer taps a reply button, list row or template button; return the status."""
        message = self.reply_message(wa_id, sample, title, reply_id)
        return await self._customer(wa_id, message, customer, None)

    async def status(
        self,
        wamid: str,
        status: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        recipient: str | None = None,
        phone_number_id: str | None = None,
    ) -> int:
        """Report a status (sent, delivered, read, failed) of a sent message to the webhook."""
        record = next((body for body in self.sent if body["_id"] == wamid), None)
        if phone_number_id is None and record is not None:
            phone_number_id = record["_phone_number_id"]
        entry = self.status_object(wamid, status, errors=errors, recipient=recipient)
        return await self.deliver(
            self.build_payload(statuses=[entry], phone_number_id=phone_number_id)
        )

    async def _customer(
        self, wa_id: str, message: dict[str, Any], name: str, phone_number_id: str | None
    ) -> int:
        # WhatsApp opens the service window when the customer writes, whatever the webhook says.
        self.last_customer_message[wa_id] = time.time()
        self.last_inbound_id = message["id"]
        payload = self.build_payload(
            messages=[message],
            contacts=[self.contact(wa_id, name)],
            phone_number_id=phone_number_id,
        )
        return await self.deliver(payload)

    # ------------------------------------------------------------------ HTTP

    @web.middleware
    async def _record(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        self.requests.append((request.method, request.path))
        return await handler(request)

    def _guard(
        self, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """Check the bearer token and turn GraphError into Graph's error answer."""

        async def guarded(request: web.Request) -> web.StreamResponse:
            try:
                if not _bearer(request, self.access_token):
                    raise GraphError(190, status=401)
                return await handler(request)
            except GraphError as exc:
                return exc.response()

        return guarded

    async def _unknown(self, request: web.Request) -> web.StreamResponse:
        raise GraphError(2500, "Unknown path components: " + request.path)

    def _number(self, request: web.Request, verb: str) -> str:
        node = request.match_info["node"]
        if node not in self.phone_number_ids:
            raise GraphError(
                100,
                f"Unsupported {verb} request. Object with ID '{node}' does not exist, cannot be"
                " loaded due to missing permissions, or does not support this operation",
                subcode=33,
            )
        return node

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        number = self._number(request, "post")
        try:
            body = await request.json()
        except ValueError:
            raise GraphError(100, details="the request body is not valid JSON") from None
        if self._failures:
            failure = self._failures.popleft()
            raise GraphError(
                failure.code,
                failure.message,
                status=failure.status,
                details=failure.message,
                headers=failure.headers,
            )
        if not isinstance(body, dict):
            raise GraphError(100, details="the request body must be a JSON object")
        to, kind = self._check_message(body)
        wamid = new_wamid()
        self.sent.append({**body, "_id": wamid, "_phone_number_id": number})
        for status in list(self.report_before_answer):
            if self.webhook_url:
                await self.status(wamid, status, phone_number_id=number)
        message: dict[str, Any] = {"id": wamid}
        if kind == "template":
            message["message_status"] = "accepted"
        return web.json_response(
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": to, "wa_id": to}],
                "messages": [message],
            }
        )

    def _check_message(self, body: Mapping[str, Any]) -> tuple[str, str]:
        """Validate a message body as the Cloud API does; return (to, type)."""
        product = body.get("messaging_product")
        if product is None:
            raise GraphError(100, "The parameter messaging_product is required.")
        if product != "whatsapp":
            raise GraphError(100, "Param messaging_product must be one of {WHATSAPP}")
        to = body.get("to")
        if not isinstance(to, str) or not to:
            raise GraphError(100, "The parameter to is required.")
        if body.get("recipient_type", "individual") != "individual":
            raise GraphError(100, "Param recipient_type must be one of {INDIVIDUAL, GROUP}")
        kind = body.get("type", "text")
        if kind not in _TYPES:
            raise GraphError(100, f"Param type must be one of {{{', '.join(sorted(_TYPES))}}}")
        content = body.get(kind)
        if not isinstance(content, dict):
            raise GraphError(100, f"The parameter {kind} is required.")
        if kind == "text":
            _check_text(content)
        elif kind in _MEDIA_TYPES:
            self._check_media(kind, content)
        elif kind == "template":
            self._check_template(content)
        if self.enforce_window and kind != "template":
            last = self.last_customer_message.get(to)
            if last is None or time.time() - last > WINDOW_SECONDS:
                raise GraphError(131047, details=_WINDOW_DETAILS)
        return to, kind

    def _check_media(self, kind: str, content: Mapping[str, Any]) -> None:
        media_id, link = content.get("id"), content.get("link")
        if (media_id is None) == (link is None):
            raise GraphError(100, f"Param {kind} must have exactly one of id or link")
        caption = content.get("caption")
        if caption is not None:
            if kind in ("audio", "sticker"):
                raise GraphError(100, f"Param {kind}['caption'] is not a valid parameter")
            if not isinstance(caption, str) or len(caption) > CAPTION_LIMIT:
                raise GraphError(
                    100, f"Param {kind}['caption'] must be at most {CAPTION_LIMIT} characters"
                )
        if "filename" in content and kind != "document":
            raise GraphError(100, f"Param {kind}['filename'] is not a valid parameter")
        if media_id is None:
            return  # a link: WhatsApp would fetch it
        stored = self.media.get(str(media_id))
        if stored is None:
            raise GraphError(131053, details=f"Unable to retrieve media {media_id}")
        mime = stored[1].partition(";")[0].strip().lower()
        accepted = _ACCEPTED_MIME.get(kind)
        if accepted is not None and mime not in accepted:
            raise GraphError(131053, details=f"Unsupported {kind} mime type {mime}")

    def _check_template(self, content: Mapping[str, Any]) -> None:
        name = content.get("name")
        language = content.get("language")
        code = language.get("code") if isinstance(language, dict) else None
        if not isinstance(name, str) or not isinstance(code, str):
            raise GraphError(100, "The parameters template['name'] and ['language'] are required.")
        template = next(
            (
                t
                for t in self.templates
                if t.get("name") == name
                and t.get("language") == code
                and t.get("status") == "APPROVED"
            ),
            None,
        )
        if template is None:
            raise GraphError(132001, details=f"template name ({name}) does not exist in {code}")
        body_text = next(
            (c.get("text", "") for c in template.get("components", []) if c.get("type") == "BODY"),
            "",
        )
        expected = len(set(_PLACEHOLDER.findall(body_text)))
        given = 0
        components = content.get("components", [])
        if not isinstance(components, list):
            raise GraphError(100, "Param template['components'] must be an array")
        for component in components:
            if not isinstance(component, dict) or not isinstance(component.get("type"), str):
                raise GraphError(100, "Param template['components'][] must have a type")
            if component["type"].lower() != "body":
                continue
            parameters = component.get("parameters", [])
            for parameter in parameters if isinstance(parameters, list) else [None]:
                if (
                    not isinstance(parameter, dict)
                    or parameter.get("type") != "text"
                    or not isinstance(parameter.get("text"), str)
                ):
                    raise GraphError(
                        132012, "Parameter format does not match format in the " "created template"
                    )
                given += 1
        if given != expected:
            raise GraphError(
                132000,
                details=(
                    f"body: number of localizable_params ({given}) does not match the expected"
                    f" number of params ({expected})"
                ),
            )

    async def _upload(self, request: web.Request) -> web.StreamResponse:
        self._number(request, "post")
        if request.content_type != "multipart/form-data":
            raise GraphError(100, "The parameter file is required.")
        form = await request.post()
        if form.get("messaging_product") != "whatsapp":
            raise GraphError(100, "The parameter messaging_product is required.")
        mime = form.get("type")
        if not isinstance(mime, str) or not mime:
            raise GraphError(100, "The parameter type is required.")
        upload = form.get("file")
        if not isinstance(upload, web.FileField):
            raise GraphError(100, "The parameter file is required.")
        data = upload.file.read()
        if not data:
            raise GraphError(131053, details="the uploaded file is empty")
        media_id = new_media_id()
        self.media[media_id] = (data, mime, upload.filename)
        return web.json_response({"id": media_id})

    async def _node(self, request: web.Request) -> web.StreamResponse:
        node = request.match_info["node"]
        if node in self.media:
            data, mime, _ = self.media[node]
            return web.json_response(
                {
                    "messaging_product": "whatsapp",
                    "url": f"{self.root_url}/_files/{node}",
                    "mime_type": mime,
                    "sha256": hashlib.sha256(data).hexdigest(),
                    "file_size": len(data),
                    "id": node,
                }
            )
        if node in self.phone_number_ids:
            return web.json_response(
                {
                    "verified_name": "Test Business",
                    "display_phone_number": f"+1 555 {node}",
                    "id": node,
                    "quality_rating": "GREEN",
                }
            )
        raise GraphError(
            100,
            f"Unsupported get request. Object with ID '{node}' does not exist, cannot be loaded"
            " due to missing permissions, or does not support this operation",
            subcode=33,
        )

    async def _download(self, request: web.Request) -> web.StreamResponse:
        media_id = request.match_info["media_id"]
        stored = self.media.get(media_id)
        if stored is None:
            return web.Response(status=404, text="Not Found")
        self.downloads.append(media_id)
        data, mime, _ = stored
        return web.Response(body=data, headers={"Content-Type": mime})

    async def _templates(self, request: web.Request) -> web.StreamResponse:
        node = request.match_info["node"]
        if node != self.waba_id:
            raise GraphError(100, f"Object with ID '{node}' does not exist", subcode=33)
        try:
            limit = int(request.query.get("limit", "25"))
            start = int(base64.b64decode(request.query["after"])) if "after" in request.query else 0
        except ValueError:
            raise GraphError(100, "Invalid paging parameters") from None
        limit = max(1, min(limit, 1000))
        page = self.templates[start : start + limit]
        end = start + len(page)
        answer: dict[str, Any] = {"data": page}
        if page:
            cursors = {
                "before": base64.b64encode(str(start).encode()).decode(),
                "after": base64.b64encode(str(end).encode()).decode(),
            }
            answer["paging"] = {"cursors": cursors}
            if end < len(self.templates):
                query = urlencode({"limit": limit, "after": cursors["after"]})
                answer["paging"]["next"] = f"{self.base_url}/{node}/message_templates?{query}"
        return web.json_response(answer)


def _check_text(content: Mapping[str, Any]) -> None:
    text = content.get("body")
    if not isinstance(text, str) or not text.strip():
        raise GraphError(100, "The parameter text['body'] is required.")
    if len(text) > TEXT_LIMIT:
        raise GraphError(100, f"Param text['body'] must be at most {TEXT_LIMIT} characters long.")
    preview = content.get("preview_url", False)
    if not isinstance(preview, bool):
        raise GraphError(100, "Param text['preview_url'] must be a boolean.")
