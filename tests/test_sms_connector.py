"""The SMS (Twilio) connector against a fake Twilio that speaks the real wire format."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer, unused_port
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from bridge.config import BridgeSettings, Settings, SmsAccount, SmsSettings
from bridge.errors import (
    BadRequest,
    ConfigError,
    OptedOut,
    PermanentError,
    RateLimited,
    TransientError,
    Unreachable,
)
from bridge.types import (
    SMS,
    AccountId,
    Attachment,
    ChatId,
    Consent,
    DeliveryStatus,
    ExternalMessageId,
    FileData,
    InboundMessage,
    MediaKind,
    OutboundMessage,
    RateLimit,
    StatusUpdate,
    TemplateCall,
)
from connectors.sms import (
    BODY_LIMIT,
    EMPTY_TWIML,
    SmsConnector,
    TwilioWebhook,
    _raise_for,
    build,
    parse_message,
    parse_status,
    signature,
    url_variants,
)
from connectors.wire import split_text
from tests import connector_kit
from tests.connector_kit import RecordingSink
from tests.fakes.twilio import FakeTwilio, sample

# The kit's fixtures, bound here so that pytest finds them for this module.
http, sink = connector_kit.http, connector_kit.sink

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
NUMBER = "+15005550006"
CUSTOMER = "+14155550100"
SERVICE = "MG" + "5" * 32
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
JPEG = b"\xff\xd8\xff\xe0" + b"jpeg" * 100
ACCOUNTS = {NUMBER: NUMBER, SERVICE: SERVICE}


class LocalMedia:
    """A MediaHost serving published files from the bridge's local test server."""

    def __init__(self) -> None:
        self.base = ""
        self.files: dict[str, FileData] = {}

    async def publish(self, file: FileData, *, ttl: float = 3600.0) -> str:
        token = secrets.token_urlsafe(8)
        self.files[token] = file
        return f"{self.base}/media/{token}?expires=3600&sig=abc"

    async def serve(self, request: web.Request) -> web.Response:
        file = self.files.get(request.match_info["token"])
        if file is None:
            raise web.HTTPNotFound()
        return web.Response(body=file.data, content_type=file.mime_type)


@dataclass
class Bridge:
    local: str
    public: str
    webhook: TwilioWebhook
    connectors: list[SmsConnector]
    media: LocalMedia


def sender(fake: FakeTwilio, **overrides) -> SmsAccount:
    values = {
        "account_sid": fake.account_sid,
        "auth_token": SecretStr(fake.auth_token),
        "from_number": fake.numbers[0],
        "api_base": fake.base_url,
    }
    values.update(overrides)
    return SmsAccount(**values)


def outbound(text: str, *files: FileData, to: str = CUSTOMER, account: str = NUMBER):
    return OutboundMessage(
        platform=SMS,
        account=AccountId(account),
        chat_id=ChatId(to),
        text=text,
        files=tuple(files),
    )


def png(name: str = "shot.png", data: bytes = PNG) -> FileData:
    return FileData(kind=MediaKind.IMAGE, filename=name, data=data, mime_type="image/png")


@pytest.fixture
async def fake():
    async with FakeTwilio() as server:
        yield server


@pytest.fixture
async def start_bridge(fake, http, sink):
    """Serve the SMS webhook (and the media host) on a local port; point the fake at it."""
    servers: list[TestServer] = []

    async def start(accounts=None, *, public_url: str | None = None) -> Bridge:
        port = unused_port()
        local = f"http://127.0.0.1:{port}"
        public = public_url or local
        media = LocalMedia()
        media.base = local
        webhook = TwilioWebhook(accounts or [sender(fake)], public, sink, clock=lambda: NOW)
        connectors = [
            SmsConnector(
                account,
                http,
                sink,
                media,
                public_url=public,
                webhook=webhook if index == 0 else None,
            )
            for index, account in enumerate(accounts or [sender(fake)])
        ]
        app = web.Application()
        app.add_routes(connectors[0].routes())
        app.router.add_get("/media/{token}", media.serve)
        server = TestServer(app, port=port)
        await server.start_server()
        servers.append(server)
        base = public.rstrip("/")
        fake.webhook_url = f"{base}/webhooks/sms"
        fake.status_url = f"{base}/webhooks/sms/status"
        fake.connect_to = None if public == local else local
        return Bridge(local, public, webhook, connectors, media)

    yield start
    for server in servers:
        await server.close()


@pytest.fixture
async def bridge(start_bridge):
    return await start_bridge()


@pytest.fixture
def conn(bridge):
    return bridge.connectors[0]


