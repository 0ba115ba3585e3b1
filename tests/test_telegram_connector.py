"""The Telegram connector against a fake Bot API server that speaks the real wire format."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from bridge.config import TelegramSettings
from bridge.errors import (
    BadRequest,
    ConfigError,
    PermanentError,
    RateLimited,
    TransientError,
    Unreachable,
)
from bridge.types import (
    TELEGRAM,
    AccountId,
    Attachment,
    ChatId,
    ExternalMessageId,
    FileData,
    InboundEdit,
    InboundMessage,
    MediaKind,
    OutboundMessage,
    RateLimit,
)
from connectors.telegram import TEXT_LIMIT, TelegramConnector, _raise_for, parse_update
from connectors.wire import split_text
from tests import connector_kit
from tests.connector_kit import eventually
from tests.fakes.telegram import FakeTelegram

# The kit's fixtures, bound here so that pytest finds them for this module.
http, sink = connector_kit.http, connector_kit.sink

SECRET = "tg-secret_1-long-enough"
CHAT = ChatId("4242")
ACCOUNT = AccountId("123456")
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


def outbound(text: str, *files: FileData) -> OutboundMessage:
    return OutboundMessage(
        platform=TELEGRAM, account=ACCOUNT, chat_id=CHAT, text=text, files=tuple(files)
    )


@pytest.fixture
async def fake():
    async with FakeTelegram() as server:
        yield server


@pytest.fixture
async def make(fake, http, sink):
    """Build connectors against the fake; they are stopped after the test."""
    made: list[TelegramConnector] = []

    def build(mode="polling", public_url=None, api_base=None, token=None, **overrides):
        settings = TelegramSettings(
            token=SecretStr(token or fake.token),
            api_base=api_base or fake.base_url,
            webhook_secret=SecretStr(SECRET),
            poll_timeout=overrides.pop("poll_timeout", 1),
            **overrides,
        )
        connector = TelegramConnector(settings, http, sink, mode=mode, public_url=public_url)
        connector.backoff_first, connector.backoff_max = 0.05, 0.2
        made.append(connector)
        return connector

    yield build
    for connector in made:
        await connector.stop()


@pytest.fixture
def conn(make):
    return make()


# ---------------------------------------------------------------- parse_update


def test_text_message_becomes_inbound_message_with_profile(fake):
    update = fake.text_update(
        4242, "hello", first_name="Ann", last_name="Lee", username="annlee", language_code="de"
    )
    event = parse_update(update, ACCOUNT)
    assert isinstance(event, InboundMessage)
    assert event.platform == TELEGRAM and event.account == ACCOUNT
    assert event.chat_id == "4242"
    assert event.external_id == f"4242:{update['message']['message_id']}"
    assert event.text == "hello" and event.attachments == () and event.start_payload is None
    assert event.profile.display_name == "Ann Lee"
    assert event.profile.username == "annlee" and event.profile.language == "de"
    assert event.sent_at == datetime.fromtimestamp(update["message"]["date"], tz=UTC)
    assert event.sent_at.tzinfo is UTC


@pytest.mark.parametrize(
    ("text", "payload"),
    [
        ("/start promo_42-x", "promo_42-x"),
        ("/start", None),
        ("/start has spaces!", None),
        ("/startle me", None),
        ("hello /start abc", None),
    ],
)
def test_start_deep_link_payload_is_taken_and_text_kept(fake, text, payload):
    event = parse_update(fake.text_update(4242, text), ACCOUNT)
    assert isinstance(event, InboundMessage)
    assert event.start_payload == payload
    assert event.text == text


def test_photo_becomes_image_attachment_of_the_largest_size(fake):
    update = fake.photo_update(4242, PNG, caption="broken part")
    event = parse_update(update, ACCOUNT)
    assert isinstance(event, InboundMessage)
    assert event.text == "broken part"
    [attachment] = event.attachments
    largest = update["message"]["photo"][-1]
    assert attachment.kind is MediaKind.IMAGE
    assert attachment.ref == largest["file_id"]
    assert attachment.size == len(PNG)


def test_document_keeps_name_type_and_size(fake):
    update = fake.document_update(4242, b"%PDF-1.4", "invoice.pdf", "application/pdf")
    event = parse_update(update, ACCOUNT)
    assert isinstance(event, InboundMessage)
    assert event.text == ""
    assert event.attachments == (
        Attachment(
            kind=MediaKind.DOCUMENT,
            ref=update["message"]["document"]["file_id"],
            filename="invoice.pdf",
            mime_type="application/pdf",
            size=8,
        ),
    )


def _without_text(update):
    update["message"].pop("text")
    return update


@pytest.mark.parametrize(
    ("field", "media", "kind"),
    [
        ("voice", {"file_id": "v1", "file_unique_id": "u", "duration": 3}, MediaKind.AUDIO),
        (
            "audio",
            {"file_id": "a1", "file_unique_id": "u", "duration": 3, "mime_type": "audio/mpeg"},
            MediaKind.AUDIO,
        ),
        (
            "video",
            {"file_id": "m1", "file_unique_id": "u", "width": 1, "height": 1, "duration": 1},
            MediaKind.VIDEO,
        ),
    ],
)
def test_voice_audio_and_video_become_attachments_of_their_kind(fake, field, media, kind):
    update = _without_text(fake.text_update(4242, "x"))
    update["message"][field] = media
    event = parse_update(update, ACCOUNT)
    assert isinstance(event, InboundMessage)
    [attachment] = event.attachments
    assert attachment.kind is kind and attachment.ref == media["file_id"]


def test_edited_message_becomes_inbound_edit(fake):
    original = fake.text_update(4242, "order 1234")
    message_id = original["message"]["message_id"]
    update = fake.edit_update(4242, message_id, "order 4321")
    event = parse_update(update, ACCOUNT)
    assert event == InboundEdit(
        platform=TELEGRAM,
        account=ACCOUNT,
        chat_id=CHAT,
        external_id=ExternalMessageId(f"4242:{message_id}"),
        text="order 4321",
        edited_at=datetime.fromtimestamp(update["edited_message"]["edit_date"], tz=UTC),
    )


def _group(fake):
    update = fake.text_update(4242, "hi all")
    update["message"]["chat"] = {"id": -100123, "type": "supergroup", "title": "G"}
    return update


def _live_location(fake):
    update = fake.edit_update(4242, 1, "x")
    del update["edited_message"]["text"]
    update["edited_message"]["location"] = {"latitude": 1.0, "longitude": 2.0}
    return update


@pytest.mark.parametrize(
    "build",
    [
        _group,
        _live_location,
        lambda fake: {"update_id": 5, "channel_post": {"message_id": 1, "text": "news"}},
        lambda fake: {
            "update_id": 6,
            "my_chat_member": {"chat": {"id": 4242, "type": "private"}, "date": 1},
        },
        lambda fake: {"update_id": 7, "callback_query": {"id": "1", "data": "x"}},
    ],
    ids=["group", "live-location", "channel-post", "my-chat-member", "callback"],
)
def test_updates_the_bridge_does_not_handle_are_ignored(fake, build):
    assert parse_update(build(fake), ACCOUNT) is None


@pytest.mark.parametrize(
    "payload",
    [
        [1, 2],
        "update",
        {},
        {"update_id": "7", "message": {}},
        {"update_id": True},
        {"update_id": 1, "message": "hi"},
        {"update_id": 1, "message": {"message_id": 1, "date": 1, "text": "no chat"}},
        {"update_id": 1, "message": {"chat": {"id": 1}, "date": 1, "text": "no id"}},
        {"update_id": 1, "message": {"message_id": 1, "chat": {"id": "x"}, "date": 1}},
        {
            "update_id": 1,
            "message": {
                "message_id": 1,
                "chat": {"id": 1, "type": "private"},
                "date": 1,
                "photo": [{"width": 1}],
            },
        },
    ],
)
def test_malformed_update_raises_bad_request(payload):
    with pytest.raises(BadRequest):
        parse_update(payload, ACCOUNT)


# ---------------------------------------------------------------- send, edit, delete, fetch


async def test_send_text_calls_send_message_and_returns_chat_and_message_id(conn, fake):
    fake.push(fake.text_update(4242, "hi"))  # the customer's message takes id 1 in this chat
    external_id = await conn.send(outbound("Hello there"))
    [sent] = fake.messages_to(4242)
    assert sent.method == "sendMessage" and sent.text == "Hello there"
    assert sent.message_id == 2
    assert external_id == "4242:2"


async def test_long_text_is_split_on_line_boundaries_and_first_id_returned(conn, fake):
    lines = [f"line {n:04d} " + "x" * 90 for n in range(120)]  # about 12 000 characters
    text = "\n".join(lines)
    external_id = await conn.send(outbound(text))
    sent = fake.messages_to(4242)
    assert len(sent) == 3
    assert all(len(m.text) <= 4096 for m in sent)
    assert "\n".join(m.text for m in sent) == text  # no line was cut in two
    assert external_id == f"4242:{sent[0].message_id}"


def test_split_counts_utf16_units_and_cuts_words_only_at_spaces():
    emoji = "😀" * 3000  # 6000 UTF-16 code units, no break at all
    chunks = split_text(emoji, TEXT_LIMIT)
    assert "".join(chunks) == emoji
    assert all(len(c.encode("utf-16-le")) // 2 <= 4096 for c in chunks)
    words = " ".join(["word"] * 2000)
    chunks = split_text(words, TEXT_LIMIT)
    assert all(
        not c.startswith(" ") and c.split(" ") == ["word"] * len(c.split(" ")) for c in chunks
    )
    assert " ".join(chunks) == words


async def test_photo_is_uploaded_with_the_text_as_caption(conn, fake):
    image = FileData(kind=MediaKind.IMAGE, filename="shot.png", data=PNG, mime_type="image/png")
    external_id = await conn.send(outbound("the broken part", image))
    [sent] = fake.messages_to(4242)
    assert sent.method == "sendPhoto"
    assert sent.caption == "the broken part"
    assert (sent.file_name, sent.file_bytes, sent.mime_type) == ("shot.png", PNG, "image/png")
    assert external_id == f"4242:{sent.message_id}"
    assert fake.count("sendMessage") == 0


async def test_document_with_text_over_caption_limit_sends_the_text_first(conn, fake):
    manual = FileData(
        kind=MediaKind.DOCUMENT, filename="manual.pdf", data=b"%PDF", mime_type="application/pdf"
    )
    text = "read this " * 150  # 1500 characters: too long for a caption
    external_id = await conn.send(outbound(text, manual))
    first, second = fake.messages_to(4242)
    assert (first.method, first.text) == ("sendMessage", text)
    assert (second.method, second.caption, second.file_name) == ("sendDocument", None, "manual.pdf")
    assert second.file_bytes == b"%PDF" and second.mime_type == "application/pdf"
    assert external_id == f"4242:{first.message_id}"


async def test_several_files_carry_the_caption_on_the_first_only(conn, fake):
    files = [
        FileData(kind=MediaKind.IMAGE, filename=f"{n}.png", data=PNG, mime_type="image/png")
        for n in range(2)
    ] + [FileData(kind=MediaKind.IMAGE, filename="a.gif", data=b"GIF89a", mime_type="image/gif")]
    external_id = await conn.send(outbound("three files", *files))
    sent = fake.messages_to(4242)
    assert [m.method for m in sent] == ["sendPhoto", "sendPhoto", "sendDocument"]
    assert [m.caption for m in sent] == ["three files", None, None]
    assert external_id == f"4242:{sent[0].message_id}"


async def test_edit_changes_the_text_and_an_unchanged_text_counts_as_done(conn, fake):
    external_id = await conn.send(outbound("Helo"))
    await conn.edit(CHAT, external_id, "Hello")
    await conn.edit(CHAT, external_id, "Hello")  # Telegram: "message is not modified"
    [sent] = fake.messages_to(4242)
    assert sent.edited_texts == ["Hello"]
    assert fake.count("editMessageText") == 2


async def test_edit_of_a_photo_caption_uses_edit_message_caption(conn, fake):
    image = FileData(kind=MediaKind.IMAGE, filename="shot.png", data=PNG, mime_type="image/png")
    external_id = await conn.send(outbound("the part", image))
    await conn.edit(CHAT, external_id, "the broken part")
    [sent] = fake.messages_to(4242)
    assert sent.edited_texts == ["the broken part"]
    assert fake.params_of("editMessageCaption")[0]["caption"] == "the broken part"


async def test_edit_of_a_missing_message_is_a_permanent_error(conn, fake):
    with pytest.raises(PermanentError, match="message to edit not found"):
        await conn.edit(CHAT, ExternalMessageId("4242:99"), "x")


async def test_delete_removes_the_message_and_a_second_delete_is_fine(conn, fake):
    external_id = await conn.send(outbound("oops"))
    await conn.delete(CHAT, external_id)
    assert fake.messages_to(4242) == []
    await conn.delete(CHAT, external_id)  # "message to delete not found" counts as deleted
    assert fake.count("deleteMessage") == 2
    assert fake.params_of("deleteMessage")[0]["message_id"] == int(external_id.split(":")[1])


async def test_fetch_returns_the_bytes_of_the_largest_photo(conn, fake):
    event = parse_update(fake.photo_update(4242, PNG), ACCOUNT)
    [attachment] = event.attachments
    data = await conn.fetch(attachment)
    assert data.data == PNG
    assert data.kind is MediaKind.IMAGE and data.mime_type == "image/jpeg"
    assert data.filename.endswith(".jpg")
    assert fake.params_of("getFile") == [{"file_id": attachment.ref}]


async def test_fetch_of_a_document_keeps_its_name_and_type(conn, fake):
    update = fake.document_update(4242, b"%PDF-1.4 invoice", "invoice.pdf", "application/pdf")
    [attachment] = parse_update(update, ACCOUNT).attachments
    data = await conn.fetch(attachment)
    assert (data.filename, data.mime_type, data.data) == (
        "invoice.pdf",
        "application/pdf",
        b"%PDF-1.4 invoice",
    )


async def test_fetch_of_an_unknown_file_is_a_permanent_error(conn):
    with pytest.raises(PermanentError, match="invalid file_id"):
        await conn.fetch(Attachment(kind=MediaKind.DOCUMENT, ref="nope"))


# ---------------------------------------------------------------- error mapping


async def test_blocked_user_is_a_permanent_error_that_says_so(conn, fake):
    fake.block(4242)
    with pytest.raises(PermanentError) as caught:
        await conn.send(outbound("are you there?"))
    assert caught.value.code == "403"
    assert caught.value.reason == "the user blocked the bot"
    assert fake.messages_to(4242) == []


async def test_429_is_rate_limited_with_the_retry_after_telegram_gave(conn, fake):
    fake.fail_next("sendMessage", 429, "Too Many Requests: retry after 7", retry_after=7)
    with pytest.raises(RateLimited) as caught:
        await conn.send(outbound("hi"))
    assert caught.value.retry_after == 7


async def test_the_fakes_per_chat_bucket_answers_429_on_a_too_fast_second_send(conn, fake):
    fake.set_rate_limits(per_chat=1, global_=None, burst=1)
    await conn.send(outbound("one"))
    with pytest.raises(RateLimited) as caught:
        await conn.send(outbound("two"))
    assert caught.value.retry_after >= 1
    assert fake.rate_limited_count == 1
    assert [m.text for m in fake.messages_to(4242)] == ["one"]


async def test_storm_answers_429_to_every_send(conn, fake):
    fake.storm(3)
    with pytest.raises(RateLimited) as caught:
        await conn.send(outbound("hi"))
    assert 1 <= caught.value.retry_after <= 3


async def test_server_error_is_transient(conn, fake):
    fake.fail_next("sendMessage", 500, "Internal Server Error")
    with pytest.raises(TransientError) as caught:
        await conn.send(outbound("hi"))
    assert not isinstance(caught.value, Unreachable)


async def test_a_server_that_is_down_is_unreachable_and_the_token_is_not_shown(make, fake):
    conn = make(api_base="http://127.0.0.1:9")  # the discard port: nobody listens
    with pytest.raises(Unreachable) as caught:
        await conn.send(outbound("hi"))
    assert fake.token not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


async def test_a_non_json_answer_is_transient(make, http):
    async def bad_gateway(request: web.Request) -> web.Response:
        return web.Response(status=502, text="<html>Bad Gateway</html>", content_type="text/html")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", bad_gateway)
    async with TestServer(app) as server:
        conn = make(api_base=str(server.make_url("")))
        with pytest.raises(TransientError, match="HTTP 502"):
            await conn.send(outbound("hi"))


async def test_a_rejected_token_is_a_permanent_error(make):
    conn = make(token="123456:WRONG")
    with pytest.raises(PermanentError, match="the bot token was rejected"):
        await conn.start()


@pytest.mark.parametrize(
    ("status", "description", "error", "reason"),
    [
        (403, "Forbidden: user is deactivated", PermanentError, "deleted their Telegram account"),
        (400, "Bad Request: chat not found", PermanentError, "the chat no longer exists"),
        (400, "Bad Request: message is too long", PermanentError, "message is too long"),
        (502, "Bad Gateway", TransientError, "Bad Gateway"),
    ],
)
def test_raise_for_maps_bot_api_errors(status, description, error, reason):
    body = {"ok": False, "error_code": status, "description": description}
    with pytest.raises(error, match=reason) as caught:
        _raise_for(status, body)
    if isinstance(caught.value, PermanentError):
        assert caught.value.code == str(status)


def test_a_bad_token_shape_or_missing_secret_is_a_config_error(fake, http, sink):
    bad = TelegramSettings(token=SecretStr("not-a-token"), api_base=fake.base_url)
    with pytest.raises(ConfigError, match="telegram.token"):
        TelegramConnector(bad, http, sink, mode="polling", public_url=None)
    no_secret = TelegramSettings(token=SecretStr(fake.token), api_base=fake.base_url)
    with pytest.raises(ConfigError, match="telegram.webhook_secret"):
        TelegramConnector(no_secret, http, sink, mode="webhook", public_url=None)


def test_rate_keys_and_limits_follow_the_settings(make):
    conn = make(rate_global=20, rate_per_chat=0.5, burst_per_chat=2)
    assert conn.account == "123456"
    assert conn.rate_keys(CHAT) == ("telegram:123456", "telegram:123456:chat:4242")
    assert conn.rate_limits() == {
        "telegram:123456": RateLimit(rate=20, burst=20),
        "telegram:123456:chat:*": RateLimit(rate=0.5, burst=2),
    }


# ---------------------------------------------------------------- webhook


async def test_start_in_webhook_mode_registers_url_secret_and_update_kinds(make, fake):
    conn = make(mode="webhook", public_url="https://bridge.example.com/")
    await conn.start()
    assert conn.username == "test_bot"
    assert fake.webhook_url == "https://bridge.example.com/webhooks/telegram"
    assert fake.webhook_secret == SECRET
    assert fake.allowed_updates == ["message", "edited_message", "message_reaction"]
    assert fake.count("getUpdates") == 0


async def test_polling_mode_serves_no_routes_and_webhook_mode_one(make):
    assert make(mode="polling").routes() == []
    [route] = make(mode="webhook").routes()
    assert (route.method, route.path) == ("POST", "/webhooks/telegram")


@pytest.fixture
async def webhook(make, fake):
    """A started webhook-mode connector served on a local port; yields its webhook URL."""
    conn = make(mode="webhook", public_url="https://bridge.example.com")
    await conn.start()
    app = web.Application()
    app.add_routes(conn.routes())
    async with TestClient(TestServer(app)) as client:
        yield str(client.make_url("/webhooks/telegram"))


async def test_webhook_refuses_a_missing_secret_with_401(webhook, fake, sink):
    assert await fake.deliver(fake.text_update(4242, "hi"), url=webhook, secret=None) == 401
    assert sink.batches == []


async def test_webhook_refuses_a_wrong_secret_with_403(webhook, fake, sink):
    assert await fake.deliver(fake.text_update(4242, "hi"), url=webhook, secret="wrong") == 403
    assert sink.batches == []


@pytest.mark.parametrize(
    "body", [b"{not json", b"[1, 2]", b'{"update_id": "x"}', b'{"update_id": 1, "message": 5}']
)
async def test_webhook_refuses_a_malformed_update_with_400(webhook, fake, sink, body):
    assert await fake.deliver(body, url=webhook) == 400
    assert sink.batches == []


async def test_webhook_hands_a_good_update_to_the_sink_then_answers_200(webhook, fake, sink):
    update = fake.text_update(4242, "hello")
    assert await fake.deliver(update, url=webhook) == 200
    [[event]] = sink.batches
    assert isinstance(event, InboundMessage) and event.text == "hello"


async def test_webhook_answers_200_to_an_ignored_update_without_the_sink(webhook, fake, sink):
    assert await fake.deliver({"update_id": 9, "channel_post": {}}, url=webhook) == 200
    assert sink.batches == []


async def test_webhook_answers_500_when_the_sink_fails_so_telegram_retries(webhook, fake, sink):
    sink.fail_times = 1
    update = fake.text_update(4242, "hello")
    assert await fake.deliver(update, url=webhook) == 500
    assert await fake.deliver(update, url=webhook) == 200
    assert [e.text for e in sink.events] == ["hello"]


# ---------------------------------------------------------------- polling


async def test_polling_waits_for_start_loop_which_deletes_the_webhook_and_long_polls(conn, fake):
    await conn.start()
    await asyncio.sleep(0.2)
    # Only the process that runs the loops polls (Telegram answers a second poller 409).
    assert fake.count("getUpdates") == 0 and fake.count("deleteWebhook") == 0
    await conn.start_loop()
    await eventually(lambda: fake.count("getUpdates"))
    assert fake.count("deleteWebhook") == 1
    params = fake.params_of("getUpdates")[0]
    assert params["timeout"] == 1
    assert params["allowed_updates"] == ["message", "edited_message", "message_reaction"]


async def test_pushed_updates_reach_the_sink_in_order(conn, fake, sink):
    await conn.start()
    await conn.start_loop()
    first = fake.text_update(4242, "one")
    fake.push(first)
    fake.push(fake.photo_update(4242, PNG, caption="two"))
    fake.push(fake.edit_update(4242, first["message"]["message_id"], "one!"))
    fake.push(fake.text_update(777, "other chat"))
    await eventually(lambda: len(sink.events) == 4)
    texts = [(type(e).__name__, e.chat_id, e.text) for e in sink.events]
    assert texts == [
        ("InboundMessage", "4242", "one"),
        ("InboundMessage", "4242", "two"),
        ("InboundEdit", "4242", "one!"),
        ("InboundMessage", "777", "other chat"),
    ]
    await eventually(lambda: not fake.pending_updates)  # the next poll confirmed them


async def test_offset_advances_only_after_the_sink_returned(conn, fake, sink):
    sink.fail_times = 1
    updates = [fake.text_update(4242, "a"), fake.text_update(4242, "b")]
    for update in updates:
        fake.push(update)
    await conn.start()
    await conn.start_loop()
    await eventually(lambda: sink.batches)
    ids = [e.external_id for e in sink.failed[0]]
    assert [e.external_id for e in sink.batches[0]] == ids  # the same updates came again
    offsets = [p.get("offset") for p in fake.params_of("getUpdates")]
    assert offsets[:2] == [None, None]  # nothing confirmed while the sink failed
    await eventually(lambda: len(fake.params_of("getUpdates")) >= 3)
    assert fake.params_of("getUpdates")[2]["offset"] == updates[-1]["update_id"] + 1


async def test_a_malformed_update_is_skipped_and_confirmed(conn, fake, sink):
    broken = {"update_id": 1, "message": {"chat": {"id": 4242}, "text": "no id, no date"}}
    fake.push({**broken, "update_id": 100_000})
    fake.push(fake.text_update(4242, "fine"))
    await conn.start()
    await conn.start_loop()
    await eventually(lambda: sink.events)
    assert [e.text for e in sink.events] == ["fine"]
    await eventually(lambda: not fake.pending_updates)


@pytest.mark.parametrize(
    "field, value",
    [("date", 10**20), ("date", -(10**12)), ("text", "half an emoji \ud83d")],
    ids=["far-future", "far-past", "lone-surrogate"],
)
async def test_an_update_with_an_impossible_date_or_text_is_skipped_and_confirmed(
    conn, fake, sink, field, value
):
    # Such an update used to raise past the poller (or fail in storage): it was never
    # confirmed, and getUpdates served it again and again, ahead of every later update.
    poisoned = fake.text_update(4242, "first")
    poisoned["message"][field] = value
    fake.push(poisoned)
    fake.push(fake.text_update(4242, "fine"))
    await conn.start()
    await conn.start_loop()
    await eventually(lambda: sink.events)
    assert [e.text for e in sink.events] == ["fine"]
    await eventually(lambda: not fake.pending_updates)


async def test_polling_survives_errors_and_waits_out_a_429(conn, fake, sink):
    fake.fail_next("getUpdates", 502, "Bad Gateway", times=2)
    fake.fail_next("getUpdates", 429, "Too Many Requests: retry after 1", retry_after=1)
    await conn.start()
    await conn.start_loop()
    fake.push(fake.text_update(4242, "still there"))
    started = time.monotonic()
    await eventually(lambda: sink.events, timeout=5)
    assert time.monotonic() - started >= 0.9  # retry_after was respected
    assert [e.text for e in sink.events] == ["still there"]


async def test_stop_ends_a_waiting_long_poll_promptly(make, fake):
    conn = make(poll_timeout=20)
    await conn.start()
    await conn.start_loop()
    await eventually(lambda: fake.count("getUpdates"))
    started = time.monotonic()
    await conn.stop()
    assert time.monotonic() - started < 1
    calls = fake.count("getUpdates")
    await asyncio.sleep(0.2)
    assert fake.count("getUpdates") == calls


# ---------------------------------------------------------------- the fake itself


async def test_fake_answers_wrong_token_401_and_unknown_method_404(fake, http):
    async with http.get(f"{fake.base_url}/bot1:nope/getMe") as resp:
        assert resp.status == 401
        assert await resp.json() == {"ok": False, "error_code": 401, "description": "Unauthorized"}
    async with http.post(f"{fake.base_url}/bot{fake.token}/sendTelepathy") as resp:
        assert resp.status == 404
        assert (await resp.json())["description"] == "Not Found: method not found"


async def test_fake_takes_query_string_and_form_parameters(fake, http):
    api = f"{fake.base_url}/bot{fake.token}"
    async with http.get(f"{api}/sendMessage", params={"chat_id": "5", "text": "q"}) as resp:
        assert (await resp.json())["result"]["text"] == "q"
    async with http.post(f"{api}/sendMessage", data={"chat_id": "5", "text": ""}) as resp:
        assert resp.status == 400
        assert (await resp.json())["description"] == "Bad Request: message text is empty"
    assert [m.text for m in fake.messages_to(5)] == ["q"]


async def test_fake_long_poll_wakes_on_push_and_refuses_while_a_webhook_is_set(fake, http):
    api = f"{fake.base_url}/bot{fake.token}"
    asyncio.get_running_loop().call_later(0.1, fake.push, fake.text_update(5, "late"))
    started = time.monotonic()
    async with http.post(f"{api}/getUpdates", json={"timeout": 5}) as resp:
        [update] = (await resp.json())["result"]
    assert update["message"]["text"] == "late" and time.monotonic() - started < 2
    async with http.post(f"{api}/setWebhook", json={"url": "https://x.example/h"}) as resp:
        assert await resp.json() == {"ok": True, "result": True, "description": "Webhook was set"}
    async with http.post(f"{api}/getUpdates") as resp:
        assert resp.status == 409
