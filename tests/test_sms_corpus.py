"""Every Twilio request body in tests/corpus/twilio is read by the SMS connector as it should be,
both by the parsers and through the webhook, signed by Twilio's own helper library."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import parse_qsl

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer, unused_port
from pydantic import SecretStr
from twilio.request_validator import RequestValidator

from bridge.config import SmsAccount
from bridge.types import SMS, AccountId, ChatId, DeliveryStatus, MediaKind
from connectors.sms import (
    EMPTY_TWIML,
    STATUS_PATH,
    WEBHOOK_PATH,
    TwilioWebhook,
    parse_message,
    parse_status,
)
from tests import connector_kit
from tests.fakes.twilio import CORPUS, sample

http, sink = connector_kit.http, connector_kit.sink

NOW = datetime(2023, 12, 7, 15, 30, tzinfo=UTC)
TOKEN = "corpus-auth-token-0123"
# The receiving number of the incoming samples, the sender and the service of the status ones.
NUMBER = "+15558675310"
SENDER = "+15017250604"
SERVICE = "MG9752274e9e519418a7406176694466fa"
ACCOUNTS = {NUMBER: NUMBER, SENDER: SENDER, SERVICE: SERVICE}
MEDIA_URL = (
    "https://api.twilio.com/2010-04-01/Accounts/ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"
    "/Messages/MM5c3e1f0a9b8d4c7e6f5a4b3c2d1e0f9a/Media/ME4e4b56c4e8e3c3a0a6f14f8e2d3a1b90"
)

INBOUND = {
    "inbound_sms": ("Ahoy! Let's build something amazing.", ()),
    "inbound_mms": ("", ((MediaKind.IMAGE, MEDIA_URL, "image/jpeg"),)),
    "inbound_sms_unicode": ("It\u2019s here \U0001f389 \u201cthanks\u201d", ()),
}
# Status → (what staff are shown, the error code, the account it is filed under).
STATUSES = {
    "status_queued": (None, None, None),
    "status_sent": (DeliveryStatus.SENT, None, SENDER),
    "status_delivered": (DeliveryStatus.DELIVERED, None, SENDER),
    "status_undelivered": (DeliveryStatus.FAILED, "30003", SENDER),
    "status_failed": (DeliveryStatus.FAILED, "30001", SENDER),
}


def test_every_sample_has_a_test():
    assert {path.stem for path in CORPUS.glob("*.form")} == set(INBOUND) | set(STATUSES)


@pytest.mark.parametrize("name", sorted(INBOUND))
def test_incoming_samples_become_messages_as_written(name):
    text, media = INBOUND[name]
    event = parse_message(sample(name), ACCOUNTS, now=NOW)
    assert event is not None
    assert (event.platform, event.account, event.chat_id) == (
        SMS,
        AccountId(NUMBER),
        ChatId("+14017122661"),
    )
    assert event.external_id == sample(name)["MessageSid"]
    assert event.text == text
    assert [(a.kind, a.ref, a.mime_type) for a in event.attachments] == list(media)


@pytest.mark.parametrize("name", sorted(STATUSES))
def test_status_samples_become_status_updates(name):
    status, code, account = STATUSES[name]
    update = parse_status(sample(name), ACCOUNTS, now=NOW)
    if status is None:
        assert update is None  # still on its way: nothing new for staff
        return
    assert update is not None
    assert (update.status, update.code, update.account) == (status, code, account)
    assert update.external_id == "SM1342fe1b2c904d1ab04f0fc7a58abca9"
    if code is not None:
        assert update.reason is not None and f"(Twilio {code})" in update.reason


@pytest.mark.parametrize("name", sorted([*INBOUND, *STATUSES]))
async def test_each_sample_posted_as_twilio_posts_it_is_accepted(name, http, sink):
    senders = [
        SmsAccount(account_sid="AC" + "0" * 32, auth_token=SecretStr(TOKEN), from_number=number)
        for number in (NUMBER, SENDER)
    ]
    body = (CORPUS / f"{name}.form").read_bytes().strip()
    path = STATUS_PATH if name.startswith("status_") else WEBHOOK_PATH
    port = unused_port()
    public = f"http://127.0.0.1:{port}"
    webhook = TwilioWebhook(senders, public, sink, clock=lambda: NOW)
    app = web.Application()
    app.add_routes(webhook.routes())
    async with TestServer(app, port=port):
        url = public + path
        # Twilio's helper library signs the form exactly as Twilio does.
        params = dict(parse_qsl(body.decode(), keep_blank_values=True))
        signed = RequestValidator(TOKEN).compute_signature(url, params)
        headers = {
            "X-Twilio-Signature": signed,
            "Content-Type": "application/x-www-form-urlencoded; charset=UTF-8",
        }
        async with http.post(url, data=body, headers=headers) as resp:
            assert resp.status == 200
            answer = await resp.text()
    if path == WEBHOOK_PATH:
        assert answer == EMPTY_TWIML
        [event] = sink.events
        assert event.external_id == params["MessageSid"]
    else:
        assert len(sink.events) == (0 if STATUSES[name][0] is None else 1)