def inbound_form(**fields: str) -> dict[str, str]:
    """Twilio's documented incoming-message body with this module's numbers, sid and text."""
    form = sample("inbound_sms")
    form.update(
        MessageSid="SM" + "a" * 32,
        SmsSid="SM" + "a" * 32,
        SmsMessageSid="SM" + "a" * 32,
        AccountSid="AC" + "0" * 32,
        From=CUSTOMER,
        To=NUMBER,
        Body="hello",
        NumMedia="0",
    )
    form.update(fields)
    return form


# ---------------------------------------------------------------- parse_message


def test_an_sms_becomes_an_inbound_message():
    event = parse_message(inbound_form(), ACCOUNTS, now=NOW)
    assert event == InboundMessage(
        platform=SMS,
        account=AccountId(NUMBER),
        chat_id=ChatId(CUSTOMER),
        external_id=ExternalMessageId("SM" + "a" * 32),
        profile=event.profile,
        text="hello",
        sent_at=NOW,
    )
    assert event.profile.display_name == CUSTOMER
    assert event.consent is None and event.attachments == ()


def test_smssid_stands_in_for_a_missing_messagesid():
    form = inbound_form()
    del form["MessageSid"]
    event = parse_message(form, ACCOUNTS, now=NOW)
    assert event is not None and event.external_id == "SM" + "a" * 32


def test_mms_media_become_attachments_of_their_kind():
    form = inbound_form(
        Body="",
        NumMedia="4",
        MediaUrl0="https://api.twilio.com/m/ME0",
        MediaContentType0="image/jpeg",
        MediaUrl1="https://api.twilio.com/m/ME1",
        MediaContentType1="video/mp4",
        MediaUrl2="https://api.twilio.com/m/ME2",
        MediaContentType2="audio/ogg",
        MediaUrl3="https://api.twilio.com/m/ME3",
        MediaContentType3="application/pdf",
    )
    event = parse_message(form, ACCOUNTS, now=NOW)
    assert event is not None and event.text == ""
    assert event.attachments == (
        Attachment(
            kind=MediaKind.IMAGE, ref="https://api.twilio.com/m/ME0", mime_type="image/jpeg"
        ),
        Attachment(kind=MediaKind.VIDEO, ref="https://api.twilio.com/m/ME1", mime_type="video/mp4"),
        Attachment(kind=MediaKind.AUDIO, ref="https://api.twilio.com/m/ME2", mime_type="audio/ogg"),
        Attachment(
            kind=MediaKind.DOCUMENT, ref="https://api.twilio.com/m/ME3", mime_type="application/pdf"
        ),
    )


@pytest.mark.parametrize(
    ("body", "consent"),
    [
        ("STOP", Consent.STOP),
        ("  stop \n", Consent.STOP),
        ("StopAll", Consent.STOP),
        ("unsubscribe", Consent.STOP),
        ("CANCEL", Consent.STOP),
        ("end", Consent.STOP),
        ("Quit", Consent.STOP),
        ("revoke", Consent.STOP),
        ("OPTOUT", Consent.STOP),
        ("START", Consent.START),
        ("unstop", Consent.START),
        (" Yes ", Consent.START),
        ("stop it please", None),
        ("yes please", None),
        ("ſtop", None),  # "ſ".upper() == "S": not one of Twilio's keywords all the same
    ],
)
def test_twilio_opt_out_and_opt_in_keywords_set_consent(body, consent):
    event = parse_message(inbound_form(Body=body), ACCOUNTS, now=NOW)
    assert event is not None
    assert event.consent == consent
    assert event.text == body


def test_a_message_to_a_number_the_bridge_does_not_serve_is_ignored():
    assert parse_message(inbound_form(To="+15550001111"), ACCOUNTS, now=NOW) is None


def test_the_messaging_service_files_a_message_to_a_pool_number():
    form = inbound_form(To="+15550001111", MessagingServiceSid=SERVICE)
    event = parse_message(form, ACCOUNTS, now=NOW)
    assert event is not None and event.account == SERVICE
    # The configured number wins over the service.
    event = parse_message(inbound_form(MessagingServiceSid=SERVICE), ACCOUNTS, now=NOW)
    assert event is not None and event.account == NUMBER


def test_a_number_configured_without_plus_still_matches():
    event = parse_message(inbound_form(), {"15005550006": "15005550006"}, now=NOW)
    assert event is not None and event.account == "15005550006"


def test_an_empty_message_without_media_is_ignored():
    assert parse_message(inbound_form(Body="  "), ACCOUNTS, now=NOW) is None


@pytest.mark.parametrize(
    "change",
    [
        {"MessageSid": None, "SmsSid": None},
        {"From": None},
        {"To": None},
        {"From": ""},
        {"NumMedia": "x"},
        {"NumMedia": "-1"},
        {"NumMedia": "1.0"},
        {"NumMedia": "٣"},  # a digit, but not an ASCII one
        {"NumMedia": "1"},  # MediaUrl0 is missing
        {"NumMedia": "9" * 5000},
    ],
)
def test_malformed_messages_are_bad_requests(change):
    form = inbound_form()
    for key, value in change.items():
        if value is None:
            form.pop(key, None)
        else:
            form[key] = value
    with pytest.raises(BadRequest):
        parse_message(form, ACCOUNTS, now=NOW)


