"""Twilio Programmable Messaging connector: customers text a Twilio number (SMS and MMS).

Twilio posts form-urlencoded webhooks signed with the account's auth token over the URL it
called; they are verified and parsed once, in `TwilioWebhook`, `parse_message` and
`parse_status`. Outbound messages go to the Messages resource of the REST API, MMS media is
published on the bridge's own signed URLs for Twilio to fetch, and every Twilio error answer is
turned into the bridge's error tree in `_raise_for`. Auth tokens and media URLs are never logged.
"""

from __future__ import annotations

import hmac
import logging
import mimetypes
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from itertools import zip_longest
from typing import Any, ClassVar, NoReturn
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit

import aiohttp
from aiohttp import web

from bridge import bodies
from bridge.config import Settings, SmsAccount
from bridge.errors import (
    BadRequest,
    ConfigError,
    OptedOut,
    PermanentError,
    RateLimited,
    TransientError,
)
from bridge.protocols import Connector, InboundSink, MediaHost
from bridge.types import (
    SMS,
    AccountId,
    Attachment,
    ChatId,
    Consent,
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
from connectors.chatlinks import chat_link
from connectors.markup import plain
from connectors.sms_signature import signature, url_variants
from connectors.sms_text import cost_note, gsm_lookalikes, sms_cost
from connectors.wire import (
    FinalSends,
    SharedWebhook,
    hand_over,
    int_or_none,
    json_object,
    opt_str,
    retry_after,
    split_text,
    unreachable,
)

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/webhooks/sms"
STATUS_PATH = "/webhooks/sms/status"
SIGNATURE_HEADER = "X-Twilio-Signature"
API_VERSION = "2010-04-01"
# An empty TwiML document: Twilio sends no automatic reply to the customer.
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'

# Twilio's documented limits: a Body of at most 1,600 characters, at most 10 MediaUrl per message.
BODY_LIMIT = 1600
MEDIA_LIMIT = 10
# Twilio forwards at most 10 media per inbound MMS; the parser walks NumMedia until it is done.
_NUM_MEDIA = re.compile(r"[0-9]{1,6}")
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_MAX_REDIRECTS = 5

# Twilio's opt-out and opt-in keywords (support.twilio.com, "Twilio support for opt-out keywords"):
# on long codes and toll-free numbers Twilio itself stops delivering after one of the first set
# and resumes after one of the second; the whole trimmed body must be the keyword.
STOP_WORDS = frozenset(
    {"stop", "stopall", "unsubscribe", "cancel", "end", "quit", "revoke", "optout"}
)
START_WORDS = frozenset({"start", "unstop", "yes"})

_CALL_TIMEOUT = aiohttp.ClientTimeout(total=30, connect=10)
_MEDIA_TIMEOUT = aiohttp.ClientTimeout(total=120, connect=10)

# Twilio error codes (twilio.com/docs/api/errors) in words staff can act on; used for REST API
# answers and for the ErrorCode of status callbacks alike.
ERROR_WORDS: Mapping[str, str] = {
    "20003": "Twilio refused the account SID or auth token",
    "20404": "Twilio does not know this account or resource; check the account SID",
    "20429": "Twilio is rate limiting this account",
    "21211": "the To number is not a valid phone number",
    "21408": "sending to this region is not enabled in the Twilio account's geo permissions",
    "21602": "the message has neither a body nor media",
    "21604": "the message has no To number",
    "21606": "the From number cannot send messages to this destination",
    "21608": "a Twilio trial account can only send to verified numbers",
    "21610": (
        "the customer replied STOP to this number; Twilio will not deliver until they send START"
    ),
    "21612": "Twilio cannot route a message from this sender to the To number",
    "21614": "the To number is not a mobile number and cannot receive SMS",
    "21617": "the message body is longer than Twilio's 1600 characters",
    "21620": "Twilio refused a media URL",
    "21621": "the From number cannot send MMS",
    "21623": "the message has more media files than Twilio allows",
    "21660": "the From number does not belong to this Twilio account",
    "21703": "the messaging service has no sender to send from",
    "30001": "Twilio's outgoing queue overflowed; the message was not sent",
    "30002": "the Twilio account is suspended",
    "30003": "the customer's handset is unreachable (switched off or out of coverage)",
    "30004": "the message was blocked (the customer or their carrier blocks this sender)",
    "30005": "the number is unknown or no longer in service",
    "30006": "the number is a landline or its carrier is unreachable",
    "30007": "the carrier filtered the message as spam",
    "30008": "the carrier reported an unknown error",
    "30010": "the message price exceeds the maximum price set for it",
    "30019": "the media is larger than the carrier accepts",
    "30032": "the toll-free number is not verified for messaging",
    "30034": "the sender is an unregistered US A2P 10DLC number",
}

_STATUS: Mapping[str, DeliveryStatus | None] = {
    # Still on the way: nothing new to show staff.
    "queued": None,
    "accepted": None,
    "scheduled": None,
    "sending": None,
    "sent": DeliveryStatus.SENT,
    "delivered": DeliveryStatus.DELIVERED,
    "read": DeliveryStatus.READ,
    "failed": DeliveryStatus.FAILED,
    "undelivered": DeliveryStatus.FAILED,
    "canceled": DeliveryStatus.FAILED,
}


def twilio_reason(code: str) -> str:
    """Words for a Twilio error code, ending in "(Twilio <code>)"."""
    words = ERROR_WORDS.get(code, "Twilio reported an error")
    return f"{words} (Twilio {code})"


# ---------------------------------------------------------------------- parsing


def parse_message(
    form: Mapping[str, str], accounts: Mapping[str, str], *, now: datetime | None = None
) -> InboundMessage | None:
    """Turn an incoming-message webhook into an InboundMessage; None when not ours or empty.

    `accounts` maps a receiving number or a messaging service sid to the account id the bridge
    files it under. Twilio sends no timestamp, so `now` is the time of arrival.
    """
    sid = _field(form, "MessageSid") or _field(form, "SmsSid")
    sender = _field(form, "From")
    receiver = _field(form, "To")
    if not (sid and sender and receiver):
        msg = "the message lacks MessageSid, From or To"
        raise BadRequest(msg)
    attachments = _media(form)
    account = _lookup(accounts, receiver) or _lookup(accounts, _field(form, "MessagingServiceSid"))
    if account is None:
        return None
    text = _field(form, "Body") or ""
    if not text.strip() and not attachments:
        return None  # nothing to show staff
    keyword = text.strip().lower()
    consent = (
        Consent.STOP if keyword in STOP_WORDS else Consent.START if keyword in START_WORDS else None
    )
    return InboundMessage(
        platform=SMS,
        account=AccountId(account),
        chat_id=ChatId(sender),
        external_id=ExternalMessageId(sid),
        profile=CustomerProfile(display_name=sender),
        text=text,
        sent_at=now or datetime.now(UTC),
        attachments=attachments,
        consent=consent,
    )


def parse_status(
    form: Mapping[str, str], accounts: Mapping[str, str], *, now: datetime | None = None
) -> StatusUpdate | None:
    """Turn a status callback into a StatusUpdate; None for interim or unknown statuses."""
    sid = _field(form, "MessageSid") or _field(form, "SmsSid")
    status_word = _field(form, "MessageStatus") or _field(form, "SmsStatus")
    if not (sid and status_word):
        msg = "the status callback lacks MessageSid or MessageStatus"
        raise BadRequest(msg)
    status = _STATUS.get(status_word.strip().lower())
    if status is None:
        return None  # queued, sending…, or a status this version does not know
    account = _lookup(accounts, _field(form, "From")) or _lookup(
        accounts, _field(form, "MessagingServiceSid")
    )
    if account is None:
        return None
    code: str | None = None
    reason: str | None = None
    if status is DeliveryStatus.FAILED:
        code = (_field(form, "ErrorCode") or "").strip() or None
        if code is not None:
            reason = twilio_reason(code)
        elif status_word.strip().lower() == "canceled":
            reason = "the message was canceled before Twilio sent it"
        else:
            reason = "Twilio could not deliver the message"
    return StatusUpdate(
        platform=SMS,
        account=AccountId(account),
        external_id=ExternalMessageId(sid),
        status=status,
        at=now or datetime.now(UTC),
        code=code,
        reason=reason,
        opted_out=code == "21610",
    )


def _field(form: Mapping[str, Any], key: str) -> str | None:
    value = form.get(key)
    return value if isinstance(value, str) and value else None


def _lookup(accounts: Mapping[str, str], key: str | None) -> str | None:
    if not key:
        return None
    found = accounts.get(key)
    if found is None:
        # "+15005550006" from Twilio matches a sender configured as "15005550006".
        wanted = sender_number(key)
        found = next((v for k, v in accounts.items() if sender_number(k) == wanted), None)
    return found


def _media(form: Mapping[str, Any]) -> tuple[Attachment, ...]:
    raw = form.get("NumMedia")
    if raw is None or raw == "":
        return ()
    if not isinstance(raw, str) or not _NUM_MEDIA.fullmatch(raw.strip()):
        msg = "NumMedia is not a number"
        raise BadRequest(msg)
    attachments = []
    # A missing MediaUrl{N} ends the walk with an error, so a huge NumMedia costs nothing.
    for index in range(int(raw.strip())):
        url = _field(form, f"MediaUrl{index}")
        if url is None:
            msg = f"NumMedia promises MediaUrl{index}, which is missing"
            raise BadRequest(msg)
        mime = _field(form, f"MediaContentType{index}")
        attachments.append(Attachment(kind=_kind(mime), ref=url, mime_type=mime))
    return tuple(attachments)


def _kind(mime: str | None) -> MediaKind:
    major = (mime or "").partition("/")[0].strip().lower()
    return {"image": MediaKind.IMAGE, "video": MediaKind.VIDEO, "audio": MediaKind.AUDIO}.get(
        major, MediaKind.DOCUMENT
    )


def sender_number(value: str) -> str:
    """A configured number in E.164 form (+ and digits); other values (sids, short codes) as-is."""
    compact = re.sub(r"[\s()-]", "", value)
    digits = compact.removeprefix("+")
    # Settings accept numbers without "+"; Twilio writes E.164 with it. Short codes (5-6
    # digits) have no "+", so only numbers long enough to be E.164 get one.
    if digits.isascii() and digits.isdigit() and (compact.startswith("+") or len(digits) >= 8):
        return "+" + digits
    return value


def account_map(accounts: Iterable[SmsAccount]) -> dict[str, str]:
    """Receiving number or messaging service sid → the account id, for the parsers."""
    mapping: dict[str, str] = {}
    for account in accounts:
        if account.from_number:
            mapping[account.from_number] = account.account
            mapping[sender_number(account.from_number)] = account.account
        if account.messaging_service_sid:
            mapping[account.messaging_service_sid] = account.account
    return mapping


def _read_form(body: bytes) -> list[tuple[str, str]]:
    try:
        text = body.decode("utf-8")
        return parse_qsl(text, keep_blank_values=True, errors="strict", max_num_fields=1000)
    except ValueError:  # UnicodeDecodeError too
        msg = "the body is not a UTF-8 form"
        raise BadRequest(msg) from None


class TwilioWebhook:
    """The one SMS webhook endpoint of the bridge, for every configured Twilio sender."""

    def __init__(
        self,
        accounts: Sequence[SmsAccount],
        public_url: str,
        sink: InboundSink,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._accounts = tuple(accounts)
        self._public_url = public_url.rstrip("/")
        self._sink = sink
        self._clock = clock or (lambda: datetime.now(UTC))
        # Several senders of one Twilio account share its token; each token is tried once.
        self._by_token: dict[str, list[SmsAccount]] = {}
        for account in self._accounts:
            token = account.auth_token.get_secret_value()
            self._by_token.setdefault(token, []).append(account)

    def routes(self) -> list[web.RouteDef]:
        """Incoming messages and status callbacks."""
        # Twilio signs the URL and the form: the body is read before it can be believed.
        screen = bodies.requires(SIGNATURE_HEADER)
        return [
            web.post(
                WEBHOOK_PATH, bodies.guarded(self._handle_message, screen=screen, signed_body=True)
            ),
            web.post(
                STATUS_PATH, bodies.guarded(self._handle_status, screen=screen, signed_body=True)
            ),
        ]

    async def _handle_message(self, request: web.Request) -> web.Response:
        return await self._handle(request, "message")

    async def _handle_status(self, request: web.Request) -> web.Response:
        return await self._handle(request, "status")

    def _signed_by(self, url: str, params: list[tuple[str, str]], given: str) -> list[SmsAccount]:
        """The accounts whose auth token produced `given` over one form of the URL."""
        candidates = url_variants(url)
        expected = given.strip().encode("utf-8", "replace")
        matched: list[SmsAccount] = []
        for token, accounts in self._by_token.items():
            for candidate in candidates:
                computed = signature(token, candidate, params).encode("ascii")
                if hmac.compare_digest(computed, expected):
                    matched.extend(accounts)
                    break
        return matched

    async def _handle(self, request: web.Request, kind: str) -> web.Response:
        given = request.headers.get(SIGNATURE_HEADER)
        if not given:
            return web.Response(status=401, text="missing X-Twilio-Signature")
        try:
            params = _read_form(await request.read())
        except BadRequest as exc:
            log.warning("sms webhook: refused a malformed body: %s", exc)
            return web.Response(status=400, text="not a form")
        # Twilio signs the URL it called: behind a proxy the bridge sees another host and
        # scheme, so the public URL is the base and only the path and query come from here.
        url = self._public_url + request.raw_path
        matched = self._signed_by(url, params, given)
        if not matched:
            return web.Response(status=403, text="wrong X-Twilio-Signature")
        form: dict[str, str] = {}
        for name, value in params:
            form.setdefault(name, value)
        # Only the senders whose token signed the request: a message for another Twilio
        # account's number signed with this account's token is not believed.
        accounts = account_map(matched)
        try:
            event: InboundEvent | None
            if kind == "message":
                event = parse_message(form, accounts, now=self._clock())
            else:
                event = parse_status(form, accounts, now=self._clock())
        except BadRequest as exc:
            log.warning("sms webhook: refused a malformed %s: %s", kind, exc)
            return web.Response(status=400, text=f"not a valid {kind}")
        # A 5xx makes Twilio log the failure (and retry, when the URL asks for it).
        failed = await hand_over(self._sink, [event], "sms") if event is not None else None
        if failed is not None:
            return failed
        if kind == "message":
            return web.Response(text=EMPTY_TWIML, content_type="text/xml")
        # A status callback's answer is not read by Twilio beyond its status: an empty 200.
        return web.Response(status=200)


# ---------------------------------------------------------------------- outbound helpers


def _code_of(body: Mapping[str, Any]) -> str | None:
    code = body.get("code")
    if int_or_none(code) is not None:
        return str(code)
    if isinstance(code, str) and code.strip().isdigit():
        return code.strip()
    return None


def _wait(headers: Mapping[str, str]) -> float:
    """Retry-After when it is a sensible wait (under an hour), else one second."""
    seconds = retry_after(headers)
    return seconds if seconds is not None and 0 < seconds < 3600 else 1.0


def _raise_for(status: int, body: Mapping[str, Any], headers: Mapping[str, str]) -> NoReturn:
    """Map a Twilio REST error answer to the bridge's error tree."""
    code = _code_of(body)
    message = body.get("message")
    detail = message if isinstance(message, str) and message else f"HTTP {status}"
    if code == "21610":
        raise OptedOut("21610", twilio_reason("21610"))
    if code == "20429" or status == 429:
        # Twilio's 429/20429 concern the account's request rate, not one recipient.
        raise RateLimited(_wait(headers), f"twilio: {detail}", per_recipient=False)
    if status >= 500:
        raise TransientError(f"twilio: HTTP {status} {detail}")
    if code is not None:
        if code in ERROR_WORDS:
            raise PermanentError(code, twilio_reason(code))
        raise PermanentError(code, f"{detail} (Twilio {code})")
    if status == 401:
        raise PermanentError("20003", twilio_reason("20003"))
    raise PermanentError(str(status), f"Twilio refused the request: {detail}")


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    default = {"https": 443, "http": 80}.get(parts.scheme)
    return parts.scheme, (parts.hostname or ""), port or default


# ---------------------------------------------------------------------- the connector


class SmsConnector(SharedWebhook, FinalSends):
    """One Twilio sender (a number or a messaging service): webhooks in, Messages API out."""

    platform: ClassVar[Platform] = SMS
    display_name = "SMS"
    ready_message = "sms sender %s ready"

    def __init__(
        self,
        account: SmsAccount,
        http: aiohttp.ClientSession,
        sink: InboundSink,
        media: MediaHost,
        *,
        public_url: str,
        webhook: TwilioWebhook | None,
        lookalikes: bool = False,
    ) -> None:
        if not public_url:
            raise ConfigError(
                "bridge.public_url", "SMS needs it for StatusCallback and MMS media URLs"
            )
        self.account = AccountId(account.account)
        self._settings = account
        self._http = http
        self._sink = sink
        self._media = media
        self._public_url = public_url.rstrip("/")
        self._webhook = webhook
        self._lookalikes = lookalikes
        self._auth = aiohttp.BasicAuth(account.account_sid, account.auth_token.get_secret_value())
        base = account.api_base.rstrip("/")
        self._messages_url = f"{base}/{API_VERSION}/Accounts/{account.account_sid}/Messages.json"

    async def probe(self) -> str:
        """A harmless authenticated call for `run.py check`: the Twilio account itself."""
        settings = self._settings
        url = f"{settings.api_base.rstrip('/')}/{API_VERSION}/Accounts/{settings.account_sid}.json"
        try:
            async with self._http.get(url, auth=self._auth, timeout=_CALL_TIMEOUT) as resp:
                status = resp.status
                headers = resp.headers
                raw = await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise unreachable("twilio", "account lookup", exc) from None
        answer = json_object(raw)
        if not 200 <= status < 300 or answer is None:
            _raise_for(status, answer or {}, headers)
        name = opt_str(answer, "friendly_name") or settings.account_sid
        state = opt_str(answer, "status")
        if state is not None and state != "active":
            raise PermanentError(state, f"the Twilio account {name} is {state}")
        return f"account {name}"

    # ------------------------------------------------------------------ outbound

    async def send(self, msg: OutboundMessage) -> ExternalMessageId:
        """Send text and/or files; return the sid of the (first) message carrying the text."""
        if msg.template is not None:
            raise PermanentError("unsupported", "SMS has no message templates; send free text")
        parts = self._bodies(msg.text)
        if not parts and not msg.files:
            raise PermanentError("empty", "the message has neither text nor files")
        # Twilio fetches MMS media by URL: each file goes on the bridge's signed, expiring URL.
        urls = [await self._media.publish(file) for file in msg.files]
        batches = [urls[i : i + MEDIA_LIMIT] for i in range(0, len(urls), MEDIA_LIMIT)]
        # Part i of the text goes with batch i of the media. If a later part fails, the outbox
        # retries the whole message: Twilio has no idempotency key for Messages, so the parts
        # already sent may arrive twice (as with any multi-part send).
        first: str | None = None
        for body, media in zip_longest(parts, batches):
            sid = await self._create(msg.chat_id, body, media or [])
            first = first or sid
        assert first is not None
        return ExternalMessageId(first)

    def _bodies(self, text: str) -> list[str]:
        """The Body of each message `text` goes out in, look-alikes replaced when asked to."""
        # A text message shows no formatting: staff's markers go, their words stay.
        text = plain(text)
        if self._lookalikes:
            text = gsm_lookalikes(text)
        # Twilio concatenates a Body of up to 1,600 characters into one message on the phone
        # (twilio.com/docs/glossary/what-sms-character-limit) and refuses a longer one (21617):
        # a longer text goes out as several messages, cut at line breaks or spaces.
        return split_text(text, BODY_LIMIT) if text.strip() else []

    def send_cost(self, msg: OutboundMessage) -> str | None:
        """Words for staff when `msg` goes out as more than one segment or in UCS-2."""
        if msg.template is not None:
            return None
        # The first bodies travel with the media as MMS, billed per message, not per segment.
        with_media = -(-len(msg.files) // MEDIA_LIMIT)
        return cost_note(sms_cost(body) for body in self._bodies(msg.text)[with_media:])

    async def _create(self, to: ChatId, body: str | None, media: Sequence[str]) -> str:
        """One POST to the Messages resource; the new message's sid."""
        form: list[tuple[str, str]] = [("To", to)]
        settings = self._settings
        if settings.messaging_service_sid:
            form.append(("MessagingServiceSid", settings.messaging_service_sid))
        else:
            assert settings.from_number is not None  # one of the two, checked by the settings
            form.append(("From", sender_number(settings.from_number)))
        if body:
            form.append(("Body", body))
        form.extend(("MediaUrl", url) for url in media)
        form.append(("StatusCallback", self._public_url + STATUS_PATH))
        try:
            async with self._http.post(
                self._messages_url,
                data=urlencode(form),
                headers={"Content-Type": "application/x-www-form-urlencoded"},
                auth=self._auth,
                timeout=_CALL_TIMEOUT,
            ) as resp:
                status = resp.status
                headers = resp.headers
                raw = await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise unreachable("twilio", "send", exc) from None
        answer = json_object(raw)
        if 200 <= status < 300:
            sid = answer.get("sid") if answer is not None else None
            if not isinstance(sid, str) or not sid:
                msg = "twilio answered a send without a sid"
                raise TransientError(msg)
            return sid
        _raise_for(status, answer or {}, headers)

    async def fetch(self, attachment: Attachment) -> FileData:
        """Download a file a customer sent by MMS from its MediaUrl."""
        url = attachment.ref
        if urlsplit(url).scheme not in ("https", "http"):
            raise PermanentError("400", "the media reference is not a URL")
        # Twilio's media URL may require the account's credentials (HTTP basic auth) and then
        # redirects to a storage host with a signed URL: the credentials go to the media URL's
        # own origin only, so redirects are followed by hand.
        trusted = _origin(url)
        for _ in range(_MAX_REDIRECTS + 1):
            auth = self._auth if _origin(url) == trusted else None
            try:
                async with self._http.get(
                    url, auth=auth, allow_redirects=False, timeout=_MEDIA_TIMEOUT
                ) as resp:
                    status = resp.status
                    headers = resp.headers
                    data = await resp.read()
                    content_type = resp.content_type
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise unreachable("twilio", "media download", exc) from None
            location = headers.get("Location")
            if status in _REDIRECTS and location:
                url = urljoin(url, location)
                continue
            if status == 404:
                raise PermanentError("404", "the media is no longer on Twilio (deleted or expired)")
            if status != 200:
                _raise_for(status, json_object(data) or {}, headers)
            mime = attachment.mime_type or content_type or "application/octet-stream"
            name = urlsplit(attachment.ref).path.rstrip("/").rpartition("/")[2] or "media"
            filename = attachment.filename or name + (mimetypes.guess_extension(mime) or "")
            return FileData(kind=attachment.kind, filename=filename, data=data, mime_type=mime)
        raise TransientError("twilio media download: too many redirects")

    # ------------------------------------------------------------------ what staff may do

    def window_refusal(self, last_inbound_at: datetime | None, now: datetime) -> str | None:
        """SMS has no customer-service window."""
        return None

    async def templates(self) -> Sequence[Template]:
        """SMS has no message templates."""
        return []

    def chat_link(self, payload: str | None = None) -> str | None:
        """An sms: link to the sender's number, when the number is known."""
        number = self._settings.from_number or self._settings.number
        return chat_link(SMS, number, payload) if number else None

    # ------------------------------------------------------------------ rate limits

    def rate_keys(self, chat_id: ChatId) -> tuple[str, ...]:
        """One key per sender: carriers limit throughput per number or service."""
        return (f"sms:{self.account}",)

    def rate_limits(self) -> Mapping[str, RateLimit]:
        """The sender's throughput from the settings (a US long code: 1 segment a second)."""
        return {
            f"sms:{self.account}": RateLimit(rate=self._settings.rate, burst=self._settings.burst)
        }


def build(
    settings: Settings, http: aiohttp.ClientSession, sink: InboundSink, media: MediaHost
) -> list[Connector]:
    """One connector per configured Twilio sender, sharing one webhook."""
    if not settings.sms.enabled:
        return []
    public_url = settings.bridge.public_url
    if not public_url:
        raise ConfigError(
            "bridge.public_url",
            "SMS needs the public URL: Twilio signs its webhooks over it, and fetches MMS media"
            " from it",
        )
    webhook = TwilioWebhook(settings.sms.accounts, public_url, sink)
    return [
        SmsConnector(
            account,
            http,
            sink,
            media,
            public_url=public_url,
            webhook=webhook if index == 0 else None,
            lookalikes=settings.sms.gsm_lookalikes,
        )
        for index, account in enumerate(settings.sms.accounts)
    ]
