"""The Messenger connector against a fake Graph API that speaks the real wire format."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from bridge.config import MessengerPage, MessengerSettings, Settings
from bridge.errors import (
    BadRequest,
    PermanentError,
    RateLimited,
    TransientError,
    Unreachable,
    WindowClosed,
)
from bridge.types import (
    MESSENGER,
    AccountId,
    Attachment,
    ChatId,
    DeliveryStatus,
    ExternalMessageId,
    FileData,
    InboundEdit,
    InboundMessage,
    MediaKind,
    OutboundMessage,
    RateLimit,
    TemplateCall,
    WatermarkUpdate,
)
from connectors.messenger import (
    TEXT_LIMIT,
    WEBHOOK_PATH,
    MessengerConnector,
    MessengerWebhook,
    build,
)
from connectors.messenger_api import GraphProfiles, messaging_type
from connectors.messenger_api import raise_for as _raise_for
from connectors.messenger_events import parse_webhook
from connectors.wire import split_text
from tests import connector_kit
from tests.connector_kit import RecordingSink
from tests.fakes.messenger import FakeMessenger

# The kit's fixtures, bound here so that pytest finds them for this module.
http, sink = connector_kit.http, connector_kit.sink

PAGE = "3003"
OTHER_PAGE = "4004"
PSID = "7001"
CHAT = ChatId(PSID)
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
PDF = b"%PDF-1.4 invoice 42"
NOW_MS = 1_700_000_000_000


def page_config(fake: FakeMessenger, page_id: str = PAGE, **overrides) -> MessengerPage:
    values = {
        "page_id": page_id,
        "page_token": SecretStr(fake.page_token),
        "app_secret": SecretStr(fake.app_secret),
        "verify_token": SecretStr(fake.verify_token),
        "api_base": fake.base_url,
    }
    values.update(overrides)
    return MessengerPage(**values)


def outbound(text: str, *files: FileData, hours_ago: float | None = 1.0, **extra):
    last = None if hours_ago is None else datetime.now(UTC) - timedelta(hours=hours_ago)
    return OutboundMessage(
        platform=MESSENGER,
        account=AccountId(PAGE),
        chat_id=CHAT,
        text=text,
        files=tuple(files),
        last_inbound_at=last,
        **extra,
    )


def customer_wrote(fake: FakeMessenger, hours_ago: float, psid: str = PSID) -> None:
    fake.last_user_message[psid] = time.time() - hours_ago * 3600


def event(psid: str = PSID, **content):
    return {"sender": {"id": psid}, "recipient": {"id": PAGE}, "timestamp": NOW_MS, **content}


def body(*events, page: str = PAGE):
    return {"object": "page", "entry": [{"id": page, "time": NOW_MS, "messaging": list(events)}]}


@pytest.fixture
async def fake():
    async with FakeMessenger() as server:
        yield server


async def serve(fakes, routes):
    """Serve webhook routes locally and point the fakes at them; returns the server."""
    app = web.Application()
    app.add_routes(routes)
    server = TestServer(app)
    await server.start_server()
    for one in fakes:
        one.webhook_url = str(server.make_url(WEBHOOK_PATH))
    return server


@pytest.fixture
async def conn(fake, http, sink):
    """The factory's connector for the fake's page, its webhook served on a local port."""
    settings = Settings(messenger=MessengerSettings(accounts=(page_config(fake),)))
    [connector] = build(settings, http, sink, None)
    server = await serve([fake], connector.routes())
    await connector.start()
    yield connector
    await connector.stop()
    await server.close()


@pytest.fixture
async def make_webhook(fake, http, sink):
    """A webhook built by hand (to tune its lookup), served on a local port."""
    servers = []

    async def make(lookup=None, **attributes):
        webhook = MessengerWebhook([page_config(fake)], sink, lookup or GraphProfiles(http))
        for name, value in attributes.items():
            setattr(webhook, name, value)
        servers.append(await serve([fake], webhook.routes()))
        return webhook

    yield make
    for server in servers:
        await server.close()


# ---------------------------------------------------------------- parse_webhook


def test_text_message_becomes_inbound_message_with_a_fallback_name():
    payload = body(event(message={"mid": "m_1", "text": "hello", "quick_reply": {"payload": "X"}}))
    [message] = parse_webhook(payload, {PAGE})
    assert isinstance(message, InboundMessage)
    assert (message.platform, message.account, message.chat_id) == (MESSENGER, PAGE, PSID)
    assert message.external_id == "m_1" and message.text == "hello"
    assert message.profile.display_name == f"Messenger user {PSID}"
    assert message.sent_at == datetime.fromtimestamp(NOW_MS / 1000, tz=UTC)
    assert message.attachments == () and message.start_payload is None


def test_attachments_map_to_kinds_and_stickers_are_images():
    attachments = [
        {"type": "image", "payload": {"url": "https://cdn.example/a.jpg"}},
        {"type": "video", "payload": {"url": "https://cdn.example/b.mp4"}},
        {"type": "audio", "payload": {"url": "https://cdn.example/c.mp4"}},
        {"type": "file", "payload": {"url": "https://cdn.example/d.pdf"}},
        {"type": "image", "payload": {"url": "https://cdn.example/s.png", "sticker_id": 3692}},
        {"type": "image", "payload": {}},  # no url: nothing to fetch
        {"type": "appointment_booking", "payload": {"booking_id": "1"}},  # not for staff
    ]
    payload = body(event(message={"mid": "m_2", "attachments": attachments}))
    [message] = parse_webhook(payload, {PAGE})
    assert message.text == "(sent a sticker)"
    assert [(a.kind, a.ref) for a in message.attachments] == [
        (MediaKind.IMAGE, "https://cdn.example/a.jpg"),
        (MediaKind.VIDEO, "https://cdn.example/b.mp4"),
        (MediaKind.AUDIO, "https://cdn.example/c.mp4"),
        (MediaKind.DOCUMENT, "https://cdn.example/d.pdf"),
        (MediaKind.IMAGE, "https://cdn.example/s.png"),
    ]


def test_links_and_locations_are_described_in_the_text():
    attachments = [
        {"type": "fallback", "title": "Our shop", "url": "https://shop.example", "payload": None},
        {"type": "location", "payload": {"coordinates": {"lat": 52.5, "long": 13.4}}},
    ]
    payload = body(event(message={"mid": "m_3", "text": "here", "attachments": attachments}))
    [message] = parse_webhook(payload, {PAGE})
    assert message.attachments == ()
    assert message.text.splitlines() == [
        "here",
        "(shared a link: Our shop https://shop.example)",
        "(shared a location: 52.5, 13.4 https://www.google.com/maps?q=52.5,13.4)",
    ]


@pytest.mark.parametrize(
    "raw",
    [
        event(message={"mid": "m_4", "is_echo": True, "app_id": 1, "text": "ours"}),
        event(message={"mid": "m_5", "attachments": [{"type": "template", "payload": {}}]}),
        event(message={"mid": "m_6"}),
        event(optin={"ref": "x"}),
        event(referral={"source": "ADS", "type": "OPEN_THREAD"}),
        event(message_edit={"mid": "m_1", "num_edit": 1}),
    ],
    ids=["echo", "template-only", "empty", "optin", "referral-no-ref", "edit-no-text"],
)
def test_events_the_bridge_does_not_take_are_skipped(raw):
    assert parse_webhook(body(raw), {PAGE}) == []


def test_entries_of_other_pages_and_feed_changes_are_skipped():
    other = body(event(message={"mid": "m_7", "text": "hi"}), page=OTHER_PAGE)
    assert parse_webhook(other, {PAGE}) == []
    feed = {"object": "page", "entry": [{"id": PAGE, "time": 1, "changes": [{"field": "feed"}]}]}
    assert parse_webhook(feed, {PAGE}) == []


def test_edit_delivery_and_read_become_their_events():
    payload = body(
        event(message_edit={"mid": "m_1", "text": "fixed", "num_edit": 2}),
        event(delivery={"mids": ["m_9"], "watermark": NOW_MS - 5}),
        event(read={"watermark": NOW_MS - 1}),
    )
    edit, delivered, read = parse_webhook(payload, [PAGE])
    at = datetime.fromtimestamp(NOW_MS / 1000, tz=UTC)
    assert edit == InboundEdit(
        platform=MESSENGER,
        account=AccountId(PAGE),
        chat_id=CHAT,
        external_id=ExternalMessageId("m_1"),
        text="fixed",
        edited_at=at,
    )
    assert delivered == WatermarkUpdate(
        platform=MESSENGER,
        account=AccountId(PAGE),
        chat_id=CHAT,
        status=DeliveryStatus.DELIVERED,
        watermark=at - timedelta(milliseconds=5),
    )
    assert read.status is DeliveryStatus.READ
    assert read.watermark == at - timedelta(milliseconds=1)


def test_postback_without_mid_gets_a_stable_id_and_its_referral_ref():
    payload = body(
        event(
            postback={
                "title": "Get Started",
                "payload": "GET_STARTED",
                "referral": {"ref": "spring-sale", "source": "SHORTLINK", "type": "OPEN_THREAD"},
            }
        )
    )
    [message] = parse_webhook(payload, {PAGE})
    assert message.text == "Get Started"
    assert message.external_id == f"postback:{PSID}:{NOW_MS}"
    assert message.start_payload == "spring-sale"


@pytest.mark.parametrize(
    "payload",
    [
        [],
        "page",
        {"object": "instagram", "entry": []},
        {"object": "page"},
        {"object": "page", "entry": {}},
        {"object": "page", "entry": [5]},
        {"object": "page", "entry": [{"messaging": []}]},
        {"object": "page", "entry": [{"id": PAGE, "messaging": {}}]},
        body("not an event"),
        body(event(message={"text": "no mid"})),
        body({"recipient": {"id": PAGE}, "timestamp": 1, "message": {"mid": "m", "text": "x"}}),
        body(event(message={"mid": "m", "text": "x"}, timestamp="yesterday")),
        body(event(message={"mid": "m", "text": "x"}, timestamp=10**30)),
        body(event(message={"mid": "m", "attachments": "many"})),
        body(event(delivery={"mids": []})),
        body(event(read="all")),
    ],
)
def test_malformed_bodies_raise_bad_request(payload):
    with pytest.raises(BadRequest):
        parse_webhook(payload, {PAGE})


# ---------------------------------------------------------------- inbound through the webhook


async def test_inbound_text_carries_the_name_from_the_profile_api(conn, fake, sink):
    fake.profiles[PSID] = ("Ann", "Lee")
    assert await fake.customer_says(PSID, "Where is my order?") == 200
    assert await fake.customer_says(PSID, "Order 1234") == 200
    first, second = sink.events
    assert first.text == "Where is my order?" and second.text == "Order 1234"
    assert first.profile.display_name == second.profile.display_name == "Ann Lee"
    assert second.external_id == fake.last_inbound_id
    assert fake.profile_lookups == [PSID]  # looked up once, then taken from the cache


async def test_a_failed_profile_lookup_keeps_the_fallback_name(conn, fake, sink):
    assert await fake.customer_says("7002", "hi") == 200  # the profile API answers error 100
    [message] = sink.events
    assert message.profile.display_name == "Messenger user 7002"
    assert fake.profile_lookups == ["7002"]


async def test_a_failed_lookup_is_remembered_for_a_while(make_webhook, fake, sink):
    await make_webhook()
    await fake.customer_says(PSID, "one")
    fake.profiles[PSID] = ("Ann", "Lee")
    await fake.customer_says(PSID, "two")
    assert fake.profile_lookups == [PSID]
    names = [e.profile.display_name for e in sink.events]
    assert names == [f"Messenger user {PSID}"] * 2


async def test_a_failed_lookup_is_tried_again_once_its_time_is_up(make_webhook, fake, sink):
    await make_webhook(retry_failed_after=0.0)
    await fake.customer_says(PSID, "one")
    fake.profiles[PSID] = ("Ann", "Lee")
    await fake.customer_says(PSID, "two")
    await fake.customer_says(PSID, "three")
    assert fake.profile_lookups == [PSID, PSID]
    names = [e.profile.display_name for e in sink.events]
    assert names == [f"Messenger user {PSID}", "Ann Lee", "Ann Lee"]


async def test_a_slow_profile_api_does_not_hold_the_webhook(make_webhook, fake, sink, http):
    await make_webhook(lookup=GraphProfiles(http, timeout=0.2))
    fake.profiles[PSID] = ("Ann", "Lee")
    fake.profile_delay = 2.0
    started = time.monotonic()
    assert await fake.customer_says(PSID, "hello?") == 200
    assert time.monotonic() - started < 1.5
    assert sink.events[0].profile.display_name == f"Messenger user {PSID}"


async def test_the_name_cache_is_bounded(make_webhook, fake, sink):
    asked = []

    async def lookup(page, psid):
        asked.append(psid)
        return f"Person {psid}"

    await make_webhook(lookup=lookup, names_max=2)
    for psid in ("1", "2", "3", "1"):
        await fake.customer_says(psid, "hi")
    assert asked == ["1", "2", "3", "1"]  # "1" fell out when "3" came
    assert [e.profile.display_name for e in sink.events] == [
        "Person 1",
        "Person 2",
        "Person 3",
        "Person 1",
    ]


async def test_inbound_attachment_arrives_and_fetch_returns_its_bytes(conn, fake, sink):
    assert await fake.customer_sends_media(PSID, "image", PNG, "image/png") == 200
    [message] = sink.events
    [attachment] = message.attachments
    assert attachment.kind is MediaKind.IMAGE and attachment.ref == fake.last_media_url
    file = await conn.fetch(attachment)
    assert file.data == PNG and file.mime_type == "image/png" and file.kind is MediaKind.IMAGE
    assert file.filename.endswith(".png")
    assert len(fake.downloads) == 1


async def test_fetch_names_a_file_without_a_name_after_its_kind(conn, fake):
    fake.cdn["blob"] = (PDF, "application/pdf")
    attachment = Attachment(kind=MediaKind.DOCUMENT, ref=f"{fake.root_url}/_cdn/blob?oh=1")
    file = await conn.fetch(attachment)
    assert (file.filename, file.mime_type, file.data) == ("document.pdf", "application/pdf", PDF)


async def test_fetch_of_an_expired_url_is_a_permanent_error(conn, fake):
    with pytest.raises(PermanentError) as caught:
        await conn.fetch(Attachment(kind=MediaKind.IMAGE, ref=f"{fake.root_url}/_cdn/gone"))
    assert caught.value.code == "404"


async def test_echoes_of_our_own_sends_are_ignored(conn, fake, sink):
    assert await fake.echo(PSID, "our reply") == 200
    assert sink.batches == []


async def test_delivery_and_read_watermarks_reach_the_sink(conn, fake, sink):
    assert await fake.delivery(PSID, NOW_MS, mids=["m_a"]) == 200
    assert await fake.read(PSID, NOW_MS + 1000) == 200
    delivered, read = sink.events
    assert isinstance(delivered, WatermarkUpdate) and isinstance(read, WatermarkUpdate)
    assert (delivered.status, delivered.chat_id) == (DeliveryStatus.DELIVERED, PSID)
    assert delivered.watermark == datetime.fromtimestamp(NOW_MS / 1000, tz=UTC)
    assert read.status is DeliveryStatus.READ
    assert read.watermark == datetime.fromtimestamp(NOW_MS / 1000 + 1, tz=UTC)


async def test_referral_and_postback_carry_the_ref_as_start_payload(conn, fake, sink):
    assert await fake.referral(PSID, "summer_promo") == 200
    assert await fake.postback(PSID, "Get Started", "GET_STARTED", ref="ad-42") == 200
    referral, postback = sink.events
    assert referral.start_payload == "summer_promo"
    assert referral.text == "(opened the chat from the link m.me/…?ref=summer_promo)"
    assert referral.external_id.startswith(f"referral:{PSID}:")
    assert (postback.text, postback.start_payload) == ("Get Started", "ad-42")
    assert postback.external_id == fake.last_inbound_id


async def test_message_edit_becomes_an_inbound_edit(conn, fake, sink):
    await fake.customer_says(PSID, "order 1234")
    mid = fake.last_inbound_id
    assert await fake.edit(PSID, mid, "order 4321") == 200
    original, edit = sink.events
    assert isinstance(edit, InboundEdit)
    assert (edit.external_id, edit.text, edit.chat_id) == (original.external_id, "order 4321", PSID)


async def test_events_for_a_page_the_bridge_does_not_serve_are_ignored(conn, fake, sink):
    assert await fake.customer_says(PSID, "hi", page_id="9999") == 200
    assert sink.batches == []


async def test_verification_echoes_the_challenge_only_for_the_right_token(conn, fake):
    assert await fake.verify("subscribe", "fb-verify-token-0123", "1158201444") == (
        200,
        "1158201444",
    )
    status, _ = await fake.verify("subscribe", "wrong", "1158201444")
    assert status == 403
    status, _ = await fake.verify("unsubscribe", "fb-verify-token-0123", "1")
    assert status == 400


async def test_unsigned_and_wrongly_signed_bodies_are_refused(conn, fake, sink):
    payload = body(event(message={"mid": "m_1", "text": "hi"}))
    assert await fake.deliver(payload, sign=False) == 401
    assert await fake.deliver(payload, secret="not-the-secret") == 403
    url = fake.webhook_url
    raw = json.dumps(payload).encode()
    async with aiohttp.ClientSession() as session:
        headers = {"X-Hub-Signature-256": "md5=abc"}
        async with session.post(url, data=raw, headers=headers) as resp:
            assert resp.status == 403
    assert sink.batches == []


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        b"[]",
        json.dumps({"object": "user", "entry": []}).encode(),
        json.dumps(body(event(message={"text": "no mid"}))).encode(),
    ],
    ids=["not-json", "array", "not-page", "no-mid"],
)
async def test_malformed_signed_bodies_answer_400(conn, fake, sink, raw):
    assert await fake.deliver(raw) == 400
    assert sink.batches == []


async def test_a_sink_failure_answers_500_so_meta_delivers_again(conn, fake, sink):
    sink.fail_times = 1
    assert await fake.customer_says(PSID, "hello") == 500
    assert await fake.deliver(fake.last_payload) == 200
    assert [e.text for e in sink.events] == ["hello"]


async def test_two_pages_of_two_apps_share_one_webhook(http, sink):
    first = FakeMessenger(
        page_ids=(PAGE,), app_secret="app-secret-one-0123", verify_token="verify-token-one-0123"
    )
    second = FakeMessenger(
        page_ids=(OTHER_PAGE,),
        app_secret="app-secret-two-0123",
        verify_token="verify-token-two-0123",
    )
    await first.start()
    await second.start()
    try:
        pages = (page_config(first), page_config(second, OTHER_PAGE))
        settings = Settings(messenger=MessengerSettings(accounts=pages))
        one, two = build(settings, http, sink, None)
        assert (one.account, two.account) == (PAGE, OTHER_PAGE)
        assert two.routes() == []
        server = await serve([first, second], one.routes())
        try:
            assert await first.customer_says("11", "to page one") == 200
            assert await second.customer_says("22", "to page two") == 200
            assert [(e.account, e.chat_id, e.text) for e in sink.events] == [
                (PAGE, "11", "to page one"),
                (OTHER_PAGE, "22", "to page two"),
            ]
            # App two's secret does not vouch for page one's entries.
            forged = body(event("33", message={"mid": "m_x", "text": "forged"}))
            assert await second.deliver(forged) == 200
            assert len(sink.events) == 2
            assert (await second.verify("subscribe", "verify-token-two-0123", "c"))[0] == 200
        finally:
            await server.close()
    finally:
        await first.stop()
        await second.stop()


# ---------------------------------------------------------------- send


async def test_a_reply_within_24_hours_is_a_response(conn, fake):
    customer_wrote(fake, 2)
    external_id = await conn.send(outbound("Your order ships today.", hours_ago=2))
    [sent] = fake.sent
    assert sent["recipient"] == {"id": PSID}
    assert sent["messaging_type"] == "RESPONSE" and "tag" not in sent
    assert sent["message"] == {"text": "Your order ships today."}
    assert sent["_page_id"] == PAGE
    assert external_id == sent["_mid"]


async def test_a_reply_after_24_hours_is_tagged_human_agent(conn, fake):
    customer_wrote(fake, 30)
    await conn.send(outbound("Sorry for the wait.", hours_ago=30))
    [sent] = fake.sent
    assert (sent["messaging_type"], sent["tag"]) == ("MESSAGE_TAG", "HUMAN_AGENT")


async def test_a_reply_after_7_days_is_window_closed(conn, fake):
    customer_wrote(fake, 8 * 24)
    with pytest.raises(WindowClosed) as caught:
        await conn.send(outbound("Still there?", hours_ago=8 * 24))
    assert caught.value.code == "10/2018278"
    assert "(Messenger 10/2018278)" in caught.value.reason
    assert fake.sent == [] and fake.rejected[0]["tag"] == "HUMAN_AGENT"


async def test_a_stale_last_message_time_is_corrected_by_meta(conn, fake):
    customer_wrote(fake, 30)  # the bridge believes 1 hour, Messenger knows 30
    with pytest.raises(WindowClosed):
        await conn.send(outbound("hi", hours_ago=1))
    assert fake.rejected[0]["messaging_type"] == "RESPONSE"


def test_messaging_type_boundaries():
    now = datetime(2024, 5, 1, 12, tzinfo=UTC)
    assert messaging_type(now - timedelta(hours=24), now) == ("RESPONSE", None)
    tagged = ("MESSAGE_TAG", "HUMAN_AGENT")
    assert messaging_type(now - timedelta(hours=24, seconds=1), now) == tagged
    assert messaging_type(None, now) == tagged
    naive = (now - timedelta(hours=1)).replace(tzinfo=None)
    assert messaging_type(naive, now) == ("RESPONSE", None)


async def test_long_text_is_split_into_2000_character_messages(conn, fake):
    customer_wrote(fake, 1)
    words = [f"word{n:04d}" for n in range(500)]  # 4999 characters
    text = " ".join(words)
    external_id = await conn.send(outbound(text))
    texts = fake.texts_to(PSID)
    assert len(texts) == 3
    assert all(len(t) <= 2000 for t in texts)
    assert " ".join(texts) == text
    assert external_id == fake.sent[0]["_mid"]


def test_split_text_cuts_at_line_breaks_and_hard_when_there_is_no_space():
    assert split_text("a" * 4500, TEXT_LIMIT) == ["a" * 2000, "a" * 2000, "a" * 500]
    lines = "\n".join(["x" * 1500, "y" * 1500])
    assert split_text(lines, TEXT_LIMIT) == ["x" * 1500, "y" * 1500]
    assert split_text("   ", TEXT_LIMIT) == []


async def test_files_are_uploaded_after_the_text_one_message_each(conn, fake):
    customer_wrote(fake, 1)
    invoice = FileData(
        kind=MediaKind.DOCUMENT, filename="invoice.pdf", data=PDF, mime_type="application/pdf"
    )
    shot = FileData(kind=MediaKind.IMAGE, filename="shot.png", data=PNG, mime_type="image/png")
    external_id = await conn.send(outbound("Here you go", invoice, shot))
    text, pdf, png = fake.sent
    assert text["message"] == {"text": "Here you go"} and external_id == text["_mid"]
    assert pdf["recipient"] == {"id": PSID} and pdf["messaging_type"] == "RESPONSE"
    assert pdf["message"] == {"attachment": {"type": "file", "payload": {"is_reusable": False}}}
    assert pdf["filedata"] == {
        "filename": "invoice.pdf",
        "content_type": "application/pdf",
        "data": PDF,
    }
    assert png["message"]["attachment"]["type"] == "image"
    assert png["filedata"]["data"] == PNG


async def test_a_file_alone_returns_its_id_and_an_odd_image_type_goes_as_a_file(conn, fake):
    customer_wrote(fake, 30)
    svg = FileData(
        kind=MediaKind.IMAGE, filename="a.svg", data=b"<svg/>", mime_type="image/svg+xml"
    )
    external_id = await conn.send(outbound("", svg, hours_ago=30))
    [sent] = fake.sent
    assert external_id == sent["_mid"]
    assert sent["message"]["attachment"]["type"] == "file"
    assert (sent["messaging_type"], sent["tag"]) == ("MESSAGE_TAG", "HUMAN_AGENT")


async def test_templates_edits_deletes_and_empty_messages_are_refused(conn, fake):
    template = TemplateCall(name="hello", language="en")
    with pytest.raises(PermanentError, match="WhatsApp feature") as caught:
        await conn.send(outbound("x", template=template))
    assert caught.value.code == "unsupported"
    with pytest.raises(PermanentError, match="edit"):
        await conn.edit(CHAT, ExternalMessageId("m_1"), "new")
    with pytest.raises(PermanentError, match="delete"):
        await conn.delete(CHAT, ExternalMessageId("m_1"))
    with pytest.raises(PermanentError):
        await conn.send(outbound("  "))
    assert fake.sent == [] and fake.rejected == []
    assert await conn.templates() == []


# ---------------------------------------------------------------- errors


async def test_a_rate_limit_answer_is_rate_limited_for_60_seconds(conn, fake):
    customer_wrote(fake, 1)
    fake.fail_next(613)
    with pytest.raises(RateLimited) as caught:
        await conn.send(outbound("hi"))
    assert caught.value.retry_after == 60


async def test_http_429_takes_retry_after_from_the_header(conn, fake):
    customer_wrote(fake, 1)
    fake.fail_next(4, status=429, headers={"Retry-After": "7"})
    with pytest.raises(RateLimited) as caught:
        await conn.send(outbound("hi"))
    assert caught.value.retry_after == 7
    await conn.send(outbound("hi again"))  # only the next call was refused
    assert fake.texts_to(PSID) == ["hi again"]


@pytest.mark.parametrize(("code", "status"), [(2, 503), (1200, 500), (1, 500)])
async def test_server_errors_are_transient(conn, fake, code, status):
    customer_wrote(fake, 1)
    fake.fail_next(code, status=status)
    with pytest.raises(TransientError) as caught:
        await conn.send(outbound("hi"))
    assert not isinstance(caught.value, Unreachable)
    assert f"(Messenger {code})" in str(caught.value)


async def test_a_non_json_bad_gateway_is_transient(http, sink):
    async def bad_gateway(request: web.Request) -> web.Response:
        return web.Response(status=502, text="<html>Bad Gateway</html>", content_type="text/html")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", bad_gateway)
    async with TestServer(app) as server:
        page = MessengerPage(
            page_id=PAGE,
            page_token=SecretStr("t"),
            app_secret=SecretStr("s" * 16),
            verify_token=SecretStr("v" * 16),
            api_base=str(server.make_url("/v21.0")),
        )
        conn = MessengerConnector(page, http, sink, webhook=None)
        with pytest.raises(TransientError, match="HTTP 502"):
            await conn.send(outbound("hi"))


async def test_an_unknown_person_and_a_blocked_page_are_permanent(conn, fake):
    with pytest.raises(PermanentError) as caught:
        await conn.send(outbound("hi"))  # the fake never saw PSID 7001 write
    assert caught.value.code == "100/2018001"
    customer_wrote(fake, 1)
    fake.fail_next(551)
    with pytest.raises(PermanentError, match="isn't available") as caught:
        await conn.send(outbound("hi"))
    assert not isinstance(caught.value, WindowClosed)
    assert caught.value.reason.endswith("(Messenger 551)")


async def test_a_wrong_page_token_is_permanent_and_not_shown(fake, http, sink):
    conn = MessengerConnector(
        page_config(fake, page_token=SecretStr("stolen-token")), http, sink, webhook=None
    )
    customer_wrote(fake, 1)
    with pytest.raises(PermanentError, match="page token") as caught:
        await conn.send(outbound("hi"))
    assert caught.value.code == "190"
    assert "stolen-token" not in str(caught.value)


async def test_an_unreachable_api_is_unreachable_without_the_token(fake, http, sink):
    page = page_config(fake, api_base="http://127.0.0.1:9/v21.0")
    conn = MessengerConnector(page, http, sink, webhook=None)
    with pytest.raises(Unreachable) as caught:
        await conn.send(outbound("hi"))
    assert fake.page_token not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


@pytest.mark.parametrize(
    ("status", "error", "raised", "code"),
    [
        (400, {"code": 10, "error_subcode": 2018278}, WindowClosed, "10/2018278"),
        (400, {"code": 10, "error_subcode": 2018065}, PermanentError, "10/2018065"),
        (400, {"code": 551, "error_subcode": 1545041}, PermanentError, "551/1545041"),
        (400, {"code": 100, "error_subcode": 2018001}, PermanentError, "100/2018001"),
        (403, {"code": 200, "error_subcode": 2018028}, PermanentError, "200/2018028"),
        (401, {"code": 190, "error_subcode": 463}, PermanentError, "190/463"),
        (400, {"code": 4}, RateLimited, None),
        (400, {"code": 17}, RateLimited, None),
        (400, {"code": 32}, RateLimited, None),
        (400, {"code": 613}, RateLimited, None),
        (429, {}, RateLimited, None),
        (500, {"code": 1200}, TransientError, None),
        (400, {"code": 2}, TransientError, None),
        (500, {"code": 100}, PermanentError, "100"),
        (503, {}, TransientError, None),
        (400, {"code": 12345}, PermanentError, "12345"),
        (404, {}, PermanentError, "HTTP 404"),
    ],
)
def test_raise_for_maps_graph_errors(status, error, raised, code):
    answer = {"error": {"message": "(#x) something", "type": "OAuthException", **error}}
    with pytest.raises(raised) as caught:
        _raise_for(status, answer, {})
    assert type(caught.value) is raised
    if code is not None:
        assert caught.value.code == code
        assert caught.value.reason.endswith(f"(Messenger {code})")


def test_window_closed_words_say_what_staff_can_do():
    with pytest.raises(WindowClosed) as caught:
        _raise_for(400, {"error": {"code": 10, "error_subcode": 2018278}}, {})
    assert "7 days" in caught.value.reason


# ---------------------------------------------------------------- policy and links


def test_window_refusal_boundaries(fake, http, sink):
    conn = MessengerConnector(page_config(fake), http, sink, webhook=None)
    now = datetime(2024, 5, 10, 12, tzinfo=UTC)
    assert conn.window_refusal(now - timedelta(hours=2), now) is None
    assert conn.window_refusal(now - timedelta(hours=30), now) is None
    assert conn.window_refusal(now - timedelta(days=7), now) is None
    late = conn.window_refusal(now - timedelta(days=7, seconds=1), now)
    assert late is not None and "7 days ago" in late and "HUMAN_AGENT" in late
    assert "30 days ago" in conn.window_refusal(now - timedelta(days=30), now)
    never = conn.window_refusal(None, now)
    assert never is not None and "up to 7 days" in never


def test_chat_link_uses_the_page_name_or_id(fake, http, sink):
    named = MessengerConnector(
        page_config(fake, page_name="acme.support"), http, sink, webhook=None
    )
    assert named.chat_link("spring sale") == "https://m.me/acme.support?ref=spring%20sale"
    plain = MessengerConnector(page_config(fake), http, sink, webhook=None)
    assert plain.chat_link() == f"https://m.me/{PAGE}"


def test_rate_keys_and_limits_are_per_page(fake, http, sink):
    conn = MessengerConnector(page_config(fake, rate=50), http, sink, webhook=None)
    assert conn.platform == MESSENGER and conn.account == PAGE
    assert conn.rate_keys(CHAT) == (f"messenger:{PAGE}",)
    assert conn.rate_limits() == {f"messenger:{PAGE}": RateLimit(rate=50, burst=50)}


def test_build_makes_nothing_without_pages(http, sink):
    assert build(Settings(), http, sink, None) == []


# ---------------------------------------------------------------- the fake itself


async def test_fake_takes_the_token_as_parameter_and_checks_the_send_body(fake, http):
    customer_wrote(fake, 1)
    url = f"{fake.base_url}/{PAGE}/messages"
    good = {"recipient": {"id": PSID}, "messaging_type": "RESPONSE", "message": {"text": "q"}}
    async with http.post(url, params={"access_token": fake.page_token}, json=good) as resp:
        answer = await resp.json()
    assert answer["recipient_id"] == PSID and answer["message_id"] == fake.sent[0]["_mid"]
    async with http.post(url, json=good) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"]["code"] == 104
    auth = {"Authorization": f"Bearer {fake.page_token}"}
    for broken in (
        {**good, "messaging_type": "MESSAGE_TAG"},  # a tag is needed
        {**good, "message": {"text": "x" * 2001}},
        {**good, "message": {"text": "x", "attachment": {}}},
        {**good, "recipient": {}},
    ):
        async with http.post(url, json=broken, headers=auth) as resp:
            error = (await resp.json())["error"]
            assert resp.status == 400 and error["code"] == 100 and error["type"] == "OAuthException"
    assert len(fake.sent) == 1 and len(fake.rejected) == 5


async def test_fake_profile_api_answers_the_fields_asked_for(fake, http):
    fake.profiles[PSID] = ("Ann", "Lee")
    auth = {"Authorization": f"Bearer {fake.page_token}"}
    url = f"{fake.base_url}/{PSID}"
    async with http.get(url, params={"fields": "first_name"}, headers=auth) as resp:
        assert await resp.json() == {"first_name": "Ann", "id": PSID}
    async with http.get(url, params={"access_token": "wrong"}) as resp:
        assert (await resp.json())["error"]["code"] == 190


# ---------------------------------------------------------------- properties

_leaf = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
)
_json = st.recursive(
    _leaf,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=12,
)


def _maybe(strategy):
    """Mostly the well-formed value, sometimes any JSON at all."""
    return st.integers(min_value=0, max_value=9).flatmap(lambda n: _json if n == 9 else strategy)


def _merge(parts):
    merged = {}
    for part in parts:
        merged.update(part)
    return merged


_ids = _maybe(st.sampled_from([PSID, "7002", "m_1", "m_2", PSID, "7002", "m_1", "m_2", ""]))
_ms = _maybe(
    st.integers(min_value=0, max_value=9).flatmap(
        lambda n: st.integers(min_value=-(10**20), max_value=10**20) | st.floats()
        if n == 9
        else st.integers(min_value=0, max_value=4 * 10**12)
    )
)
_text = _maybe(st.text(max_size=20))
_url = _maybe(st.sampled_from(["https://cdn.example/x.jpg", "https://cdn.example/d", ""]))
_attachment = st.fixed_dictionaries(
    {
        "type": _maybe(
            st.sampled_from(
                ["image", "video", "audio", "file", "fallback", "location", "template", "reel"]
            )
        )
    },
    optional={
        "payload": _maybe(
            st.fixed_dictionaries(
                {},
                optional={
                    "url": _url,
                    "coordinates": _maybe(
                        st.fixed_dictionaries({"lat": _maybe(st.floats()), "long": _json})
                    ),
                    "sticker_id": _json,
                    "title": _text,
                },
            )
        ),
        "title": _text,
        "url": _url,
    },
)
_message = st.fixed_dictionaries(
    {"mid": _ids},
    optional={
        "text": _text,
        "is_echo": _maybe(st.booleans()),
        "attachments": _maybe(st.lists(_attachment, max_size=3)),
        "quick_reply": _json,
    },
)
_kind = st.one_of(
    st.fixed_dictionaries({"message": _maybe(_message)}),
    st.fixed_dictionaries({"message": _maybe(_message)}),
    st.fixed_dictionaries(
        {"message_edit": _maybe(st.fixed_dictionaries({"mid": _ids}, optional={"text": _text}))}
    ),
    st.fixed_dictionaries(
        {
            "postback": _maybe(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "title": _text,
                        "payload": _text,
                        "mid": _ids,
                        "referral": _maybe(st.fixed_dictionaries({"ref": _text})),
                    },
                )
            )
        }
    ),
    st.fixed_dictionaries(
        {"referral": _maybe(st.fixed_dictionaries({"ref": _text}, optional={"source": _text}))}
    ),
    st.fixed_dictionaries(
        {"delivery": _maybe(st.fixed_dictionaries({"watermark": _ms}, optional={"mids": _json}))}
    ),
    st.fixed_dictionaries({"read": _maybe(st.fixed_dictionaries({"watermark": _ms}))}),
    st.dictionaries(st.sampled_from(["reaction", "optin", "account_linking"]), _json),
)
_base = st.fixed_dictionaries(
    {
        "sender": _maybe(st.fixed_dictionaries({"id": _ids})),
        "recipient": _maybe(st.fixed_dictionaries({"id": st.just(PAGE)})),
        "timestamp": _ms,
    }
)
_event = _maybe(st.tuples(_base, _kind, st.dictionaries(st.text(max_size=6), _json, max_size=2)))
_entry = st.fixed_dictionaries(
    {
        "id": _maybe(st.sampled_from([PAGE, PAGE, OTHER_PAGE]) | st.integers()),
        "messaging": _maybe(
            st.lists(_event.map(lambda e: _merge(e) if isinstance(e, tuple) else e), max_size=3)
        ),
    },
    optional={"time": _ms, "changes": _json},
)
_payloads = _maybe(
    st.fixed_dictionaries(
        {"object": _maybe(st.just("page")), "entry": _maybe(st.lists(_entry, max_size=3))}
    )
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=_payloads)
def test_parse_webhook_raises_only_bad_request(payload):
    try:
        events = parse_webhook(payload, {PAGE})
    except BadRequest:
        return
    for one in events:
        assert one.account == PAGE
        if isinstance(one, InboundMessage):
            assert one.text or one.attachments


def test_the_webhook_never_answers_500_to_a_signed_body():
    """Any signed body: 200 or 400; the sink is only called with events, never on a 400."""
    secret = "property-secret-0123"
    page = MessengerPage(
        page_id=PAGE,
        page_token=SecretStr("t"),
        app_secret=SecretStr(secret),
        verify_token=SecretStr("v" * 16),
        api_base="http://127.0.0.1:9/v21.0",
    )
    sink = RecordingSink()

    async def lookup(page, psid):
        return None

    async def serve_webhook() -> TestClient:
        app = web.Application()
        app.add_routes(MessengerWebhook([page], sink, lookup).routes())
        client = TestClient(TestServer(app))
        await client.start_server()
        return client

    with asyncio.Runner() as runner:
        client = runner.run(serve_webhook())

        async def post(raw: bytes) -> int:
            digest = hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
            headers = {"X-Hub-Signature-256": f"sha256={digest}"}
            async with client.post(WEBHOOK_PATH, data=raw, headers=headers) as resp:
                await resp.read()
                return resp.status

        @settings(
            max_examples=200,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(raw=_payloads.map(lambda p: json.dumps(p).encode()) | st.binary(max_size=40))
        def check(raw):
            before = len(sink.batches)
            status = runner.run(post(raw))
            assert status in (200, 400)
            if status == 400:
                assert len(sink.batches) == before
            assert all(batch for batch in sink.batches)

        try:
            check()
        finally:
            runner.run(client.close())