# ---------------------------------------------------------------- parse_status


def status_form(status: str, **fields: str) -> dict[str, str]:
    """Twilio's documented status callback with this module's numbers, sid and status."""
    form = {k: v for k, v in sample("status_delivered").items() if k != "RawDlrDoneDate"}
    form.update(
        MessageSid="SM" + "b" * 32,
        SmsSid="SM" + "b" * 32,
        MessageStatus=status,
        SmsStatus=status,
        From=NUMBER,
        To=CUSTOMER,
        AccountSid="AC" + "0" * 32,
    )
    form.update(fields)
    return form


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("queued", None),
        ("accepted", None),
        ("scheduled", None),
        ("sending", None),
        ("receiving", None),
        ("sent", DeliveryStatus.SENT),
        ("delivered", DeliveryStatus.DELIVERED),
        ("read", DeliveryStatus.READ),
        ("failed", DeliveryStatus.FAILED),
        ("undelivered", DeliveryStatus.FAILED),
        ("canceled", DeliveryStatus.FAILED),
    ],
)
def test_status_words_map_to_delivery_statuses(status, expected):
    update = parse_status(status_form(status), ACCOUNTS, now=NOW)
    if expected is None:
        assert update is None
    else:
        assert update is not None
        assert (update.status, update.account, update.external_id, update.at) == (
            expected,
            NUMBER,
            "SM" + "b" * 32,
            NOW,
        )


def test_undelivered_30007_carries_the_code_and_words():
    update = parse_status(status_form("undelivered", ErrorCode="30007"), ACCOUNTS, now=NOW)
    assert update == StatusUpdate(
        platform=SMS,
        account=AccountId(NUMBER),
        external_id=ExternalMessageId("SM" + "b" * 32),
        status=DeliveryStatus.FAILED,
        at=NOW,
        code="30007",
        reason="the carrier filtered the message as spam (Twilio 30007)",
        opted_out=False,
    )


def test_failed_21610_is_an_opt_out():
    update = parse_status(status_form("failed", ErrorCode="21610"), ACCOUNTS, now=NOW)
    assert update is not None and update.opted_out
    assert (
        update.reason is not None and "STOP" in update.reason and "(Twilio 21610)" in update.reason
    )


def test_an_unknown_error_code_still_names_the_code():
    update = parse_status(status_form("failed", ErrorCode="39999"), ACCOUNTS, now=NOW)
    assert update is not None and update.code == "39999"
    assert update.reason is not None and update.reason.endswith("(Twilio 39999)")


def test_status_account_comes_from_the_service_when_from_is_a_pool_number():
    form = status_form("delivered", From="+15550001111", MessagingServiceSid=SERVICE)
    update = parse_status(form, ACCOUNTS, now=NOW)
    assert update is not None and update.account == SERVICE
    assert parse_status(status_form("delivered", From="+15550001111"), ACCOUNTS, now=NOW) is None


@pytest.mark.parametrize("missing", [("MessageSid", "SmsSid"), ("MessageStatus", "SmsStatus")])
def test_a_status_without_sid_or_status_is_a_bad_request(missing):
    form = status_form("delivered")
    for key in missing:
        del form[key]
    with pytest.raises(BadRequest):
        parse_status(form, ACCOUNTS, now=NOW)


# ---------------------------------------------------------------- signatures and helpers


def test_signature_matches_twilios_documented_examples():
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    params = {
        "CallSid": "CA1234567890ABCDE",
        "Caller": "+12349013030",
        "Digits": "1234",
        "From": "+12349013030",
        "To": "+18005551212",
    }
    assert signature("12345", url, params.items()) == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
    older = {**params, "Caller": "+14158675309", "From": "+14158675309"}
    assert signature("12345", url, older.items()) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="


def test_url_variants_add_the_default_port_or_drop_the_given_one():
    assert url_variants("https://b.example/webhooks/sms?x=1") == [
        "https://b.example/webhooks/sms?x=1",
        "https://b.example:443/webhooks/sms?x=1",
    ]
    assert url_variants("http://b.example:8080/w") == [
        "http://b.example:8080/w",
        "http://b.example/w",
    ]
    assert url_variants("http://b.example/w")[1] == "http://b.example:80/w"


