"""Sending to a contact through the API goes the way an agent's reply goes: to the customer
once, shown in the contact's Slack thread under the key's name; an Idempotency-Key makes a
retry (also after a restart) give the first answer without sending again; WhatsApp's 24-hour
window, the blacklist and an opt-out refuse the send with a clear 422 and store nothing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bridge.types import ContactId
from tests.api_kit import Api, make_key
from tests.commands_kit import MANAGER, command, services_of, thread_ref
from tests.fakes.whatsapp import FakeWhatsApp
from tests.harness import eventually
from tests.world import start_world, stop_world

ANNA = 5250001
WA_ID = "4915112345678"


@pytest.fixture
async def api(world):
    assert (await command(world, f"user role {MANAGER} manager")).ok
    return Api(world)


async def anna(world) -> int:
    """Anna writes on Telegram and has a thread; her contact id."""
    await world.says(ANNA, "Hello", first_name="Anna", last_name="Schmidt")
    await world.thread_of(ANNA)
    [(contact_id,)] = await world.sql(f"select id from contacts where chat_id = '{ANNA}'")
    return int(contact_id)


def posts_of(world, root, text: str) -> list:
    return [m for m in world.replies(root) if m.text == text]


async def test_a_text_reaches_the_customer_once_and_shows_in_the_thread(world, api):
    key = await make_key(world, "crm")
    contact_id = await anna(world)
    root = await world.thread_of(ANNA)
    answer = await api.post(
        f"/contacts/{contact_id}/messages", key=key, body={"text": "Your order has shipped."}
    )
    assert answer.status == 202
    sent = answer.body
    assert sent["status"] == "queued" and sent["direction"] == "out"
    assert sent["author"] == "crm" and sent["contact_id"] == contact_id
    await eventually(lambda: world.tg.messages_to(ANNA), message="the Telegram message")
    assert [m.text for m in world.tg.messages_to(ANNA)] == ["Your order has shipped."]
    [post] = await eventually(
        lambda: posts_of(world, root, "Your order has shipped."), message="the thread's copy"
    )
    assert "crm" in (post.username or "")

    async def status() -> str | None:
        shown = await api.get(f"/messages/{sent['id']}", key=key)
        return shown.body["status"] if shown.body["status"] == "sent" else None

    assert await eventually(status, message="the sent status") == "sent"
    assert world.tg.messages_to(ANNA)[1:] == []


async def test_the_same_idempotency_key_answers_again_without_sending(world, api):
    key = await make_key(world, "crm")
    contact_id = await anna(world)
    path = f"/contacts/{contact_id}/messages"
    body = {"text": "Your invoice is ready."}
    headers = {"Idempotency-Key": "order-4711-invoice"}
    first = await api.post(path, key=key, body=body, headers=headers)
    again = await api.post(path, key=key, body=body, headers=headers)
    assert first.status == again.status == 202
    assert again.body == first.body
    assert again.headers.get("Idempotent-Replayed") == "true"
    await eventually(lambda: world.tg.messages_to(ANNA), message="the message")
    other = await api.post(path, key=key, body={"text": "Something else"}, headers=headers)
    assert other.status == 422 and other.error["code"] == "idempotency_key_reused"
    assert other.error["field"] == "Idempotency-Key"
    fresh = await api.post(path, key=key, body=body, headers={"Idempotency-Key": "another"})
    assert fresh.status == 202 and fresh.body["id"] != first.body["id"]
    await eventually(lambda: len(world.tg.messages_to(ANNA)) == 2, message="the second send")
    assert [m.text for m in world.tg.messages_to(ANNA)] == ["Your invoice is ready."] * 2
    bad = await api.post(path, key=key, body=body, headers={"Idempotency-Key": "has space"})
    assert bad.status == 400 and bad.error["field"] == "Idempotency-Key"


async def test_a_retry_after_a_restart_gets_the_first_answer(tmp_path):
    world = await start_world(tmp_path)
    try:
        api = Api(world)
        key = await make_key(world, "crm")
        contact_id = await anna(world)
        path = f"/contacts/{contact_id}/messages"
        body, headers = {"text": "See you tomorrow."}, {"Idempotency-Key": "visit-2026-12-02"}
        first = await api.post(path, key=key, body=body, headers=headers)
        assert first.status == 202
        await eventually(lambda: world.tg.messages_to(ANNA), message="the message")
    finally:
        await stop_world(world)
    world = await start_world(tmp_path)
    try:
        again = await Api(world).post(path, key=key, body=body, headers=headers)
        assert again.status == 202 and again.body == first.body
        assert world.tg.messages_to(ANNA) == []
        assert await world.sql("select count(*) from messages where direction = 'out'") == [(1,)]
    finally:
        await stop_world(world)


async def test_a_contact_without_an_open_conversation_gets_a_new_thread(world, api):
    key = await make_key(world, "crm")
    contact_id = await anna(world)
    old = await world.thread_of(ANNA)
    closed = await command(world, "close", thread=thread_ref(old), ref="C0001/1700000000.000900")
    assert closed.ok, closed.text
    answer = await api.post(
        f"/contacts/{contact_id}/messages", key=key, body={"text": "We have news for you."}
    )
    assert answer.status == 202
    new = await eventually(
        lambda: (r := world.root_for(ANNA)) is not None and r.ts != old.ts and r,
        message="a new thread",
    )
    await eventually(lambda: posts_of(world, new, "We have news for you."), message="the post")
    await eventually(lambda: world.tg.messages_to(ANNA), message="the message")
    conversations = await world.sql(
        f"select id, status, previous_id from conversations where contact_id = {contact_id}"
        " order by id"
    )
    assert [c[1] for c in conversations] == ["closed", "open"]
    assert conversations[1][2] == conversations[0][0]
    assert answer.body["conversation_id"] == conversations[1][0]


async def test_blacklisted_or_opted_out_contacts_are_refused(world, api):
    key = await make_key(world, "crm")
    contact_id = await anna(world)
    path = f"/contacts/{contact_id}/messages"
    assert (await command(world, f"blacklist add #{contact_id} out spam", user=MANAGER)).ok
    refused = await api.post(path, key=key, body={"text": "Hello?"})
    assert refused.status == 422 and refused.error["code"] == "blacklisted"
    assert "blacklisted" in refused.error["message"]
    assert (await command(world, f"blacklist remove #{contact_id}", user=MANAGER)).ok
    now = datetime.now(UTC)
    await services_of(world).write(lambda tx: tx.set_opt_out(ContactId(contact_id), now, "test"))
    opted_out = await api.post(path, key=key, body={"text": "Hello?"})
    assert opted_out.status == 422 and opted_out.error["code"] == "opted_out"
    assert await world.sql("select count(*) from messages where direction = 'out'") == [(0,)]
    assert world.tg.messages_to(ANNA) == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "body"),
        ({"text": "hi", "template": {"name": "order_update"}}, "body"),
        ({"text": ""}, "text"),
        ({"text": "x" * 4097}, "text"),
        ({"text": "hi", "silent": True}, "silent"),
        ({"template": {"name": "Not A Name"}}, "template.name"),
    ],
)
async def test_bad_bodies_name_the_field(world, api, body, field):
    key = await make_key(world, "crm")
    contact_id = await anna(world)
    answer = await api.post(f"/contacts/{contact_id}/messages", key=key, body=body)
    assert answer.status == 422, answer.body
    assert answer.error["field"] == field
    assert await world.sql("select count(*) from messages where direction = 'out'") == [(0,)]


async def test_unknown_contact_and_templates_on_telegram(world, api):
    key = await make_key(world, "crm")
    contact_id = await anna(world)
    missing = await api.post("/contacts/999999/messages", key=key, body={"text": "hi"})
    assert missing.status == 404
    template = {"template": {"name": "order_update", "params": ["Anna", "A-1"]}}
    refused = await api.post(f"/contacts/{contact_id}/messages", key=key, body=template)
    assert refused.status == 422 and "WhatsApp feature" in refused.error["message"]


class TestWhatsApp:
    @pytest.fixture
    async def world(self, tmp_path):
        w = await start_world(tmp_path, whatsapp=FakeWhatsApp())
        yield w
        await stop_world(w)

    async def test_outside_the_window_text_is_refused_with_the_template_hint(self, world):
        api = Api(world)
        key = await make_key(world, "crm")
        assert await world.wa.customer_wrote_ago(WA_ID, 30, name="Anna Schmidt") == 200
        await world.thread_of(WA_ID)
        [(contact_id,)] = await world.sql(f"select id from contacts where chat_id = '{WA_ID}'")
        path = f"/contacts/{contact_id}/messages"
        refused = await api.post(path, key=key, body={"text": "Sorry for the late answer!"})
        assert refused.status == 422
        assert refused.error["code"] == "window_closed"
        message = refused.error["message"]
        assert "24 hours" in message and '"template"' in message
        assert "order_update:en_US" in message and "welcome_back:en" in message
        assert world.wa.sent_to(WA_ID) == []
        assert await world.sql("select count(*) from messages where direction = 'out'") == [(0,)]
        template = {"template": {"name": "order_update", "params": ["Anna S.", "A-1234"]}}
        sent = await api.post(path, key=key, body=template, headers={"Idempotency-Key": "t-1"})
        assert sent.status == 202, sent.body
        assert (
            sent.body["text"].startswith("[template order_update")
            or "A-1234" in (sent.body["text"])
        )
        [out] = await eventually(lambda: world.wa.sent_to(WA_ID), message="the template")
        assert out["type"] == "template" and out["template"]["name"] == "order_update"
        params = [p["text"] for p in out["template"]["components"][0]["parameters"]]
        assert params == ["Anna S.", "A-1234"]
        wrong = {"template": {"name": "order_update", "params": ["only one"]}}
        too_few = await api.post(path, key=key, body=wrong)
        assert too_few.status == 422 and too_few.error["field"] == "template.params"
