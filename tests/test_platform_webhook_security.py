"""WhatsApp, Messenger and Twilio webhooks refuse unsigned, forged and malformed requests."""

from __future__ import annotations

import json

import pytest

from tests.fakes.messenger import FakeMessenger
from tests.fakes.twilio import FakeTwilio
from tests.fakes.whatsapp import FakeWhatsApp
from tests.world import start_world, stop_world

TABLES = ("contacts", "conversations", "messages", "outbox", "staff_refs", "kv")


@pytest.fixture
async def world(tmp_path):
    w = await start_world(
        tmp_path, whatsapp=FakeWhatsApp(), messenger=FakeMessenger(), sms=FakeTwilio()
    )
    yield w
    await stop_world(w)


async def counts(world):
    return {t: (await world.sql(f"select count(*) from {t}"))[0][0] for t in TABLES}


async def test_whatsapp_webhook_refuses_and_writes_nothing(world):
    before = await counts(world)
    payload = world.wa.build_payload(
        messages=[world.wa.text_message("491", "hi")], contacts=[world.wa.contact("491")]
    )
    assert await world.wa.deliver(payload, sign=False) == 401
    assert await world.wa.deliver(payload, secret="not-the-app-secret") == 403
    assert await world.wa.deliver(b"{broken") == 400
    assert await world.wa.deliver({"object": "whatsapp_business_account", "entry": 5}) == 400
    status, text = await world.wa.verify("subscribe", "wrong", "123")
    assert status == 403 and "123" not in text
    assert await counts(world) == before


async def test_verification_echoes_the_challenge_for_the_right_token(world):
    assert await world.wa.verify("subscribe", world.wa.verify_token, "1158201444") == (
        200,
        "1158201444",
    )
    assert await world.fb.verify("subscribe", world.fb.verify_token, "42") == (200, "42")


async def test_messenger_webhook_refuses_and_writes_nothing(world):
    before = await counts(world)
    body = world.fb.webhook_body(
        world.fb.page_ids[0],
        {
            "sender": {"id": "1"},
            "recipient": {"id": world.fb.page_ids[0]},
            "timestamp": 1,
            "message": {"mid": "m_1", "text": "x"},
        },
    )
    assert await world.fb.deliver(body, sign=False) == 401
    assert await world.fb.deliver(body, secret="forged") == 403
    assert await world.fb.deliver(json.dumps({"object": "page"}).encode() + b"}") == 400
    assert await counts(world) == before


async def test_twilio_webhook_refuses_and_writes_nothing(world):
    before = await counts(world)
    params = {"MessageSid": "SM" + "0" * 32, "From": "+14155550100", "To": world.sms.numbers[0]}
    params["Body"] = "hi"
    assert await world.sms.deliver(world.sms.webhook_url, params, sign=False) == 401
    assert (
        await world.sms.deliver(world.sms.webhook_url, params, token="other-auth-token-0123") == 403
    )
    del params["MessageSid"]
    assert await world.sms.deliver(world.sms.webhook_url, params) == 400
    assert await counts(world) == before