def test_split_text_cuts_bodies_at_1600_on_word_boundaries():
    words = " ".join(f"word{i}" for i in range(900))
    parts = split_text(words, BODY_LIMIT)
    assert len(parts) == -(-len(words) // 1600)
    assert all(len(part) <= 1600 for part in parts)
    assert all(len(part) > 1590 for part in parts[:-1])  # full parts, cut between words
    assert " ".join(parts) == words
    assert split_text("x" * 1600, BODY_LIMIT) == ["x" * 1600]
    assert split_text("   ", BODY_LIMIT) == []


# ---------------------------------------------------------------- webhook: inbound


async def test_an_inbound_sms_reaches_the_sink_and_gets_empty_twiml(bridge, fake, sink):
    assert await fake.customer_texts(CUSTOMER, "my order is late") == 200
    assert fake.last_answer == (200, "text/xml", EMPTY_TWIML)
    [[event]] = sink.batches
    assert isinstance(event, InboundMessage)
    assert (event.account, event.chat_id, event.external_id, event.text, event.sent_at) == (
        NUMBER,
        CUSTOMER,
        fake.last_inbound_id,
        "my order is late",
        NOW,
    )


async def test_mms_media_is_fetched_with_basic_auth_but_not_sent_to_storage(
    bridge, conn, fake, sink
):
    media = [(JPEG, "image/jpeg"), (b"%PDF-1.4 invoice", "application/pdf")]
    assert await fake.customer_texts(CUSTOMER, "see photo", media=media) == 200
    [event] = sink.events
    assert isinstance(event, InboundMessage)
    assert [a.kind for a in event.attachments] == [MediaKind.IMAGE, MediaKind.DOCUMENT]
    photo = await conn.fetch(event.attachments[0])
    assert (photo.data, photo.mime_type, photo.kind) == (JPEG, "image/jpeg", MediaKind.IMAGE)
    assert photo.filename.startswith("ME") and photo.filename.endswith(".jpg")
    pdf = await conn.fetch(event.attachments[1])
    assert pdf.data == b"%PDF-1.4 invoice" and pdf.filename.endswith(".pdf")
    # The storage host got no Authorization header (it refuses one, like S3).
    assert fake.storage_auth == [None, None]


async def test_fetch_without_the_redirect_and_with_wrong_credentials(start_bridge, fake, sink):
    bridge = await start_bridge([sender(fake)])
    fake.media_redirect = False
    await fake.customer_texts(CUSTOMER, "", media=[(PNG, "image/png")])
    [attachment] = sink.events[0].attachments
    data = await bridge.connectors[0].fetch(attachment)
    assert data.data == PNG
    wrong = SmsConnector(
        sender(fake, auth_token=SecretStr("nope-not-the-auth-token")),
        bridge.connectors[0]._http,
        sink,
        bridge.media,
        public_url=bridge.public,
        webhook=None,
    )
    with pytest.raises(PermanentError) as caught:
        await wrong.fetch(attachment)
    assert caught.value.code == "20003"
    gone = Attachment(kind=MediaKind.IMAGE, ref=attachment.ref.replace("/Media/ME", "/Media/MEx"))
    with pytest.raises(PermanentError) as caught:
        await bridge.connectors[0].fetch(gone)
    assert caught.value.code == "404"


async def test_stop_and_start_are_recorded_and_twilio_enforces_them(bridge, conn, fake, sink):
    assert await fake.customer_texts(CUSTOMER, "STOP") == 200
    assert sink.events[-1].consent is Consent.STOP
    with pytest.raises(OptedOut) as caught:
        await conn.send(outbound("we miss you"))
    assert caught.value.code == "21610"
    assert "START" in caught.value.reason and "(Twilio 21610)" in caught.value.reason
    assert fake.sent == []
    assert await fake.customer_texts(CUSTOMER, "start") == 200
    assert sink.events[-1].consent is Consent.START
    await conn.send(outbound("welcome back"))
    assert [m["Body"] for m in fake.sent] == ["welcome back"]


async def test_a_message_to_another_number_is_answered_but_ignored(bridge, fake, sink):
    assert await fake.customer_texts(CUSTOMER, "hi", to="+15550001111") == 200
    assert fake.last_answer is not None and fake.last_answer[2] == EMPTY_TWIML
    assert sink.batches == []


async def test_missing_signature_is_401_and_a_wrong_one_403(bridge, fake, sink):
    params = inbound_form()
    assert await fake.deliver(fake.webhook_url, params, sign=False) == 401
    assert await fake.deliver(fake.webhook_url, params, signature="AAAA") == 403
    assert await fake.deliver(fake.webhook_url, params, token="another-token") == 403
    forged = fake.sign(fake.webhook_url, params)
    assert (
        await fake.deliver(fake.webhook_url, {**params, "Body": "changed"}, signature=forged) == 403
    )
    assert await fake.deliver(fake.status_url, status_form("delivered"), sign=False) == 401
    assert sink.batches == []


async def test_signed_but_malformed_bodies_are_400(bridge, fake, sink):
    form = inbound_form()
    del form["MessageSid"], form["SmsSid"]
    assert await fake.deliver(fake.webhook_url, form) == 400
    assert await fake.deliver(fake.webhook_url, inbound_form(NumMedia="two")) == 400
    assert await fake.deliver(fake.status_url, {"MessageSid": "SM1", "From": NUMBER}) == 400
    assert sink.batches == []


async def test_a_body_that_is_not_utf8_is_400(bridge, fake, http, sink):
    async with http.post(
        fake.webhook_url,
        data=b"Body=%ff%fe&From=x",
        headers={"X-Twilio-Signature": "x", "Content-Type": "application/x-www-form-urlencoded"},
    ) as resp:
        assert resp.status == 400
    assert sink.batches == []


async def test_sink_failure_is_500_and_twilios_retry_is_stored(bridge, fake, sink):
    sink.fail_times = 1
    assert await fake.customer_texts(CUSTOMER, "hello") == 500
    assert fake.last_answer is not None and "ref" in fake.last_answer[2]
    assert sink.batches == []
    assert await fake.customer_texts(CUSTOMER, "hello") == 200
    assert [e.text for e in sink.events] == ["hello"]


@pytest.mark.parametrize(
    ("public_url", "signed_base"),
    [
        ("https://bridge.example.com", "https://bridge.example.com"),
        ("https://bridge.example.com/", "https://bridge.example.com:443"),
        ("https://bridge.example.com:443", "https://bridge.example.com"),
        ("https://bridge.example.com:443", "https://bridge.example.com:443"),
        ("http://bridge.example.com", "http://bridge.example.com:80"),
        ("https://example.com/support-bridge", "https://example.com/support-bridge"),
    ],
)
async def test_behind_a_proxy_the_signature_is_over_the_public_url(
    start_bridge, fake, sink, public_url, signed_base
):
    bridge = await start_bridge(public_url=public_url)
    # The proxy forwards to the bridge's own address (a path prefix is stripped on the way).
    target = f"{bridge.local}/webhooks/sms"
    params = inbound_form(Body="via the proxy")
    signed = fake.sign(f"{signed_base}/webhooks/sms", params)
    assert await fake.deliver(target, params, signature=signed) == 200
    assert [e.text for e in sink.events] == ["via the proxy"]
    # Signed over the address the bridge really listens on: not what Twilio called.
    local = fake.sign(target, params)
    assert await fake.deliver(target, params, signature=local) == 403
    assert len(sink.events) == 1


async def test_the_query_string_is_part_of_the_signed_url(start_bridge, fake, sink):
    await start_bridge(public_url="https://bridge.example.com")
    url = "https://bridge.example.com/webhooks/sms?tenant=7"
    params = inbound_form()
    assert await fake.deliver(url, params) == 200
    without_query = fake.sign("https://bridge.example.com/webhooks/sms", params)
    assert await fake.deliver(url, params, signature=without_query) == 403


async def test_another_port_on_the_public_url_is_tried_without_it(start_bridge, fake, sink):
    await start_bridge(public_url="https://bridge.example.com:8443")
    params = inbound_form()
    signed = fake.sign("https://bridge.example.com/webhooks/sms", params)
    assert await fake.deliver(fake.webhook_url, params, signature=signed) == 200
    assert await fake.deliver(fake.webhook_url, params) == 200  # with :8443 as configured
    assert len(sink.events) == 2


# ---------------------------------------------------------------- webhook: status callbacks


async def test_status_callbacks_reach_the_sink(bridge, conn, fake, sink):
    sid = await conn.send(outbound("your parcel is on its way"))
    assert await fake.status(sid, "sending") == 200
    assert sink.batches == []
    assert await fake.status(sid, "delivered") == 200
    assert fake.last_answer is not None and fake.last_answer[2] == ""
    assert await fake.status(sid, "undelivered", error_code=30007) == 200
    assert await fake.status(sid, "failed", error_code=21610) == 200
    delivered, spam, opted_out = sink.events
    assert isinstance(delivered, StatusUpdate)
    assert (delivered.external_id, delivered.account, delivered.status) == (
        sid,
        NUMBER,
        DeliveryStatus.DELIVERED,
    )
    assert (spam.status, spam.code, spam.reason) == (
        DeliveryStatus.FAILED,
        "30007",
        "the carrier filtered the message as spam (Twilio 30007)",
    )
    assert not spam.opted_out
    assert opted_out.opted_out and opted_out.code == "21610"


async def test_automatic_status_callbacks_arrive_signed_in_order(bridge, conn, fake, sink):
    fake.auto_status = ["queued", "sent", "delivered"]
    sid = await conn.send(outbound("hi"))
    await fake.settle()
    assert fake.callbacks == [(sid, "queued", 200), (sid, "sent", 200), (sid, "delivered", 200)]
    assert [(e.external_id, e.status) for e in sink.events] == [
        (sid, DeliveryStatus.SENT),
        (sid, DeliveryStatus.DELIVERED),
    ]


async def test_status_of_a_messaging_service_send_is_filed_under_the_service(
    start_bridge, fake, sink
):
    bridge = await start_bridge([sender(fake, from_number=None, messaging_service_sid=SERVICE)])
    fake.auto_status = ["delivered"]
    sid = await bridge.connectors[0].send(outbound("hi", account=SERVICE))
    await fake.settle()
    [update] = sink.events
    assert isinstance(update, StatusUpdate)
    assert (update.account, update.external_id, update.status) == (
        SERVICE,
        sid,
        DeliveryStatus.DELIVERED,
    )


# ---------------------------------------------------------------- send


async def test_send_posts_to_from_body_and_the_status_callback(bridge, conn, fake):
    sid = await conn.send(outbound("Hello from support"))
    [sent] = fake.sent
    assert sid == sent["_sid"] and sid.startswith("SM")
    assert (sent["To"], sent["From"], sent["Body"]) == (CUSTOMER, NUMBER, "Hello from support")
    assert "MessagingServiceSid" not in sent
    assert sent["StatusCallback"] == f"{bridge.public}/webhooks/sms/status"
    assert sent["MediaUrl"] == []


async def test_send_through_a_messaging_service(start_bridge, fake):
    bridge = await start_bridge([sender(fake, from_number=None, messaging_service_sid=SERVICE)])
    conn = bridge.connectors[0]
    assert conn.account == SERVICE
    await conn.send(outbound("hi", account=SERVICE))
    [sent] = fake.sent
    assert sent["MessagingServiceSid"] == SERVICE and "From" not in sent


async def test_a_number_configured_without_plus_is_sent_as_e164(start_bridge, fake):
    bridge = await start_bridge([sender(fake, from_number="15005550006")])
    await bridge.connectors[0].send(outbound("hi", account="15005550006"))
    assert fake.sent[0]["From"] == NUMBER


async def test_a_long_body_is_split_at_1600_characters(conn, fake):
    text = "\n".join(f"line {i}: " + "lorem ipsum " * 10 for i in range(40))
    assert len(text) > 3200
    sid = await conn.send(outbound(text))
    bodies = [m["Body"] for m in fake.sent]
    assert len(bodies) == 4 and all(len(b) <= 1600 for b in bodies)
    assert "\n".join(bodies) == text  # cut at line breaks, nothing lost
    assert sid == fake.sent[0]["_sid"]


async def test_mms_files_are_published_and_twilio_fetches_them(bridge, conn, fake):
    sid = await conn.send(outbound("the label", png("label.png"), png("box.png", b"box-bytes")))
    [sent] = fake.sent
    assert sid == sent["_sid"] and sent["Body"] == "the label"
    assert len(sent["MediaUrl"]) == 2
    assert all(url.startswith(f"{bridge.local}/media/") for url in sent["MediaUrl"])
    assert sent["_media"] == [(PNG, "image/png"), (b"box-bytes", "image/png")]
    assert sent["_media_status"] == [200, 200]


async def test_more_than_ten_files_go_in_several_messages(conn, fake):
    files = [png(f"{i}.png", bytes([i]) * 10) for i in range(12)]
    sid = await conn.send(outbound("photos", *files))
    assert [len(m["MediaUrl"]) for m in fake.sent] == [10, 2]
    assert [m.get("Body") for m in fake.sent] == ["photos", None]
    assert [data for data, _ in fake.sent[1]["_media"]] == [bytes([10]) * 10, bytes([11]) * 10]
    assert sid == fake.sent[0]["_sid"]


async def test_files_without_text_are_sent_without_a_body(conn, fake):
    await conn.send(outbound("", png()))
    [sent] = fake.sent
    assert "Body" not in sent and sent["_media"] == [(PNG, "image/png")]


async def test_templates_and_empty_messages_are_refused(conn, fake):
    msg = OutboundMessage(
        platform=SMS,
        account=AccountId(NUMBER),
        chat_id=ChatId(CUSTOMER),
        text="",
        template=TemplateCall(name="hello", language="en"),
    )
    with pytest.raises(PermanentError) as caught:
        await conn.send(msg)
    assert caught.value.code == "unsupported"
    with pytest.raises(PermanentError):
        await conn.send(outbound("  "))
    assert fake.requests == []


# ---------------------------------------------------------------- errors


async def test_20429_with_retry_after_is_rate_limited(conn, fake):
    fake.fail_next(20429, status=429, headers={"Retry-After": "7"})
    with pytest.raises(RateLimited) as caught:
        await conn.send(outbound("hi"))
    assert caught.value.retry_after == 7
    fake.fail_next(20429, status=429)
    with pytest.raises(RateLimited) as caught:
        await conn.send(outbound("hi"))
    assert caught.value.retry_after == 1
    assert fake.sent == []


async def test_server_errors_are_transient(conn, fake):
    fake.fail_next(20500, "Internal Server Error", status=500)
    with pytest.raises(TransientError) as caught:
        await conn.send(outbound("hi"))
    assert not isinstance(caught.value, Unreachable)
    fake.fail_next(20503, "Service Unavailable", status=503)
    with pytest.raises(TransientError):
        await conn.send(outbound("hi"))
    await conn.send(outbound("hi"))
    assert len(fake.sent) == 1 and [r["_status"] for r in fake.requests] == [500, 503, 201]


async def test_the_fakes_own_refusals_map_to_permanent_errors_with_words(start_bridge, fake):
    bridge = await start_bridge([sender(fake), sender(fake, from_number="+15559990000")])
    ours, foreign = bridge.connectors
    with pytest.raises(PermanentError) as caught:
        await ours.send(outbound("hi", to="12"))
    assert caught.value.code == "21211" and "not a valid phone number" in caught.value.reason
    with pytest.raises(PermanentError) as caught:
        await foreign.send(outbound("hi", account="+15559990000"))
    assert caught.value.code == "21660" and "(Twilio 21660)" in caught.value.reason


async def test_a_wrong_auth_token_is_permanent(start_bridge, fake):
    bridge = await start_bridge([sender(fake, auth_token=SecretStr("wrong-auth-token-0123"))])
    with pytest.raises(PermanentError) as caught:
        await bridge.connectors[0].send(outbound("hi"))
    assert caught.value.code == "20003"


async def test_an_unreachable_api_shows_no_token(start_bridge, fake):
    bridge = await start_bridge([sender(fake, api_base="http://127.0.0.1:9")])
    with pytest.raises(Unreachable) as caught:
        await bridge.connectors[0].send(outbound("hi"))
    assert fake.auth_token not in str(caught.value) and fake.account_sid not in str(caught.value)
    assert caught.value.__suppress_context__


@pytest.mark.parametrize(
    ("status", "body", "headers", "error", "code"),
    [
        (400, {"code": 21610, "message": "unsubscribed"}, {}, OptedOut, "21610"),
        (429, {}, {}, RateLimited, None),
        (400, {"code": 20429}, {"Retry-After": "3"}, RateLimited, None),
        (401, {"code": 20003, "message": "Authenticate"}, {}, PermanentError, "20003"),
        (404, {"code": 20404}, {}, PermanentError, "20404"),
        (400, {"code": 21408}, {}, PermanentError, "21408"),
        (400, {"code": 21614}, {}, PermanentError, "21614"),
        (400, {"code": 21606}, {}, PermanentError, "21606"),
        (400, {"code": 21612}, {}, PermanentError, "21612"),
        (400, {"code": 12345, "message": "Something odd"}, {}, PermanentError, "12345"),
        (418, {}, {}, PermanentError, "418"),
        (502, {}, {}, TransientError, None),
    ],
)
def test_raise_for_maps_twilio_errors(status, body, headers, error, code):
    with pytest.raises(error) as caught:
        _raise_for(status, body, headers)
    if code is not None:
        assert caught.value.code == code
    if isinstance(caught.value, PermanentError) and body.get("code"):
        assert f"(Twilio {body['code']})" in caught.value.reason
    if isinstance(caught.value, RateLimited):
        assert caught.value.retry_after == float(headers.get("Retry-After", 1))


# ---------------------------------------------------------------- what staff may do


async def test_edit_and_delete_are_unsupported(conn):
    with pytest.raises(PermanentError, match="edit") as caught:
        await conn.edit(ChatId(CUSTOMER), ExternalMessageId("SM1"), "x")
    assert caught.value.code == "unsupported"
    with pytest.raises(PermanentError, match="delete"):
        await conn.delete(ChatId(CUSTOMER), ExternalMessageId("SM1"))


async def test_no_window_no_templates(conn):
    assert conn.window_refusal(None, NOW) is None
    assert conn.window_refusal(datetime(2020, 1, 1, tzinfo=UTC), NOW) is None
    assert await conn.templates() == []


async def test_chat_link_uses_the_number(start_bridge, fake, conn):
    assert conn.chat_link() == f"sms:{NUMBER}"
    assert conn.chat_link("order 42") == f"sms:{NUMBER}?body=order%2042"
    bridge = await start_bridge(
        [
            sender(fake, from_number=None, messaging_service_sid=SERVICE, number="+15005550007"),
            sender(fake, from_number=None, messaging_service_sid="MG" + "6" * 32),
        ]
    )
    with_number, without = bridge.connectors
    assert with_number.chat_link() == "sms:+15005550007"
    assert without.chat_link("x") is None


async def test_rate_keys_and_limits_follow_the_settings(start_bridge, fake):
    bridge = await start_bridge([sender(fake, rate=3.0, burst=5.0)])
    conn = bridge.connectors[0]
    assert conn.rate_keys(ChatId(CUSTOMER)) == (f"sms:{NUMBER}",)
    assert conn.rate_limits() == {f"sms:{NUMBER}": RateLimit(rate=3.0, burst=5.0)}


# ---------------------------------------------------------------- several accounts


async def test_two_accounts_with_different_tokens_share_one_webhook(start_bridge, fake, sink):
    other = FakeTwilio(
        account_sid="AC" + "9" * 32, auth_token="other-auth-token-0123", numbers=("+15005550009",)
    )
    await other.start()
    try:
        bridge = await start_bridge([sender(fake), sender(other)])
        first, second = bridge.connectors
        assert len(first.routes()) == 2 and second.routes() == []
        other.webhook_url, other.status_url = fake.webhook_url, fake.status_url
        assert await fake.customer_texts(CUSTOMER, "to the first") == 200
        assert await other.customer_texts(CUSTOMER, "to the second") == 200
        assert [(e.account, e.text) for e in sink.events] == [
            (NUMBER, "to the first"),
            ("+15005550009", "to the second"),
        ]
        # The first account's token cannot vouch for the second account's number.
        assert await fake.customer_texts(CUSTOMER, "forged", to="+15005550009") == 200
        assert len(sink.events) == 2
        sid = await second.send(outbound("reply", account="+15005550009"))
        assert [m["_sid"] for m in other.sent] == [sid] and fake.sent == []
        assert await other.status(sid, "delivered") == 200
        assert sink.events[-1].account == "+15005550009"
    finally:
        await other.stop()


def test_build_makes_one_connector_per_account_and_one_webhook(fake):
    accounts = (sender(fake), sender(fake, from_number=None, messaging_service_sid=SERVICE))
    settings = Settings(
        bridge=BridgeSettings(public_url="https://bridge.example.com"),
        sms=SmsSettings(accounts=accounts),
    )
    first, second = build(settings, None, RecordingSink(), LocalMedia())
    assert (first.account, second.account) == (NUMBER, SERVICE)
    assert [(r.method, r.path) for r in first.routes()] == [
        ("POST", "/webhooks/sms"),
        ("POST", "/webhooks/sms/status"),
    ]
    assert second.routes() == []
    assert build(Settings(), None, RecordingSink(), LocalMedia()) == []
    without_url = Settings(sms=SmsSettings(accounts=accounts))
    with pytest.raises(ConfigError, match="bridge.public_url"):
        build(without_url, None, RecordingSink(), LocalMedia())


# ---------------------------------------------------------------- properties

_FIELDS = [
    "MessageSid",
    "SmsSid",
    "From",
    "To",
    "Body",
    "NumMedia",
    "MessagingServiceSid",
    "MessageStatus",
    "SmsStatus",
    "ErrorCode",
    "MediaUrl0",
    "MediaContentType0",
    "MediaUrl1",
    "MediaContentType1",
]
_VALUES = st.one_of(
    st.text(max_size=30),
    st.sampled_from(
        [
            "",
            "0",
            "1",
            "2",
            "-1",
            "x",
            "٣",
            NUMBER,
            SERVICE,
            CUSTOMER,
            "SM123",
            "STOP",
            "delivered",
            "undelivered",
            "sent",
            "queued",
            "21610",
            "30007",
            "image/png",
            "http://127.0.0.1:9/m",
        ]
    ),
)
_FORMS = st.dictionaries(st.one_of(st.sampled_from(_FIELDS), st.text(max_size=12)), _VALUES)


@settings(max_examples=200, deadline=None)
@given(form=_FORMS)
def test_the_parsers_raise_nothing_but_bad_request(form):
    for parse in (parse_message, parse_status):
        try:
            event = parse(form, ACCOUNTS, now=NOW)
        except BadRequest:
            continue
        assert event is None or event.account in (NUMBER, SERVICE)


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(form=_FORMS, status_endpoint=st.booleans())
async def test_a_signed_arbitrary_form_never_gets_500(bridge, fake, sink, form, status_endpoint):
    before = len(sink.batches)
    url = fake.status_url if status_endpoint else fake.webhook_url
    answer = await fake.deliver(url, form)
    assert answer in (200, 400)
    if answer == 400:
        assert len(sink.batches) == before
    else:
        assert len(sink.batches) - before in (0, 1)
