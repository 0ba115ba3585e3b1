"""A fake Messenger Platform (Graph API) that speaks the real wire format and records sends.

It runs as a real aiohttp server on 127.0.0.1, so a connector's HTTP code runs against it:
`POST {base_url}/{page_id}/messages` (the Send API, JSON or multipart with `filedata`) and
`GET {base_url}/{psid}?fields=first_name,last_name` (the user profile API) and the page's feed
(`POST {base_url}/{page_id}/feed` with `message` → `{"id": "<page>_<post>"}`, and
`GET {base_url}/{page_id}/feed` → `{"data": [{"id", "message", "created_time"}], "paging"}`,
newest first), with the page token as `Authorization: Bearer …` or an `access_token`
parameter, as Graph takes either.
Errors are Graph's `{"error": {"message", "type", "code", "error_subcode", "fbtrace_id"}}`.
Customer files are served without a token at `<root>/_cdn/<name>`, as Meta's CDN does.

The inbound side plays Meta: the `customer_*`, `echo`, `delivery`, `read`, `referral`,
`postback` and `edit` helpers build webhook bodies from the samples in `tests/corpus/messenger/`
(ids, times and texts filled in), sign them with the app secret
(`X-Hub-Signature-256: sha256=<hex HMAC>`) and POST them to `webhook_url`.
"""

from __future__ import annotations

import asyncio
import copy
import hmac
import json
import mimetypes
import secrets
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.meta import MetaFake, corpus_sample

VERSION = "v21.0"
TEXT_LIMIT = 2000
UPLOAD_LIMIT = 25 * 1024 * 1024
RESPONSE_WINDOW = 24 * 3600.0
HUMAN_AGENT_WINDOW = 7 * 24 * 3600.0
MESSAGING_TYPES = frozenset({"RESPONSE", "UPDATE", "MESSAGE_TAG"})
TAGS = frozenset(
    {"HUMAN_AGENT", "CONFIRMED_EVENT_UPDATE", "POST_PURCHASE_UPDATE", "ACCOUNT_UPDATE"}
)
ATTACHMENT_TYPES = frozenset({"image", "video", "audio", "file"})
# A page post's message is at most 63,206 characters.
POST_LIMIT = 63_206
OUTSIDE_WINDOW = (
    "(#10) This message is sent outside of allowed window. Learn more about the new policy "
    "here: https://developers.facebook.com/docs/messenger-platform/policy-overview"
)
_DEFAULT_MESSAGES = {
    1: "An unknown error occurred",
    2: "An unexpected error has occurred. Please retry your request later.",
    4: "(#4) Application request limit reached",
    10: OUTSIDE_WINDOW,
    100: "(#100) Invalid parameter",
    17: "(#17) User request limit reached",
    32: "(#32) Page request limit reached",
    190: "Invalid OAuth access token - Cannot parse access token",
    200: "(#200) This person isn't receiving messages from you right now.",
    551: "(#551) This person isn't available right now.",
    613: "(#613) Calls to this api have exceeded the rate limit.",
    1200: "(#1200) Temporary send message failure. Please try again later",
}


class GraphError(Exception):
    """An error answer of the Graph API."""

    def __init__(
        self,
        code: int,
        message: str | None = None,
        *,
        subcode: int | None = None,
        status: int = 400,
        headers: Mapping[str, str] | None = None,
        kind: str | None = None,
    ) -> None:
        text = message or _DEFAULT_MESSAGES.get(code, f"(#{code}) Error")
        super().__init__(text)
        self.code = code
        self.message = text
        self.subcode = subcode
        self.status = status
        self.headers = dict(headers or {})
        self.kind = kind or ("OAuthException" if code in (10, 100, 190, 200, 551) else "Exception")

    def response(self) -> web.Response:
        """The error as Graph answers it."""
        error: dict[str, Any] = {
            "message": self.message,
            "type": self.kind,
            "code": self.code,
            "fbtrace_id": "A" + secrets.token_urlsafe(16),
        }
        if self.subcode is not None:
            error["error_subcode"] = self.subcode
        return web.json_response({"error": error}, status=self.status, headers=self.headers)


@dataclass
class _Planned:
    code: int
    message: str | None
    subcode: int | None
    status: int
    headers: Mapping[str, str] | None = field(default=None)

    def error(self) -> GraphError:
        return GraphError(
            self.code, self.message, subcode=self.subcode, status=self.status, headers=self.headers
        )


