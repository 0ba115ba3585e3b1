"""Outgoing webhooks carry a Standard Webhooks signature that the specification's own library
verifies, with the id the same on every try; the bridge's own signature still comes beside it."""

from __future__ import annotations

import base64

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from tests import test_outgoing_webhooks as outgoing
from tests.harness import eventually
from tests.test_outgoing_webhooks import ANN, subscribe, verify

# The receiver (a real HTTP server) and the bridge that reaches it, as the webhook tests have them.
receiver = outgoing.receiver
world = outgoing.world


def whsec(secret: str) -> str:
    """The README's mapping: the secret's bytes are the key, written as the specification does."""
    return "whsec_" + base64.b64encode(secret.encode()).decode()


async def test_a_stock_verifier_accepts_each_try_and_refuses_a_tampered_body(world, receiver):
    _, secret = await subscribe(world, receiver, "crm", "message.received")
    _, other_secret = await subscribe(world, receiver, "audit", "message.received")
    receiver.answer("crm", 503)
    await world.says(ANN, "Where is my parcel?")
    await eventually(lambda: receiver.accepted("crm"), timeout=20, message="the second try")
    await eventually(lambda: receiver.accepted("audit"), message="the other subscriber's event")
    tries = receiver.got("crm")
    assert [d.status for d in tries] == [503, 200]

    stock, from_bytes = Webhook(whsec(secret)), Webhook(secret.encode())
    for delivery in tries:
        assert stock.verify(delivery.body, delivery.headers) == delivery.event
        assert from_bytes.verify(delivery.body, delivery.headers) == delivery.event
        assert delivery.headers["webhook-signature"].startswith("v1,")
        assert delivery.headers["webhook-timestamp"] == delivery.headers["X-Bridge-Timestamp"]
        # The bridge's own signature is still there, for one more release.
        assert verify(secret, delivery.headers, delivery.body)

    # One delivery keeps its id over its tries; another subscriber's delivery has its own.
    [message_id] = {d.headers["webhook-id"] for d in tries}
    [audit] = receiver.got("audit")
    assert audit.headers["webhook-id"] != message_id
    assert "." not in message_id
    Webhook(whsec(other_secret)).verify(audit.body, audit.headers)

    delivery = tries[-1]
    tampered = delivery.body.replace(b"parcel", b"parsel")
    with pytest.raises(WebhookVerificationError):
        stock.verify(tampered, delivery.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(whsec(other_secret)).verify(delivery.body, delivery.headers)
    with pytest.raises(WebhookVerificationError):
        stock.verify(delivery.body, {**delivery.headers, "webhook-id": audit.headers["webhook-id"]})
