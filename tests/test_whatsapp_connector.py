"""The WhatsApp Cloud API connector against a fake Graph server that speaks the real wire format."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from bridge.config import Settings, WhatsAppAccount, WhatsAppSettings
from bridge.errors import (
    BadRequest,
    PermanentError,
    RateLimited,
    TransientError,
    Unreachable,
    WindowClosed,
)
from bridge.types import (
    WHATSAPP,
    AccountId,
    Attachment,
    ChatId,
    DeliveryStatus,
    ExternalMessageId,
    FileData,
    InboundMessage,
    InboundReaction,
    MediaKind,
    OutboundMessage,
    RateLimit,
    StatusUpdate,
    TemplateCall,
)
from connectors.whatsapp import TEXT_LIMIT, WhatsAppConnector, WhatsAppWebhook, build
from connectors.whatsapp_api import ERROR_WORDS
from connectors.whatsapp_api import raise_for as _raise_for
from connectors.whatsapp_events import parse_webhook
from connectors.wire import split_text
from tests import connector_kit
from tests.connector_kit import RecordingSink
from tests.fakes.whatsapp import FakeWhatsApp

# The kit's fixtures, bound here so that pytest finds them for this module.
http, sink = connector_kit.http, connector_kit.sink

CUSTOMER = "4915112345678"
PNID = "1001"
OTHER = "1002"
OTHER_SECRET = "second-app-secret"
JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


def outbound(
    text: str = "", *files: FileData, template: TemplateCall | None = None
) -> OutboundMessage:
    return OutboundMessage(
        platform=WHATSAPP,
        account=AccountId(PNID),
        chat_id=ChatId(CUSTOMER),
        text=text,
        files=tuple(files),
        template=template,
    )


def account_settings(fake: FakeWhatsApp, **overrides) -> WhatsAppAccount:
    values = {
        "phone_number_id": PNID,
        "access_token": SecretStr(fake.access_token),
        "app_secret": SecretStr(fake.app_secret),
        "verify_token": SecretStr(fake.verify_token),
        "number": "+49 30 1234567",
        "business_account_id": fake.waba_id,
        "api_base": fake.base_url,
    }
    values.update(overrides)
    return WhatsAppAccount(**values)


@pytest.fixture
async def fake():
    async with FakeWhatsApp(phone_number_ids=(PNID, OTHER)) as server:
        yield server


@pytest.fixture
def make(fake, http, sink):
    """Build a connector for the first number against the fake."""

    def build_one(**overrides) -> WhatsAppConnector:
        return WhatsAppConnector(account_settings(fake, **overrides), http, sink)

    return build_one


@pytest.fixture
def conn(make):
    return make()


@pytest.fixture
async def served(fake, http, sink):
    """Two numbers of two Meta apps built by the factory; the webhook served on a free port."""
    config = Settings(
        whatsapp=WhatsAppSettings(
            accounts=(
                account_settings(fake),
                account_settings(fake, phone_number_id=OTHER, app_secret=SecretStr(OTHER_SECRET)),
            )
        )
    )
    connectors = build(config, http, sink, media=None)
    app = web.Application()
    for connector in connectors:
        app.add_routes(connector.routes())
    async with TestServer(app) as server:
        fake.webhook_url = str(server.make_url("/webhooks/whatsapp"))
        yield connectors


# ---------------------------------------------------------------- inbound through the webhook


async def test_customer_text_reaches_the_sink_with_profile_and_wamid(served, fake, sink):
    assert await fake.customer_says(CUSTOMER, "where is my order?", name="Ann Lee") == 200
    [[event]] = sink.batches
    assert isinstance(event, InboundMessage)
    assert (event.platform, event.account, event.chat_id) == (WHATSAPP, PNID, CUSTOMER)
    assert event.external_id == fake.last_inbound_id and event.external_id.startswith("wamid.")
    assert event.text == "where is my order?" and event.attachments == ()
    assert event.profile.display_name == "Ann Lee" and event.profile.username is None
    assert event.sent_at.tzinfo is UTC
    assert abs((datetime.now(UTC) - event.sent_at).total_seconds()) < 5


@pytest.mark.parametrize(
    ("kind", "mime", "caption", "filename", "voice", "expected_kind", "expected_text"),
    [
        ("image", "image/jpeg", "broken part", None, False, MediaKind.IMAGE, "broken part"),
        ("document", "application/pdf", "invoice", "inv.pdf", False, MediaKind.DOCUMENT, "invoice"),
        ("audio", "audio/ogg; codecs=opus", None, None, True, MediaKind.AUDIO, ""),
        ("audio", "audio/mpeg", None, None, False, MediaKind.AUDIO, ""),
        ("video", "video/mp4", "look", None, False, MediaKind.VIDEO, "look"),
        ("sticker", "image/webp", None, None, False, MediaKind.IMAGE, "[sticker]"),
    ],
)
async def test_each_media_type_becomes_an_attachment(
    served, fake, sink, kind, mime, caption, filename, voice, expected_kind, expected_text
):
    status = await fake.customer_sends_media(
        CUSTOMER, kind, b"bytes of " + kind.encode(), mime,
        caption=caption, filename=filename, voice=voice,
    )  # fmt: skip
    assert status == 200
    [event] = sink.events
    assert isinstance(event, InboundMessage)
    assert event.text == expected_text
    [attachment] = event.attachments
    [media_id] = fake.media
    assert attachment == Attachment(
        kind=expected_kind, ref=media_id, filename=filename, mime_type=mime
    )


async def test_statuses_become_status_updates_with_words_for_failures(served, fake, sink, conn):
    wamid = await conn.send(outbound("hello"))
    assert await fake.status(wamid, "sent") == 200
    assert await fake.status(wamid, "delivered") == 200
    assert await fake.status(wamid, "read") == 200
    errors = [
        {
            "code": 131047,
            "title": "Re-engagement message",
            "message": "Re-engagement message",
            "error_data": {"details": "more than 24 hours have passed"},
        }
    ]
    assert await fake.status(wamid, "failed", errors=errors) == 200
    updates = sink.events
    assert all(isinstance(u, StatusUpdate) and u.external_id == wamid for u in updates)
    assert [u.status for u in updates] == [
        DeliveryStatus.SENT,
        DeliveryStatus.DELIVERED,
        DeliveryStatus.READ,
        DeliveryStatus.FAILED,
    ]
    failed = updates[-1]
    assert isinstance(failed, StatusUpdate)
    assert failed.code == "131047"
    assert failed.reason == ERROR_WORDS[131047]
    assert "24 hours" in failed.reason and failed.account == PNID
    assert updates[0].code is None and updates[0].reason is None


async def test_failed_status_with_an_unknown_code_falls_back_to_the_title(served, fake, sink):
    errors = [{"code": 999123, "title": "Brand new failure", "message": "Something else"}]
    assert await fake.status("wamid.X", "failed", errors=errors) == 200
    [update] = sink.events
    assert isinstance(update, StatusUpdate)
    assert (update.code, update.reason) == ("999123", "Brand new failure")


async def test_the_fake_can_report_a_status_before_it_answers_the_send(served, fake, sink, conn):
    fake.report_before_answer = ["sent", "delivered"]
    wamid = await conn.send(outbound("quick"))
    assert [(e.external_id, e.status) for e in sink.events if isinstance(e, StatusUpdate)] == [
        (wamid, DeliveryStatus.SENT),
        (wamid, DeliveryStatus.DELIVERED),
    ]


async def test_unknown_status_values_are_skipped(served, fake, sink):
    assert await fake.status("wamid.X", "deleted") == 200
    assert await fake.status("wamid.X", "warning") == 200
    assert sink.batches == []


async def test_events_for_a_number_the_bridge_does_not_serve_are_ignored(served, fake, sink):
    message = fake.text_message(CUSTOMER, "hi")
    payload = fake.build_payload(messages=[message], phone_number_id="9999")
    assert await fake.deliver(payload) == 200
    assert sink.batches == []


async def test_verification_echoes_the_challenge_for_a_known_token(served, fake):
    assert await fake.verify("subscribe", fake.verify_token, "1158201444") == (200, "1158201444")


@pytest.mark.parametrize(
    ("mode", "token"), [("subscribe", "wrong"), ("unsubscribe", "wa-verify-token-0123"), ("", "")]
)
async def test_verification_with_a_wrong_token_or_mode_is_403(served, fake, mode, token):
    status, text = await fake.verify(mode, token, "123")
    assert status == 403 and "123" not in text


async def test_verification_answers_text_plain(served, fake, http):
    params = {
        "hub.mode": "subscribe",
        "hub.verify_token": "wa-verify-token-0123",
        "hub.challenge": "x",
    }
    async with http.get(fake.webhook_url, params=params) as resp:
        assert resp.content_type == "text/plain"


async def test_unsigned_body_is_401(served, fake, sink):
    payload = fake.build_payload(messages=[fake.text_message(CUSTOMER, "hi")])
    assert await fake.deliver(payload, sign=False) == 401
    assert sink.batches == []


async def test_wrongly_signed_body_is_403(served, fake, sink):
    payload = fake.build_payload(messages=[fake.text_message(CUSTOMER, "hi")])
    assert await fake.deliver(payload, secret="not-the-secret") == 403
    assert sink.batches == []


async def test_a_signature_over_another_body_is_403(served, fake, http, sink):
    good = json.dumps(fake.build_payload(messages=[fake.text_message(CUSTOMER, "a")])).encode()
    forged = json.dumps(fake.build_payload(messages=[fake.text_message(CUSTOMER, "b")])).encode()
    headers = {"X-Hub-Signature-256": fake.sign(good), "Content-Type": "application/json"}
    async with http.post(fake.webhook_url, data=forged, headers=headers) as resp:
        assert resp.status == 403
    assert sink.batches == []


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[1, 2]",
        b'{"object": "page", "entry": []}',
        b'{"object": "whatsapp_business_account"}',
        b'{"object": "whatsapp_business_account", "entry": [{"changes": [{"field": "messages",'
        b' "value": {"metadata": {"phone_number_id": "1001"}, "messages": [{"from": "49",'
        b' "type": "text", "text": {"body": "no id, no timestamp"}}]}}]}]}',
        b"\xff\xfe",
    ],
)
async def test_malformed_body_is_400(served, fake, sink, body):
    assert await fake.deliver(body) == 400
    assert sink.batches == []


async def test_sink_failure_is_500_and_the_retry_is_taken(served, fake, sink):
    payload = fake.build_payload(messages=[fake.text_message(CUSTOMER, "hello")])
    sink.fail_times = 1
    assert await fake.deliver(payload) == 500
    assert sink.batches == []
    assert await fake.deliver(payload) == 200
    assert [e.text for e in sink.events if isinstance(e, InboundMessage)] == ["hello"]


async def test_two_numbers_of_two_apps_share_one_webhook(served, fake, sink):
    first, second = served
    assert [r.path for r in first.routes()] == ["/webhooks/whatsapp", "/webhooks/whatsapp"]
    assert second.routes() == []
    assert (first.account, second.account) == (PNID, OTHER)
    assert await fake.customer_says(CUSTOMER, "to the first") == 200
    to_second = fake.build_payload(
        messages=[fake.text_message(CUSTOMER, "to the second")],
        contacts=[fake.contact(CUSTOMER, "Bo")],
        phone_number_id=OTHER,
    )
    assert await fake.deliver(to_second, secret=OTHER_SECRET) == 200
    # Signed by the first app, but speaking for the second app's number: not believed.
    assert await fake.deliver(to_second) == 200
    messages = [e for e in sink.events if isinstance(e, InboundMessage)]
    assert [(m.account, m.text) for m in messages] == [
        (PNID, "to the first"),
        (OTHER, "to the second"),
    ]
    assert await fake.deliver(to_second, secret="a third secret") == 403


async def test_a_second_verify_token_is_accepted_too(served, fake):
    assert (await fake.verify("subscribe", "wa-verify-token-0123", "c"))[0] == 200


# ---------------------------------------------------------------- parse_webhook


def _envelope(fake, message, contacts=()):
    return fake.build_payload(messages=[message], contacts=contacts)


@pytest.mark.parametrize(
    ("message", "text"),
    [
        ({"type": "button", "button": {"text": "Track it", "payload": "T"}}, "Track it"),
        (
            {
                "type": "interactive",
                "interactive": {
                    "type": "button_reply",
                    "button_reply": {"id": "b1", "title": "Yes"},
                },
            },
            "Yes",
        ),
        (
            {
                "type": "interactive",
                "interactive": {
                    "type": "list_reply",
                    "list_reply": {"id": "l1", "title": "Returns", "description": "d"},
                },
            },
            "Returns",
        ),
        (
            {
                "type": "location",
                "location": {
                    "latitude": 52.52,
                    "longitude": 13.40,
                    "name": "Brandenburg Gate",
                    "address": "Pariser Platz",
                },
            },
            "[location] Brandenburg Gate, Pariser Platz · 52.52, 13.4"
            " https://www.google.com/maps?q=52.52,13.4",
        ),
        (
            {"type": "location", "location": {"latitude": 1, "longitude": 2}},
            "[location] 1, 2 https://www.google.com/maps?q=1,2",
        ),
        (
            {
                "type": "contacts",
                "contacts": [
                    {
                        "name": {"formatted_name": "Ann Lee", "first_name": "Ann"},
                        "phones": [{"phone": "+49 151 1", "wa_id": "491511", "type": "CELL"}],
                    },
                    {"name": {"formatted_name": "Bo"}, "phones": []},
                ],
            },
            "[contact] Ann Lee: +49 151 1\n[contact] Bo",
        ),
    ],
)
def test_other_message_types_become_text(fake, message, text):
    head = {"from": CUSTOMER, "id": "wamid.A", "timestamp": "1700000000"}
    [event] = parse_webhook(_envelope(fake, {**head, **message}), {PNID})
    assert isinstance(event, InboundMessage)
    assert event.text == text
    assert event.sent_at == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)


@pytest.mark.parametrize(
    "message",
    [
        {"type": "system", "system": {"body": "changed number", "type": "user_changed_number"}},
        {"type": "order", "order": {"catalog_id": "1", "product_items": []}},
        {"type": "interactive", "interactive": {"type": "nfm_reply", "nfm_reply": {}}},
        {"type": "something_new"},
    ],
)
def test_kinds_without_anything_for_staff_are_skipped(fake, message):
    head = {"from": CUSTOMER, "id": "wamid.A", "timestamp": "1700000000"}
    assert parse_webhook(_envelope(fake, {**head, **message}), {PNID}) == []


@pytest.mark.parametrize("missing", ["from", "id", "timestamp"])
def test_a_message_without_from_id_or_timestamp_is_a_bad_request(fake, missing):
    message = fake.text_message(CUSTOMER, "hi")
    del message[missing]
    with pytest.raises(BadRequest):
        parse_webhook(_envelope(fake, message), {PNID})


def test_display_name_falls_back_to_the_number(fake):
    message = fake.text_message(CUSTOMER, "hi")
    contacts = [fake.contact("someone-else", "Not Them")]
    [event] = parse_webhook(_envelope(fake, message, contacts), {PNID})
    assert isinstance(event, InboundMessage)
    assert event.profile.display_name == f"+{CUSTOMER}"


def test_other_fields_are_ignored_and_every_change_is_read(fake):
    first = fake.build_payload(messages=[fake.text_message(CUSTOMER, "one")])
    second = fake.build_payload(messages=[fake.text_message(CUSTOMER, "two")])
    change = second["entry"][0]["changes"][0]
    first["entry"][0]["changes"].insert(0, {"field": "account_update", "value": {"x": 1}})
    first["entry"].append({"id": "2002", "changes": [change]})
    events = parse_webhook(first, {PNID})
    assert [e.text for e in events if isinstance(e, InboundMessage)] == ["one", "two"]


# ---------------------------------------------------------------- send


async def test_send_text_posts_the_cloud_api_body_and_returns_the_wamid(conn, fake):
    wamid = await conn.send(outbound("Hello Ann"))
    [sent] = fake.sent
    assert wamid == sent["_id"]
    assert sent == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": CUSTOMER,
        "type": "text",
        "text": {"body": "Hello Ann"},
        "_id": wamid,
        "_phone_number_id": PNID,
    }
    assert ("POST", "/v21.0/1001/messages") in fake.requests


async def test_links_turn_the_preview_on(conn, fake):
    await conn.send(outbound("see https://example.com/track"))
    assert fake.sent[0]["text"] == {"body": "see https://example.com/track", "preview_url": True}


async def test_long_text_is_split_at_word_boundaries(conn, fake):
    words = [f"word{i}" for i in range(1500)]
    text = " ".join(words)
    wamid = await conn.send(outbound(text))
    bodies = [s["text"]["body"] for s in fake.sent]
    assert 3 * 4096 < len(text) < 4 * 4000
    assert len(bodies) == 4
    assert all(4000 < len(body) <= 4096 for body in bodies[:3])
    assert " ".join(bodies).split() == words
    assert wamid == fake.sent[0]["_id"]


def test_split_text_prefers_line_breaks_and_cuts_unbroken_text():
    text = "a" * 3000 + "\n" + "b" * 3000
    assert split_text(text, TEXT_LIMIT) == ["a" * 3000, "b" * 3000]
    assert [len(c) for c in split_text("x" * 9000, TEXT_LIMIT)] == [4096, 4096, 808]
    assert split_text("   ", TEXT_LIMIT) == []


async def test_file_is_uploaded_and_sent_with_the_text_as_caption(conn, fake):
    photo = FileData(kind=MediaKind.IMAGE, filename="p.png", data=PNG, mime_type="image/png")
    wamid = await conn.send(outbound("here it is", photo))
    [sent] = fake.sent
    media_id = sent["image"]["id"]
    assert sent["type"] == "image"
    assert sent["image"] == {"id": media_id, "caption": "here it is"}
    assert fake.media[media_id] == (PNG, "image/png", "p.png")
    assert wamid == sent["_id"]
    assert ("POST", "/v21.0/1001/media") in fake.requests


async def test_audio_takes_no_caption_so_the_text_goes_first(conn, fake):
    voice = FileData(kind=MediaKind.AUDIO, filename="v.ogg", data=b"OggS", mime_type="audio/ogg")
    wamid = await conn.send(outbound("listen", voice))
    text, audio = fake.sent
    assert text["text"] == {"body": "listen"}
    assert audio["type"] == "audio" and set(audio["audio"]) == {"id"}
    assert wamid == text["_id"]


async def test_caption_goes_on_the_first_file_that_takes_one(conn, fake):
    voice = FileData(kind=MediaKind.AUDIO, filename="v.mp3", data=b"ID3", mime_type="audio/mpeg")
    photo = FileData(kind=MediaKind.IMAGE, filename="p.jpg", data=JPEG, mime_type="image/jpeg")
    wamid = await conn.send(outbound("both", voice, photo))
    audio, image = fake.sent
    assert "caption" not in audio["audio"] and image["image"]["caption"] == "both"
    assert wamid == image["_id"]


async def test_a_text_too_long_for_a_caption_goes_separately(conn, fake):
    photo = FileData(kind=MediaKind.IMAGE, filename="p.jpg", data=JPEG, mime_type="image/jpeg")
    text = "y" * 1500
    wamid = await conn.send(outbound(text, photo))
    first, second = fake.sent
    assert first["text"]["body"] == text and "caption" not in second["image"]
    assert wamid == first["_id"]


async def test_webp_and_other_images_go_as_documents_with_their_name(conn, fake):
    webp = FileData(kind=MediaKind.IMAGE, filename="s.webp", data=b"RIFF", mime_type="image/webp")
    pdf = FileData(
        kind=MediaKind.DOCUMENT, filename="inv.pdf", data=b"%PDF", mime_type="application/pdf"
    )
    wamid = await conn.send(outbound("", webp, pdf))
    first, second = fake.sent
    assert first["type"] == "document" and first["document"]["filename"] == "s.webp"
    assert second["type"] == "document" and second["document"]["filename"] == "inv.pdf"
    assert fake.media[second["document"]["id"]] == (b"%PDF", "application/pdf", "inv.pdf")
    assert wamid == first["_id"]


async def test_an_empty_message_is_refused_without_a_call(conn, fake):
    with pytest.raises(PermanentError):
        await conn.send(outbound("  "))
    assert fake.requests == []


async def test_template_with_parameters(conn, fake):
    call = TemplateCall(name="order_update", language="en_US", params=("Ann", "A-17"))
    wamid = await conn.send(outbound("ignored", template=call))
    [sent] = fake.sent
    assert sent["type"] == "template"
    assert sent["template"] == {
        "name": "order_update",
        "language": {"code": "en_US"},
        "components": [
            {
                "type": "body",
                "parameters": [{"type": "text", "text": "Ann"}, {"type": "text", "text": "A-17"}],
            }
        ],
    }
    assert wamid == sent["_id"]


async def test_template_without_parameters_has_no_components(conn, fake):
    fake.templates.append(
        {
            "name": "hello_world",
            "language": "en_US",
            "status": "APPROVED",
            "category": "UTILITY",
            "components": [{"type": "BODY", "text": "Hello World"}],
        }
    )
    await conn.send(outbound(template=TemplateCall(name="hello_world", language="en_US")))
    assert fake.sent[0]["template"] == {"name": "hello_world", "language": {"code": "en_US"}}


@pytest.mark.parametrize(
    ("call", "code"),
    [
        (TemplateCall(name="order_update", language="de", params=("a", "b")), "132001"),
        (TemplateCall(name="no_such_template", language="en"), "132001"),
        (TemplateCall(name="spring_sale", language="en", params=("a",)), "132001"),
        (TemplateCall(name="order_update", language="en_US", params=("only one",)), "132000"),
    ],
)
async def test_template_refusals_are_permanent_errors(conn, fake, call, code):
    with pytest.raises(PermanentError) as caught:
        await conn.send(outbound(template=call))
    assert caught.value.code == code
    assert caught.value.reason == ERROR_WORDS[int(code)]
    assert fake.sent == []


async def test_free_text_outside_the_window_is_window_closed(served, conn, fake):
    fake.enforce_window = True
    with pytest.raises(WindowClosed) as caught:
        await conn.send(outbound("hello?"))
    assert caught.value.code == "131047"
    assert await fake.customer_says(CUSTOMER, "hi") == 200
    await conn.send(outbound("hello!"))
    fake.last_customer_message[CUSTOMER] = datetime.now(UTC).timestamp() - 25 * 3600
    with pytest.raises(WindowClosed):
        await conn.send(outbound("still there?"))
    call = TemplateCall(name="welcome_back", language="en", params=("Ann",))
    await conn.send(outbound(template=call))
    assert [s["type"] for s in fake.sent] == ["text", "template"]


@pytest.mark.parametrize(
    ("code", "status", "headers", "retry_after"),
    [
        (130429, 400, None, 1),
        (131056, 400, None, 6),
        (131056, 400, {"Retry-After": "9"}, 9),
        (4, 400, None, 60),
        (80007, 400, None, 60),
        (131048, 400, None, 300),
        (130429, 429, None, 1),
    ],
)
async def test_rate_limit_codes_are_rate_limited(conn, fake, code, status, headers, retry_after):
    fake.fail_next(code, status=status, headers=headers)
    with pytest.raises(RateLimited) as caught:
        await conn.send(outbound("hi"))
    assert caught.value.retry_after == retry_after
    assert fake.sent == []
    await conn.send(outbound("hi"))  # the failure was for one call only
    assert len(fake.sent) == 1


@pytest.mark.parametrize(("code", "status"), [(131000, 500), (1, 500), (131016, 503), (2, 400)])
async def test_server_errors_are_transient(conn, fake, code, status):
    fake.fail_next(code, status=status)
    with pytest.raises(TransientError) as caught:
        await conn.send(outbound("hi"))
    assert not isinstance(caught.value, Unreachable | PermanentError)


async def test_a_wrong_token_is_a_permanent_token_error(make, fake):
    conn = make(access_token=SecretStr("EAAG-stale-token"))
    with pytest.raises(PermanentError) as caught:
        await conn.send(outbound("hi"))
    assert caught.value.code == "190"
    assert "token" in caught.value.reason
    assert "EAAG-stale-token" not in str(caught.value)


async def test_an_unreachable_api_is_unreachable_without_the_url(make):
    conn = make(api_base="http://127.0.0.1:9/v21.0", access_token=SecretStr("secret-tok"))
    with pytest.raises(Unreachable) as caught:
        await conn.send(outbound("hi"))
    assert "secret-tok" not in str(caught.value) and "127.0.0.1" not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


async def test_edit_and_delete_are_unsupported(conn):
    with pytest.raises(PermanentError, match="edit") as caught:
        await conn.edit(ChatId(CUSTOMER), ExternalMessageId("wamid.A"), "new")
    assert caught.value.code == "unsupported"
    with pytest.raises(PermanentError, match="delete") as caught:
        await conn.delete(ChatId(CUSTOMER), ExternalMessageId("wamid.A"))
    assert caught.value.code == "unsupported"


@pytest.mark.parametrize(
    ("status", "error", "expected", "code"),
    [
        (
            400,
            {"code": 131026, "message": "(#131026) Message Undeliverable"},
            PermanentError,
            "131026",
        ),
        (400, {"code": 131050, "message": "x"}, PermanentError, "131050"),
        (400, {"code": 132005, "message": "x"}, PermanentError, "132005"),
        (400, {"code": 131051, "message": "x"}, PermanentError, "131051"),
        (400, {"code": 131052, "message": "x"}, PermanentError, "131052"),
        (400, {"code": 131053, "message": "x"}, PermanentError, "131053"),
        (403, {"code": 10, "message": "(#10) Permission denied"}, PermanentError, "10"),
        (403, {"code": 200, "message": "x"}, PermanentError, "200"),
        (401, {"code": 190, "message": "Error validating access token"}, PermanentError, "190"),
        (400, {"code": 131047, "message": "x"}, WindowClosed, "131047"),
        (400, {"code": 424242, "message": "(#424242) Who knows"}, PermanentError, "424242"),
        (502, {}, TransientError, None),
        (404, {}, PermanentError, "404"),
    ],
)
def test_raise_for_maps_graph_errors(status, error, expected, code):
    with pytest.raises(expected) as caught:
        _raise_for(status, {"error": error} if error else {})
    assert type(caught.value) is expected
    if isinstance(caught.value, PermanentError):
        assert caught.value.code == code
        if code in ("131026", "10", "190"):
            assert caught.value.reason == ERROR_WORDS[int(code)]


def test_raise_for_names_the_invalid_parameter():
    body = {"error": {"code": 100, "message": "(#100) Invalid parameter",
                      "error_data": {"details": "Param to is not a valid phone number"}}}  # fmt: skip
    with pytest.raises(PermanentError) as caught:
        _raise_for(400, body)
    assert caught.value.code == "100"
    assert "Param to is not a valid phone number" in caught.value.reason


@pytest.mark.parametrize(
    ("headers", "retry_after"),
    [({"Retry-After": "12"}, 12), ({"retry-after": "3"}, 3), ({"Retry-After": "inf"}, 60),
     ({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, 60)],
)  # fmt: skip
def test_raise_for_takes_retry_after_on_a_plain_429(headers, retry_after):
    with pytest.raises(RateLimited) as caught:
        _raise_for(429, {}, headers)
    assert caught.value.retry_after == retry_after


# ---------------------------------------------------------------- fetch and templates


async def test_fetch_downloads_the_customers_media_with_the_token(served, fake, sink, conn):
    assert await fake.customer_sends_media(CUSTOMER, "image", JPEG, "image/jpeg") == 200
    [event] = sink.events
    assert isinstance(event, InboundMessage)
    [attachment] = event.attachments
    data = await conn.fetch(attachment)
    assert data == FileData(
        kind=MediaKind.IMAGE,
        filename=f"image-{attachment.ref}.jpg",
        data=JPEG,
        mime_type="image/jpeg",
    )
    assert fake.downloads == [attachment.ref]
    assert ("GET", f"/v21.0/{attachment.ref}") in fake.requests


async def test_fetch_keeps_a_documents_name_and_names_voice_notes(served, fake, sink, conn):
    await fake.customer_sends_media(
        CUSTOMER, "document", b"%PDF-1.7", "application/pdf", filename="offer.pdf"
    )
    await fake.customer_sends_media(
        CUSTOMER, "audio", b"OggS voice", "audio/ogg; codecs=opus", voice=True
    )
    document, voice = (e.attachments[0] for e in sink.events if isinstance(e, InboundMessage))
    got = await conn.fetch(document)
    assert (got.filename, got.mime_type, got.data) == ("offer.pdf", "application/pdf", b"%PDF-1.7")
    got = await conn.fetch(voice)
    assert (got.filename, got.mime_type, got.data) == (
        f"audio-{voice.ref}.ogg",
        "audio/ogg",
        b"OggS voice",
    )


async def test_fetch_of_an_unknown_media_id_is_a_permanent_error(conn):
    with pytest.raises(PermanentError) as caught:
        await conn.fetch(Attachment(kind=MediaKind.IMAGE, ref="404404"))
    assert caught.value.code == "100"


async def test_templates_follow_the_paging(conn, fake):
    for index in range(150):
        fake.templates.append(
            {
                "name": f"bulk_{index}",
                "language": "en",
                "status": "APPROVED",
                "category": "UTILITY",
                "components": [{"type": "BODY", "text": "Hi {{1}}"}],
            }
        )
    found = await conn.templates()
    assert len(found) == 153
    assert [t.name for t in found[:3]] == ["order_update", "welcome_back", "spring_sale"]
    assert found[-1].name == "bulk_149"
    order, welcome, rejected = found[:3]
    assert (order.language, order.status, order.category) == ("en_US", "APPROVED", "UTILITY")
    assert order.body == "Hello {{1}}, your order {{2}} has shipped." and order.param_count == 2
    assert welcome.body == "Hi {{1}}, we have news for you."
    assert rejected.status == "REJECTED"
    pages = [r for r in fake.requests if r == ("GET", "/v21.0/2002/message_templates")]
    assert len(pages) == 2


async def test_templates_without_a_business_account_id_is_empty(make, fake):
    conn = make(business_account_id=None)
    assert await conn.templates() == []
    assert fake.requests == []


# ---------------------------------------------------------------- policy


def test_window_refusal_boundaries(conn):
    now = datetime(2024, 5, 2, 12, 0, tzinfo=UTC)
    assert conn.window_refusal(now - timedelta(hours=23, minutes=59), now) is None
    assert conn.window_refusal(now - timedelta(hours=24), now) is None
    late = conn.window_refusal(now - timedelta(hours=24, seconds=1), now)
    assert late is not None and "24 hours" in late and "template" in late
    assert "30 hours ago" in (conn.window_refusal(now - timedelta(hours=30), now) or "")
    assert "3 days ago" in (conn.window_refusal(now - timedelta(days=3, hours=2), now) or "")
    never = conn.window_refusal(None, now)
    assert never is not None and "template" in never


def test_chat_link_uses_the_number(make):
    assert make().chat_link("order 17") == "https://wa.me/49301234567?text=order%2017"
    assert make().chat_link() == "https://wa.me/49301234567"
    assert make(number=None).chat_link("x") is None


def test_rate_keys_and_limits_follow_the_settings(make):
    conn = make(rate=50, rate_pair=0.25, burst_pair=3)
    assert conn.account == PNID and conn.platform == WHATSAPP
    assert conn.rate_keys(ChatId(CUSTOMER)) == ("whatsapp:1001", f"whatsapp:1001:to:{CUSTOMER}")
    assert conn.rate_limits() == {
        "whatsapp:1001": RateLimit(rate=50, burst=50),
        "whatsapp:1001:to:*": RateLimit(rate=0.25, burst=3),
    }


def test_the_factory_builds_nothing_without_accounts(http, sink):
    assert build(Settings(), http, sink, media=None) == []


# ---------------------------------------------------------------- the fake itself


async def test_fake_checks_the_token_and_media_types_like_graph(fake, http):
    url = f"{fake.base_url}/{PNID}/messages"
    body = {"messaging_product": "whatsapp", "to": CUSTOMER, "type": "text", "text": {"body": "x"}}
    async with http.post(url, json=body, headers={"Authorization": "Bearer nope"}) as resp:
        assert resp.status == 401
        assert (await resp.json())["error"]["code"] == 190
    fake.media["55"] = (b"RIFF", "image/webp", None)
    image = {**body, "type": "image", "image": {"id": "55"}}
    auth = {"Authorization": f"Bearer {fake.access_token}"}
    async with http.post(url, json=image, headers=auth) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"]["code"] == 131053
    async with http.post(url, json={**body, "messaging_product": None}, headers=auth) as resp:
        assert (await resp.json())["error"]["code"] == 100
    assert fake.sent == []


# ---------------------------------------------------------------- properties

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=12,
)
_HEAD = {"from": CUSTOMER, "id": "wamid.A", "timestamp": "1700000000"}
_VALID_MESSAGES = [
    {**_HEAD, "type": "text", "text": {"body": "hi"}},
    {**_HEAD, "type": "image", "image": {"id": "9", "mime_type": "image/jpeg", "caption": "c"}},
    {**_HEAD, "type": "document", "document": {"id": "9", "filename": "a.pdf"}},
    {**_HEAD, "type": "audio", "audio": {"id": "9", "mime_type": "audio/ogg", "voice": True}},
    {**_HEAD, "type": "video", "video": {"id": "9"}},
    {**_HEAD, "type": "sticker", "sticker": {"id": "9", "mime_type": "image/webp"}},
    {**_HEAD, "type": "button", "button": {"text": "Yes", "payload": "Y"}},
    {**_HEAD, "type": "interactive",
     "interactive": {"type": "button_reply", "button_reply": {"id": "1", "title": "Ok"}}},
    {**_HEAD, "type": "interactive",
     "interactive": {"type": "list_reply", "list_reply": {"id": "1", "title": "Ok"}}},
    {**_HEAD, "type": "location", "location": {"latitude": 1.5, "longitude": 2, "name": "X"}},
    {**_HEAD, "type": "contacts",
     "contacts": [{"name": {"formatted_name": "A"}, "phones": [{"phone": "+1"}]}]},
    {**_HEAD, "type": "reaction", "reaction": {"message_id": "wamid.B", "emoji": "x"}},
]  # fmt: skip
_VALID_STATUSES = [
    {"id": "wamid.S", "status": "delivered", "timestamp": "1700000000", "recipient_id": "49"},
    {"id": "wamid.S", "status": "failed", "timestamp": "1700000000",
     "errors": [{"code": 131026, "title": "Message Undeliverable"}]},
]  # fmt: skip
_MESSAGE_PATHS = [
    ("from",), ("id",), ("timestamp",), ("type",), ("text",), ("text", "body"), ("image",),
    ("image", "id"), ("image", "caption"), ("document", "filename"), ("audio", "voice"),
    ("button", "text"), ("interactive", "type"), ("interactive", "button_reply"),
    ("interactive", "list_reply", "title"), ("location", "latitude"), ("location", "name"),
    ("contacts",), ("contacts", 0), ("contacts", 0, "phones"), ("contacts", 0, "name"),
]  # fmt: skip
_STATUS_PATHS = [
    ("id",), ("status",), ("timestamp",), ("errors",), ("errors", 0), ("errors", 0, "code"),
    ("errors", 0, "title"),
]  # fmt: skip
_DELETE = object()


def _mutate(base, edits):
    """A deep copy of `base` with each (path, value) set, or the key removed for _DELETE."""
    result = json.loads(json.dumps(base))
    for path, value in edits:
        node = result
        for step in path[:-1]:
            try:
                node = node[step]
            except (KeyError, IndexError, TypeError):
                break
        else:
            last = path[-1]
            if isinstance(node, dict):
                if value is _DELETE:
                    node.pop(last, None)
                else:
                    node[last] = value
            elif isinstance(node, list) and isinstance(last, int) and last < len(node):
                if value is _DELETE:
                    del node[last]
                else:
                    node[last] = value
    return result


def _mutated(valid, paths):
    edit = st.tuples(st.sampled_from(paths), st.just(_DELETE) | _json)
    return st.sampled_from(valid) | st.builds(
        _mutate, st.sampled_from(valid), st.lists(edit, min_size=1, max_size=2)
    )


_messages = _mutated(_VALID_MESSAGES, _MESSAGE_PATHS)
_statuses = _mutated(_VALID_STATUSES, _STATUS_PATHS)
_contacts = st.lists(
    st.fixed_dictionaries({"wa_id": st.just(CUSTOMER) | _json, "profile": _json}) | _json,
    max_size=2,
)


def _envelope_of(number, messages, statuses, contacts, field):
    value = {"metadata": {"phone_number_id": number}, "messages": messages,
             "statuses": statuses, "contacts": contacts}  # fmt: skip
    change = {"field": field, "value": value}
    return {"object": "whatsapp_business_account", "entry": [{"id": "2002", "changes": [change]}]}


_envelopes = st.builds(
    _envelope_of,
    st.sampled_from([PNID, PNID, PNID, "9"]) | _json,
    st.lists(_messages, min_size=1, max_size=3),
    st.lists(_statuses, max_size=2),
    _contacts,
    st.sampled_from(["messages", "messages", "account_update"]) | _json,
)
_envelope_paths = [
    ("object",), ("entry",), ("entry", 0), ("entry", 0, "changes"), ("entry", 0, "changes", 0),
    ("entry", 0, "changes", 0, "value"), ("entry", 0, "changes", 0, "value", "metadata"),
    ("entry", 0, "changes", 0, "value", "messages"),
    ("entry", 0, "changes", 0, "value", "statuses"),
]  # fmt: skip
_payloads = st.one_of(
    _envelopes,
    st.builds(
        _mutate,
        _envelopes,
        st.lists(st.tuples(st.sampled_from(_envelope_paths), st.just(_DELETE) | _json), max_size=2),
    ),
    _json,
)


def test_the_strategy_reaches_events_and_refusals():
    # Guards the property tests below against a strategy that only ever makes garbage.
    events = parse_webhook(
        _envelope_of(PNID, _VALID_MESSAGES, _VALID_STATUSES, [], "messages"), {PNID}
    )
    assert len(events) == len(_VALID_MESSAGES) + len(_VALID_STATUSES)
    broken = _mutate(_VALID_MESSAGES[0], [(("id",), _DELETE)])
    with pytest.raises(BadRequest):
        parse_webhook(_envelope_of(PNID, [broken], [], [], "messages"), {PNID})


@settings(max_examples=300, deadline=None)
@given(payload=_payloads)
def test_parse_webhook_raises_nothing_but_bad_request(payload):
    try:
        events = parse_webhook(payload, {PNID})
    except BadRequest:
        return
    for event in events:
        assert event.account == PNID
        assert isinstance(event, InboundMessage | InboundReaction | StatusUpdate)


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=st.one_of(_payloads.map(lambda p: json.dumps(p).encode()), st.binary(max_size=64)))
async def test_webhook_answers_200_or_400_and_the_sink_sees_only_good_bodies(
    served, fake, sink, body
):
    before = len(sink.batches)
    status = await fake.deliver(body)
    assert status in (200, 400)
    if status == 400:
        assert len(sink.batches) == before
    else:
        assert all(sink.batches[before:])  # never an empty batch


def test_the_webhook_class_knows_every_account(fake):
    hook = WhatsAppWebhook([account_settings(fake)], RecordingSink())
    assert [(r.method, r.path) for r in hook.routes()] == [
        ("GET", "/webhooks/whatsapp"),
        ("POST", "/webhooks/whatsapp"),
    ]