class FakeMessenger(MetaFake):
    """A Graph API server on 127.0.0.1 with a free port; `base_url` is the connector's api_base."""

    def __init__(
        self,
        *,
        page_ids: Sequence[str] = ("3003",),
        app_secret: str = "fb-app-secret-0123456789",
        verify_token: str = "fb-verify-token-0123",
        page_token: str = "fb-page-token",
    ) -> None:
        super().__init__(app_secret=app_secret, verify_token=verify_token)
        self.page_ids = tuple(page_ids)
        self.page_token = page_token
        # Accepted Send API calls: the body as received plus "_mid" and "_page_id".
        self.sent: list[dict[str, Any]] = []
        # Refused Send API calls: the body as far as it was read plus "_error" and "_subcode".
        self.rejected: list[dict[str, Any]] = []
        self.profiles: dict[str, tuple[str, str]] = {}
        self.profile_lookups: list[str] = []
        # Seconds the profile API waits before answering (to test the connector's timeout).
        self.profile_delay = 0.0
        self.cdn: dict[str, tuple[bytes, str]] = {}
        self.downloads: list[str] = []
        # When each customer last wrote (epoch seconds): the Send API's window is counted from it.
        self.last_user_message: dict[str, float] = {}
        self.enforce_window = True
        self.last_inbound_id: str | None = None
        self.last_media_url: str | None = None
        self.last_payload: dict[str, Any] | None = None
        self._failures: deque[_Planned] = deque()
        # Accepted page posts: {"message", "_id", "_page_id", "_at"}, oldest first.
        self.feed: list[dict[str, Any]] = []
        # Refused page posts: the parameters as far as they were read plus "_error".
        self.feed_rejected: list[dict[str, Any]] = []
        # Whether the page token may post on the page (pages_manage_posts).
        self.can_post = True
        # Page posts accepted whose answer is lost (Graph answers a transient error after
        # posting): what a timeout or a restart looks like to the caller.
        self.lose_feed_answers = 0
        self._feed_failures: deque[_Planned] = deque()
        self._edits: dict[str, int] = {}
        self._last_ms = 0

    # ------------------------------------------------------------------ lifecycle

    def app(self) -> web.Application:
        """The Send API, the user profile API and the CDN."""
        app = web.Application(client_max_size=UPLOAD_LIMIT + 1024 * 1024)
        app.router.add_post(f"/{VERSION}/{{page_id}}/messages", self._messages)
        app.router.add_get(f"/{VERSION}/{{psid}}", self._profile)
        app.router.add_post(f"/{VERSION}/{{page_id}}/feed", self._feed_post)
        app.router.add_get(f"/{VERSION}/{{page_id}}/feed", self._feed_get)
        app.router.add_get("/_cdn/{name}", self._download)
        return app

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:PORT/v21.0`: the Graph API base a page's `api_base` points at."""
        return f"{self.root_url}/{VERSION}"

    # ------------------------------------------------------------------ records and switches

    def messages_to(self, psid: str) -> list[dict[str, Any]]:
        """The accepted Send API calls to a person, oldest first."""
        return [body for body in self.sent if body.get("recipient", {}).get("id") == psid]

    def texts_to(self, psid: str) -> list[str]:
        """The texts sent to a person, oldest first (files left out)."""
        return [
            body["message"]["text"] for body in self.messages_to(psid) if "text" in body["message"]
        ]

    def fail_next(
        self,
        code: int,
        message: str | None = None,
        *,
        subcode: int | None = None,
        status: int = 400,
        times: int = 1,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """The next `times` Send API calls answer this Graph error instead of sending."""
        for _ in range(times):
            self._failures.append(_Planned(code, message, subcode, status, headers))

    def fail_feed_next(
        self,
        code: int,
        message: str | None = None,
        *,
        status: int = 400,
        times: int = 1,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """The next `times` page posts answer this Graph error instead of posting."""
        for _ in range(times):
            self._feed_failures.append(_Planned(code, message, None, status, headers))

    def posts_on(self, page_id: str) -> list[str]:
        """The messages posted on a page's feed, oldest first."""
        return [post["message"] for post in self.feed if post["_page_id"] == page_id]

    # ------------------------------------------------------------------ acting as Messenger

    async def customer_says(self, psid: str, text: str, *, page_id: str | None = None) -> int:
        """The person writes a text; its mid is kept in `last_inbound_id`."""
        event = self._customer_event("text_quick_reply", psid)
        del event["message"]["quick_reply"]  # typed, not tapped
        event["message"]["text"] = text
        return await self._send(event, page_id)

    async def customer_taps_quick_reply(
        self, psid: str, title: str, payload: str, *, page_id: str | None = None
    ) -> int:
        """The person taps a quick reply: its title comes as the text, with the app's payload."""
        event = self._customer_event("text_quick_reply", psid)
        event["message"].update({"text": title, "quick_reply": {"payload": payload}})
        return await self._send(event, page_id)

    async def customer_sends_media(
        self, psid: str, kind: str, data: bytes, mime: str, *, page_id: str | None = None
    ) -> int:
        """The person sends a file (image, video, audio or file) that the CDN then serves."""
        if kind not in ATTACHMENT_TYPES:
            msg = f"kind must be one of {sorted(ATTACHMENT_TYPES)}"
            raise ValueError(msg)
        event = self._customer_event("attachment_image", psid)
        [attachment] = event["message"]["attachments"]
        attachment.update({"type": kind, "payload": {"url": self._on_cdn(data, mime)}})
        return await self._send(event, page_id)

    async def customer_sends_sticker(
        self, psid: str, data: bytes, sticker_id: int, *, page_id: str | None = None
    ) -> int:
        """The person sends a sticker (a PNG on the CDN), as a `sticker` attachment."""
        event = self._customer_event("attachment_sticker", psid)
        [attachment] = event["message"]["attachments"]
        attachment["payload"].update({"url": self._on_cdn(data, "image/png")})
        attachment["payload"]["sticker_id"] = sticker_id
        return await self._send(event, page_id)

    async def echo(self, psid: str, text: str, *, page_id: str | None = None) -> int:
        """Meta echoes a message the page sent (sender is the page, recipient the person)."""
        page = page_id or self.page_ids[0]
        event = _sample_event("echo_text")
        event.update({"sender": {"id": page}, "recipient": {"id": psid}})
        event["timestamp"] = self._now_ms()
        event["message"].update({"mid": self._new_mid(), "text": text})
        del event["message"]["metadata"]  # only when the Send API call set one
        return await self._post(page, event)

    async def delivery(
        self,
        psid: str,
        watermark_ms: int,
        *,
        mids: Sequence[str] | None = None,
        page_id: str | None = None,
    ) -> int:
        """The person's device received every message the page sent before `watermark_ms`."""
        event = self._person_event("delivery", psid)
        event["delivery"]["watermark"] = watermark_ms
        if mids is not None:
            event["delivery"]["mids"] = list(mids)
        else:
            del event["delivery"]["mids"]  # "may not be present" (…/message-deliveries)
        return await self._send(event, page_id)

    async def read(self, psid: str, watermark_ms: int, *, page_id: str | None = None) -> int:
        """The person read every message the page sent before `watermark_ms`."""
        event = self._person_event("read", psid)
        event["read"]["watermark"] = watermark_ms
        return await self._send(event, page_id)

    async def referral(self, psid: str, ref: str, *, page_id: str | None = None) -> int:
        """The person opened an m.me link with `ref` in an existing thread."""
        # The fake counts opening the thread as an interaction that opens the window.
        self.last_user_message[psid] = time.time()
        event = self._person_event("referral_shortlink", psid)
        event["referral"]["ref"] = ref
        return await self._send(event, page_id)

    async def postback(
        self,
        psid: str,
        title: str,
        payload: str,
        *,
        ref: str | None = None,
        page_id: str | None = None,
    ) -> int:
        """The person tapped a button (e.g. Get Started after an m.me link with `ref`)."""
        event = self._customer_event("postback", psid, "postback")
        postback = event["postback"]
        postback.update({"title": title, "payload": payload})
        if ref is not None:
            postback["referral"].update({"ref": ref, "source": "SHORTLINK"})
        else:
            del postback["referral"]  # only when the person came through a link or an ad
        return await self._send(event, page_id)

    async def edit(self, psid: str, mid: str, text: str, *, page_id: str | None = None) -> int:
        """The person changed the text of their message `mid`."""
        self._edits[mid] = self._edits.get(mid, 0) + 1
        event = self._person_event("message_edit", psid)
        event["message_edit"].update({"mid": mid, "text": text, "num_edit": self._edits[mid]})
        return await self._send(event, page_id)

    # ------------------------------------------------------------------ replies and reactions

    async def react(
        self, psid: str, mid: str, emoji: str | None, *, page_id: str | None = None
    ) -> int:
        """The person reacts with `emoji` on message `mid` (None: takes the reaction back),
        as the documented `message_reactions` samples have it."""
        sample = "reaction_react" if emoji else "reaction_unreact"
        event = self._person_event(sample, psid)
        event["reaction"]["mid"] = mid
        if emoji:
            event["reaction"]["emoji"] = emoji
        return await self._send(event, page_id)

    async def reply(self, psid: str, text: str, mid: str, *, page_id: str | None = None) -> int:
        """The person answers message `mid` with `text` (`message.reply_to`)."""
        event = self._customer_event("text_reply_to", psid)
        event["message"]["text"] = text
        event["message"]["reply_to"]["mid"] = mid
        return await self._send(event, page_id)

    def webhook_body(self, page_id: str, *events: Mapping[str, Any]) -> dict[str, Any]:
        """A webhook body with one entry for `page_id` carrying `events`."""
        body = corpus_sample("messenger", "text_quick_reply")
        [entry] = body["entry"]
        entry.update(
            {"id": page_id, "time": self._now_ms(), "messaging": [dict(e) for e in events]}
        )
        return body

    # ------------------------------------------------------------------ HTTP: Graph API

    async def _messages(self, request: web.Request) -> web.Response:
        page_id = request.match_info["page_id"]
        body: dict[str, Any] = {}
        try:
            body = await _read_body(request)
            self._check_token(request, body)
            body.pop("access_token", None)
            if page_id not in self.page_ids:
                raise GraphError(
                    100,
                    f"(#100) Unsupported post request. Object with ID '{page_id}' does not exist",
                    subcode=33,
                )
            if self._failures:
                raise self._failures.popleft().error()
            psid = self._validate(body)
        except GraphError as exc:
            self.rejected.append({**body, "_error": exc.code, "_subcode": exc.subcode})
            return exc.response()
        mid = self._new_mid()
        self.sent.append({**body, "_mid": mid, "_page_id": page_id})
        return web.json_response({"recipient_id": psid, "message_id": mid})

    async def _feed_post(self, request: web.Request) -> web.Response:
        page_id = request.match_info["page_id"]
        params: dict[str, Any] = {}
        try:
            params = await _read_params(request)
            self._check_token(request, params)
            params.pop("access_token", None)
            self._check_page(page_id)
            if not self.can_post:
                raise GraphError(
                    200,
                    "(#200) If posting to a page, requires both pages_read_engagement and"
                    " pages_manage_posts as an admin with sufficient administrative permission",
                    kind="OAuthException",
                )
            if self._feed_failures:
                raise self._feed_failures.popleft().error()
            message = params.get("message")
            if not isinstance(message, str) or not message.strip():
                if not params.get("link"):
                    raise GraphError(100, "(#100) Missing message or attachment")
            elif len(message) > POST_LIMIT:
                raise GraphError(100, "(#100) The message is too long")
        except GraphError as exc:
            self.feed_rejected.append({**params, "_error": exc.code})
            return exc.response()
        post_id = f"{page_id}_{secrets.randbelow(10**15) + 10**15}"
        self.feed.append({**params, "_id": post_id, "_page_id": page_id, "_at": time.time()})
        if self.lose_feed_answers:
            self.lose_feed_answers -= 1
            return GraphError(2, status=500).response()
        return web.json_response({"id": post_id})

    async def _feed_get(self, request: web.Request) -> web.Response:
        page_id = request.match_info["page_id"]
        try:
            self._check_token(request, {})
            self._check_page(page_id)
        except GraphError as exc:
            return exc.response()
        try:
            limit = max(1, min(100, int(request.query.get("limit", "25"))))
        except ValueError:
            return GraphError(100, "(#100) param limit must be an integer").response()
        wanted = request.query.get("fields", "created_time,message,id").split(",")
        newest = [post for post in reversed(self.feed) if post["_page_id"] == page_id][:limit]
        data = []
        for post in newest:
            known = {
                "id": post["_id"],
                "message": post.get("message"),
                "created_time": time.strftime("%Y-%m-%dT%H:%M:%S+0000", time.gmtime(post["_at"])),
            }
            data.append({k: known[k] for k in (w.strip() for w in wanted) if known.get(k)})
        return web.json_response(
            {"data": data, "paging": {"cursors": {"before": "B", "after": "A"}}}
        )

    def _check_page(self, page_id: str) -> None:
        if page_id not in self.page_ids:
            raise GraphError(
                100,
                f"(#100) Unsupported post request. Object with ID '{page_id}' does not exist",
                subcode=33,
            )

    async def _profile(self, request: web.Request) -> web.Response:
        psid = request.match_info["psid"]
        try:
            self._check_token(request, {})
        except GraphError as exc:
            return exc.response()
        if psid in self.page_ids:  # the page's own node: what a token check reads
            return web.json_response({"name": f"Test Page {psid}", "id": psid})
        self.profile_lookups.append(psid)
        if self.profile_delay:
            await asyncio.sleep(self.profile_delay)
        names = self.profiles.get(psid)
        if names is None:
            return GraphError(
                100,
                f"Unsupported get request. Object with ID '{psid}' does not exist, cannot be "
                "loaded due to missing permissions, or does not support this operation.",
                subcode=33,
                kind="GraphMethodException",
            ).response()
        first, last = names
        known = {"first_name": first, "last_name": last, "name": f"{first} {last}".strip()}
        wanted = request.query.get("fields", "name").split(",")
        answer = {key: known[key] for key in (w.strip() for w in wanted) if key in known}
        return web.json_response({**answer, "id": psid})

    async def _download(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        stored = self.cdn.get(name)
        if stored is None:
            return web.Response(status=404, text="URL signature expired")
        self.downloads.append(name)
        data, mime = stored
        return web.Response(body=data, content_type=mime)

    def _check_token(self, request: web.Request, body: Mapping[str, Any]) -> None:
        given: str | None = None
        auth = request.headers.get("Authorization", "")
        scheme, _, value = auth.partition(" ")
        if scheme.lower() in ("bearer", "oauth") and value:
            given = value.strip()
        given = given or request.query.get("access_token") or _opt_str(body, "access_token")
        if not given:
            raise GraphError(104, "An access token is required to request this resource.")
        if not hmac.compare_digest(given.encode(), self.page_token.encode()):
            raise GraphError(190, "Invalid OAuth access token - Cannot parse access token")

    def _validate(self, body: Mapping[str, Any]) -> str:
        """Check a Send API body as Graph does; the recipient's PSID when it is acceptable."""
        recipient = body.get("recipient")
        psid = recipient.get("id") if isinstance(recipient, Mapping) else None
        if not isinstance(psid, str) or not psid:
            raise GraphError(100, "(#100) param recipient must be non-empty.")
        kind = body.get("messaging_type")
        if kind not in MESSAGING_TYPES:
            raise GraphError(
                100, "(#100) param messaging_type must be one of {RESPONSE, UPDATE, MESSAGE_TAG}"
            )
        tag = body.get("tag")
        if kind == "MESSAGE_TAG" and tag not in TAGS:
            raise GraphError(100, "(#100) Param tag must be a valid message tag")
        self._check_message(body.get("message"), body.get("filedata"))
        if self.enforce_window:
            self._check_window(psid, kind, tag)
        return psid

    def _check_message(self, message: Any, upload: Any) -> None:
        if not isinstance(message, Mapping):
            raise GraphError(100, "(#100) param message must be an object")
        has_text, has_attachment = "text" in message, "attachment" in message
        if has_text == has_attachment:
            raise GraphError(100, "(#100) Message must contain exactly one of text or attachment")
        if has_text:
            text = message["text"]
            if not isinstance(text, str) or not text.strip():
                raise GraphError(100, "(#100) param message[text] must be non-empty.")
            if len(text) > TEXT_LIMIT:
                raise GraphError(
                    100, "(#100) Length of param message[text] must be less than or equal to 2000"
                )
            return
        attachment = message["attachment"]
        kind = attachment.get("type") if isinstance(attachment, Mapping) else None
        payload = attachment.get("payload") if isinstance(attachment, Mapping) else None
        if kind not in ATTACHMENT_TYPES or not isinstance(payload, Mapping):
            raise GraphError(100, "(#100) Invalid attachment type or payload")
        if "url" in payload or "attachment_id" in payload:
            return
        if not isinstance(upload, Mapping) or not upload.get("data"):
            raise GraphError(100, "(#100) Upload attachment failure.", subcode=2018047)
        if len(upload["data"]) > UPLOAD_LIMIT:
            raise GraphError(100, "(#100) Attachment size exceeds allowable limit", subcode=2018294)

    def _check_window(self, psid: str, kind: str, tag: Any) -> None:
        last = self.last_user_message.get(psid)
        if last is None and psid not in self.profiles:
            raise GraphError(100, "(#100) No matching user found", subcode=2018001)
        age = float("inf") if last is None else time.time() - last
        # Standard messaging: 24 hours after the person's last message; HUMAN_AGENT: 7 days.
        if kind in ("RESPONSE", "UPDATE") and age > RESPONSE_WINDOW:
            raise GraphError(10, OUTSIDE_WINDOW, subcode=2018278)
        if tag == "HUMAN_AGENT" and age > HUMAN_AGENT_WINDOW:
            raise GraphError(10, OUTSIDE_WINDOW, subcode=2018278)

    # ------------------------------------------------------------------ helpers

    def _customer_event(self, sample: str, psid: str, field: str = "message") -> dict[str, Any]:
        """A corpus sample's event as the person sends it now: a new mid, kept in
        `last_inbound_id`, and the Send API's window opened."""
        event = self._person_event(sample, psid)
        event[field]["mid"] = self.last_inbound_id = self._new_mid()
        self.last_user_message[psid] = time.time()
        return event

    def _person_event(self, sample: str, psid: str) -> dict[str, Any]:
        """A corpus sample's event from the person, stamped now."""
        event = _sample_event(sample)
        event["sender"] = {"id": psid}
        event["timestamp"] = self._now_ms()
        return event

    async def _send(self, event: dict[str, Any], page_id: str | None) -> int:
        """Address an event from the person to the page and deliver it."""
        page = page_id or self.page_ids[0]
        event["recipient"] = {"id": page}
        return await self._post(page, event)

    def _on_cdn(self, data: bytes, mime: str) -> str:
        """Put a file on the fake CDN and return its signed-looking URL."""
        extension = mimetypes.guess_extension(mime) or ".bin"
        name = f"{secrets.token_hex(8)}_n{extension}"
        self.cdn[name] = (data, mime)
        url = f"{self.root_url}/_cdn/{name}?_nc_cat=1&oh={secrets.token_hex(8)}"
        self.last_media_url = url
        return url

    async def _post(self, page: str, event: Mapping[str, Any]) -> int:
        payload = self.webhook_body(page, event)
        self.last_payload = copy.deepcopy(payload)
        return await self.deliver(payload)

    def _now_ms(self) -> int:
        # Strictly increasing, so that events built in the same millisecond stay apart.
        self._last_ms = max(self._last_ms + 1, int(time.time() * 1000))
        return self._last_ms

    def _new_mid(self) -> str:
        return "m_" + secrets.token_urlsafe(24)


def _sample_event(name: str) -> dict[str, Any]:
    """The one messaging event of a Messenger corpus sample, to fill in."""
    [entry] = corpus_sample("messenger", name)["entry"]
    [event] = entry["messaging"]
    result: dict[str, Any] = event
    return result


async def _read_body(request: web.Request) -> dict[str, Any]:
    """The Send API body: JSON, or form fields with JSON-encoded recipient and message."""
    if request.content_type == "application/json":
        try:
            body = json.loads(await request.read())
        except ValueError:
            raise GraphError(100, "(#100) The parameter body could not be parsed") from None
        if not isinstance(body, dict):
            raise GraphError(100, "(#100) The parameter body must be an object")
        return body
    if request.content_type not in ("multipart/form-data", "application/x-www-form-urlencoded"):
        return dict(request.query)
    form = await request.post()
    body = {}
    for key, value in form.items():
        if isinstance(value, web.FileField):
            body[key] = {
                "filename": value.filename,
                "content_type": value.content_type,
                "data": value.file.read(),
            }
        elif key in ("recipient", "message") and isinstance(value, str):
            try:
                body[key] = json.loads(value)
            except ValueError:
                raise GraphError(100, f"(#100) param {key} must be JSON") from None
        else:
            body[key] = value
    return body


async def _read_params(request: web.Request) -> dict[str, Any]:
    """Graph parameters of a call: the query string, then a form or JSON body over it."""
    params: dict[str, Any] = dict(request.query)
    if request.content_type == "application/json":
        try:
            body = json.loads(await request.read())
        except ValueError:
            raise GraphError(100, "(#100) The parameter body could not be parsed") from None
        if not isinstance(body, dict):
            raise GraphError(100, "(#100) The parameter body must be an object")
        params.update(body)
    elif request.content_type in ("multipart/form-data", "application/x-www-form-urlencoded"):
        form = await request.post()
        params.update({k: v for k, v in form.items() if isinstance(v, str)})
    return params


def _opt_str(obj: Mapping[str, Any], key: str) -> str | None:
    value = obj.get(key)
    return value if isinstance(value, str) else None
