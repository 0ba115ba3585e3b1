"""A fake Twilio Programmable Messaging API that speaks the real wire format.

It runs as a real aiohttp server on 127.0.0.1, so a connector's real HTTP code runs against it:
`POST {base_url}/2010-04-01/Accounts/{AccountSid}/Messages.json` with HTTP basic auth and a
urlencoded form, answered 201 with the Message resource as JSON or with Twilio's error JSON
`{"code", "message", "more_info", "status"}`. Like Twilio, it fetches every MediaUrl of an MMS
before answering. Customer MMS media is served at the Media resource URL (basic auth required),
which redirects to a storage host on another port, like Twilio's redirect to its storage.

The inbound side plays Twilio calling the bridge: `customer_texts()` posts an incoming-message
webhook to `webhook_url`, `status()` a status callback to `status_url`, both signed with
X-Twilio-Signature exactly as Twilio signs them. Both are built from the request bodies Twilio
documents, kept in tests/corpus/twilio/: the fake puts in its own sids, numbers and text.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import re
import secrets
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import aiohttp
from aiohttp import web

from tests.fakes.server import FakeServer

SIGNATURE_HEADER = "X-Twilio-Signature"
API_VERSION = "2010-04-01"
DEFAULT_ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
BODY_LIMIT = 1600
MEDIA_LIMIT = 10
# Twilio acts on these keywords itself on long codes and toll-free numbers.
STOP_WORDS = frozenset(
    {"stop", "stopall", "unsubscribe", "cancel", "end", "quit", "revoke", "optout"}
)
START_WORDS = frozenset({"start", "unstop", "yes"})
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")

# Twilio's own wording for the errors the fake answers (twilio.com/docs/api/errors).
MESSAGES: Mapping[int, str] = {
    20003: "Authenticate",
    20404: "The requested resource was not found",
    20429: "Too Many Requests",
    21211: "Invalid 'To' Phone Number",
    21602: "Message body is required.",
    21603: "A 'From' phone number is required.",
    21604: "A 'To' phone number is required.",
    21610: "Attempt to send to unsubscribed recipient",
    21617: "The concatenated message body exceeds the 1600 character limit.",
    21623: "Number of media files exceeds allowed limit",
    21660: "Mismatch between the 'From' number and the account",
}

Params = Mapping[str, str | Sequence[str]] | Iterable[tuple[str, str]]

CORPUS = Path(__file__).resolve().parent.parent / "corpus" / "twilio"


def sample(name: str) -> dict[str, str]:
    """A request body of tests/corpus/twilio (`inbound_sms`, `status_sent`, …), in its order."""
    body = (CORPUS / f"{name}.form").read_text(encoding="utf-8").strip()
    return dict(parse_qsl(body, keep_blank_values=True, strict_parsing=True))


def _pairs(params: Params) -> list[tuple[str, str]]:
    """Form parameters as (name, value) pairs; a sequence value is a repeated parameter."""
    if isinstance(params, Mapping):
        pairs: list[tuple[str, str]] = []
        for name, value in params.items():
            if isinstance(value, str):
                pairs.append((name, value))
            else:
                pairs.extend((name, item) for item in value)
        return pairs
    return list(params)


def compute_signature(token: str, url: str, params: Params) -> str:
    """X-Twilio-Signature: base64(HMAC-SHA1(token, url + name+value of each param by name))."""
    values: dict[str, set[str]] = {}
    for name, value in _pairs(params):
        values.setdefault(name, set()).add(value)
    data = url + "".join(name + value for name in sorted(values) for value in sorted(values[name]))
    digest = hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


class _TwilioError(Exception):
    """An error answer of the REST API."""

    def __init__(
        self,
        code: int,
        message: str | None = None,
        status: int = 400,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message or MESSAGES.get(code, f"Error {code}")
        self.status = status
        self.headers = dict(headers or {})

    def response(self) -> web.Response:
        body = {
            "code": self.code,
            "message": self.message,
            "more_info": f"https://www.twilio.com/docs/errors/{self.code}",
            "status": self.status,
        }
        return web.json_response(body, status=self.status, headers=self.headers)


@dataclass
class _Media:
    data: bytes = field(repr=False)
    content_type: str


def _sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


def _rfc2822(moment: datetime) -> str:
    return format_datetime(moment, usegmt=True)


class FakeTwilio(FakeServer):
    """Twilio's Messages API on 127.0.0.1 with a free port; `base_url` is the api_base."""

    def __init__(
        self,
        *,
        account_sid: str = DEFAULT_ACCOUNT_SID,
        auth_token: str = "twilio-auth-token-0123",
        numbers: Sequence[str] = ("+15005550006",),
    ) -> None:
        super().__init__()
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.numbers = tuple(numbers)
        # The bridge's public URLs for incoming messages and for status callbacks (set by tests).
        self.webhook_url = ""
        self.status_url = ""
        # When set (e.g. the bridge's local address), requests go there instead of the signed
        # URL's scheme://host:port, like a reverse proxy in front of the bridge.
        self.connect_to: str | None = None
        # Messages.json POSTs that were accepted: their form fields, MediaUrl as a list, plus
        # "_sid", "_media" (bytes, content type of each MediaUrl fetched) and "_media_status".
        self.sent: list[dict[str, Any]] = []
        # Every Messages.json POST, refused ones included: form fields and "_status".
        self.requests: list[dict[str, Any]] = []
        # Recipients who replied STOP: sends to them answer 21610.
        self.opted_out: set[str] = set()
        # Statuses to post to each accepted message's StatusCallback, in order.
        self.auto_status: list[str] | None = None
        # (sid, status, HTTP status of the bridge's answer) for every automatic callback.
        self.callbacks: list[tuple[str, str, int]] = []
        # The Authorization header (or None) of each request the storage host received.
        self.storage_auth: list[str | None] = []
        # The Media resource redirects to the storage host, as Twilio does; False serves it.
        self.media_redirect = True
        self.last_inbound_id: str | None = None
        # (status, content type, text) of the bridge's last answer to a webhook.
        self.last_answer: tuple[int, str, str] | None = None
        self._failures: deque[_TwilioError] = deque()
        self._media: dict[tuple[str, str], _Media] = {}
        self._storage: dict[str, _Media] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._storage_url: str | None = None

    # ------------------------------------------------------------------ lifecycle

    def app(self) -> web.Application:
        """The Messages resource and the Media resource of the REST API."""
        app = web.Application()
        app.router.add_get("/2010-04-01/Accounts/{account}.json", self._get_account)
        app.router.add_post("/2010-04-01/Accounts/{account}/Messages.json", self._create_message)
        app.router.add_get(
            "/2010-04-01/Accounts/{account}/Messages/{message}/Media/{media}", self._get_media
        )
        return app

    async def start(self) -> None:
        """Listen on 127.0.0.1 (API) and on a second port (the media storage host)."""
        await super().start()
        storage = web.Application()
        storage.router.add_get("/media/{key}", self._get_stored)
        self._storage_url = await self.listen(storage)

    async def stop(self) -> None:
        """Cancel pending status callbacks and shut both servers down."""
        tasks, self._tasks = self._tasks, set()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await super().stop()

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:PORT`, without a trailing slash: the connector's api_base."""
        return self.root_url

    async def settle(self) -> None:
        """Wait until every automatic status callback has been posted."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # ------------------------------------------------------------------ behaviour switches

    def fail_next(
        self,
        code: int,
        message: str | None = None,
        *,
        status: int = 400,
        times: int = 1,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """The next `times` Messages.json POSTs answer this Twilio error instead of sending."""
        for _ in range(times):
            self._failures.append(_TwilioError(code, message, status, headers))

    def messages_to(self, number: str) -> list[dict[str, Any]]:
        """The accepted messages to one recipient, oldest first."""
        return [record for record in self.sent if record.get("To") == number]

    # ------------------------------------------------------------------ acting as Twilio

    def sign(self, url: str, params: Params, *, token: str | None = None) -> str:
        """The X-Twilio-Signature Twilio would send with `params` posted to `url`."""
        return compute_signature(token or self.auth_token, url, params)

    async def customer_texts(
        self,
        from_: str,
        body: str,
        *,
        to: str | None = None,
        media: Sequence[tuple[bytes, str]] = (),
        messaging_service_sid: str | None = None,
    ) -> int:
        """A customer sends an SMS (or MMS with `media`) to `to`; return the webhook's status."""
        to = to or self.numbers[0]
        # Twilio gives MMS message sids the MM prefix and SMS ones SM.
        sid = _sid("MM" if media else "SM")
        # The documented body of an incoming message, with this message's values put in.
        params = {
            name: value
            for name, value in sample("inbound_mms" if media else "inbound_sms").items()
            if not name.startswith(("MediaUrl", "MediaContentType"))
        }
        params.update(
            SmsMessageSid=sid,
            SmsSid=sid,
            MessageSid=sid,
            NumMedia=str(len(media)),
            Body=body,
            To=to,
            From=from_,
            AccountSid=self.account_sid,
            NumSegments=str(1 if len(body) <= 160 else -(-len(body) // 153)),
        )
        if messaging_service_sid is not None:
            params["MessagingServiceSid"] = messaging_service_sid
        for index, (data, content_type) in enumerate(media):
            media_sid = _sid("ME")
            self._media[(sid, media_sid)] = _Media(data, content_type)
            params[f"MediaContentType{index}"] = content_type
            params[f"MediaUrl{index}"] = (
                f"{self.base_url}/{API_VERSION}/Accounts/{self.account_sid}"
                f"/Messages/{sid}/Media/{media_sid}"
            )
        # Twilio itself honours the opt-out keywords on long codes and toll-free numbers.
        keyword = body.strip().lower()
        if keyword in STOP_WORDS:
            self.opted_out.add(from_)
        elif keyword in START_WORDS:
            self.opted_out.discard(from_)
        self.last_inbound_id = sid
        return await self.deliver(self._required(self.webhook_url, "webhook_url"), params)

    async def status(
        self,
        sid: str,
        status: str,
        *,
        error_code: int | str | None = None,
        from_: str | None = None,
        to: str | None = None,
    ) -> int:
        """Post a status callback for message `sid` to `status_url`; return the answer's status."""
        record = next((r for r in self.sent if r["_sid"] == sid), None)
        url = self._required(self.status_url, "status_url")
        params = self._status_params(sid, status, record, error_code, from_, to)
        return await self.deliver(url, params)

    async def deliver(
        self,
        url: str,
        params: Params,
        *,
        sign: bool = True,
        token: str | None = None,
        signature: str | None = None,
    ) -> int:
        """POST `params` as Twilio does, signed over `url`; return the HTTP status of the answer.

        `signature` is sent as it is when given; `sign=False` sends no signature at all;
        `token` signs with another auth token.
        """
        pairs = _pairs(params)
        headers = {
            "Content-Type": "application/x-www-form-urlencoded; charset=UTF-8",
            "User-Agent": "TwilioProxy/1.1",
            "I-Twilio-Idempotency-Token": secrets.token_hex(16),
        }
        if signature is not None:
            headers[SIGNATURE_HEADER] = signature
        elif sign:
            headers[SIGNATURE_HEADER] = self.sign(url, pairs, token=token)
        async with self._session().post(
            self._target(url), data=urlencode(pairs).encode(), headers=headers
        ) as response:
            text = await response.text()
            self.last_answer = (response.status, response.content_type, text)
            return response.status

    # ------------------------------------------------------------------ REST API

    async def _create_message(self, request: web.Request) -> web.Response:
        form = await request.post()
        fields: dict[str, Any] = {
            name: str(value) for name, value in form.items() if name != "MediaUrl"
        }
        fields["MediaUrl"] = [str(value) for value in form.getall("MediaUrl", [])]
        try:
            self._authenticate(request)
            if self._failures:
                raise self._failures.popleft()
            record = await self._accept(fields)
        except _TwilioError as exc:
            self.requests.append({**fields, "_status": exc.status})
            return exc.response()
        self.requests.append({**fields, "_status": 201})
        self.sent.append(record)
        if self.auto_status and record.get("StatusCallback"):
            task = asyncio.create_task(self._auto_callbacks(record, list(self.auto_status)))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return web.json_response(self._resource(record), status=201)

    def _authenticate(self, request: web.Request) -> None:
        header = request.headers.get("Authorization", "")
        try:
            auth = aiohttp.BasicAuth.decode(header)
        except ValueError:
            raise _TwilioError(20003, status=401) from None
        if not (
            hmac.compare_digest(auth.login, self.account_sid)
            and hmac.compare_digest(auth.password, self.auth_token)
        ):
            raise _TwilioError(20003, status=401)
        if request.match_info["account"] != self.account_sid:
            raise _TwilioError(20404, status=404)

    async def _accept(self, fields: dict[str, Any]) -> dict[str, Any]:
        to = fields.get("To", "")
        if not to:
            raise _TwilioError(21604)
        if not _E164.fullmatch(to):
            raise _TwilioError(21211, f"The 'To' number {to} is not a valid phone number.")
        body = fields.get("Body", "")
        media_urls: list[str] = fields["MediaUrl"]
        if not body and not media_urls:
            raise _TwilioError(21602)
        if len(body) > BODY_LIMIT:
            raise _TwilioError(21617)
        if len(media_urls) > MEDIA_LIMIT:
            raise _TwilioError(21623)
        if not fields.get("MessagingServiceSid"):
            sender = fields.get("From", "")
            if not sender:
                raise _TwilioError(21603)
            if sender not in self.numbers:
                raise _TwilioError(
                    21660,
                    f"Mismatch between the 'From' number {sender} and the account "
                    f"{self.account_sid}",
                )
        if to in self.opted_out:
            raise _TwilioError(21610)
        record = {**fields, "_sid": _sid("SM"), "_media": [], "_media_status": []}
        # Twilio fetches every MediaUrl when it accepts the message.
        for url in media_urls:
            data, content_type, status = await self._fetch(url)
            record["_media"].append((data, content_type))
            record["_media_status"].append(status)
        return record

    async def _fetch(self, url: str) -> tuple[bytes, str, int]:
        try:
            async with self._session().get(url) as response:
                data = await response.read()
                return data, response.content_type, response.status
        except (aiohttp.ClientError, TimeoutError):
            return b"", "", 0

    def _resource(self, record: Mapping[str, Any]) -> dict[str, Any]:
        now = _rfc2822(datetime.now(UTC))
        sid = record["_sid"]
        body = record.get("Body", "")
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}"
        service = record.get("MessagingServiceSid")
        return {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": body,
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            # With a messaging service Twilio picks the sender later: "from" is null at first.
            "from": None if service else record.get("From"),
            "messaging_service_sid": service,
            "num_media": str(len(record["MediaUrl"])),
            "num_segments": str(max(1, -(-len(body) // 153))) if len(body) > 160 else "1",
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "accepted" if service else "queued",
            "subresource_uris": {"media": f"{uri}/Media.json"},
            "to": record["To"],
            "uri": f"{uri}.json",
        }

    async def _get_account(self, request: web.Request) -> web.Response:
        """The Account resource: what a credentials check reads."""
        try:
            self._authenticate(request)
        except _TwilioError as exc:
            return exc.response()
        return web.json_response(
            {
                "sid": self.account_sid,
                "friendly_name": "Test Account",
                "status": "active",
                "type": "Full",
                "uri": f"/{API_VERSION}/Accounts/{self.account_sid}.json",
            }
        )

    async def _get_media(self, request: web.Request) -> web.StreamResponse:
        try:
            self._authenticate(request)
        except _TwilioError as exc:
            return exc.response()
        key = (request.match_info["message"], request.match_info["media"])
        stored = self._media.get(key)
        if stored is None:
            return _TwilioError(20404, status=404).response()
        if not self.media_redirect:
            return web.Response(body=stored.data, content_type=stored.content_type)
        token = secrets.token_urlsafe(16)
        self._storage[token] = stored
        # Twilio answers 307 with a signed storage URL on another host.
        location = f"{self._storage_url}/media/{token}?X-Amz-Signature={secrets.token_hex(8)}"
        raise web.HTTPTemporaryRedirect(location)

    async def _get_stored(self, request: web.Request) -> web.StreamResponse:
        authorization = request.headers.get("Authorization")
        self.storage_auth.append(authorization)
        if authorization is not None:
            # S3 refuses a presigned URL that also carries an Authorization header.
            return web.Response(
                status=400,
                text="<Error><Code>InvalidArgument</Code><Message>Only one auth mechanism "
                "allowed</Message></Error>",
                content_type="application/xml",
            )
        stored = self._storage.get(request.match_info["key"])
        if stored is None:
            return web.Response(status=403, text="<Error><Code>AccessDenied</Code></Error>")
        return web.Response(body=stored.data, content_type=stored.content_type)

    # ------------------------------------------------------------------ callbacks

    def _status_params(
        self,
        sid: str,
        status: str,
        record: Mapping[str, Any] | None,
        error_code: int | str | None,
        from_: str | None,
        to: str | None,
    ) -> dict[str, str]:
        record = record or {}
        service = record.get("MessagingServiceSid")
        # The documented callback for this status (a queued one's shape for the others).
        known = status if (CORPUS / f"status_{status}.form").exists() else "queued"
        params = {
            name: value
            for name, value in sample(f"status_{known}").items()
            if name not in ("MessagingServiceSid", "ErrorCode")
        }
        params.update(
            SmsSid=sid,
            SmsStatus=status,
            MessageStatus=status,
            MessageSid=sid,
            AccountSid=self.account_sid,
            # With a messaging service, From is the number Twilio picked from its pool.
            From=from_ or record.get("From") or self.numbers[0],
        )
        if "To" in params or to is not None:
            params["To"] = to or record.get("To") or "+15550000000"
        if "RawDlrDoneDate" in params:
            params["RawDlrDoneDate"] = datetime.now(UTC).strftime("%y%m%d%H%M")
        if service:
            params["MessagingServiceSid"] = service
        if error_code is not None:
            params["ErrorCode"] = str(error_code)
        return params

    async def _auto_callbacks(self, record: Mapping[str, Any], statuses: list[str]) -> None:
        url = record["StatusCallback"]
        for status in statuses:
            params = self._status_params(record["_sid"], status, record, None, None, None)
            try:
                answer = await self.deliver(url, params)
            except aiohttp.ClientError:
                answer = 0
            self.callbacks.append((record["_sid"], status, answer))

    # ------------------------------------------------------------------ helpers

    def _target(self, url: str) -> str:
        """Where a request to the bridge's public `url` really goes."""
        if not self.connect_to:
            return url
        parts = urlsplit(url)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        return self.connect_to.rstrip("/") + path

    @staticmethod
    def _required(url: str, name: str) -> str:
        if not url:
            msg = f"FakeTwilio.{name} is not set"
            raise RuntimeError(msg)
        return url
