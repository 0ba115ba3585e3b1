"""Outgoing webhooks: a CRM subscribes a URL to events; each event is POSTed once, signed with
HMAC-SHA256, in order per subscriber, through the outbox (retries, restarts included)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy import text

from bridge.app import WRITER
from bridge.errors import PermanentError, RateLimited, TransientError, Unreachable
from bridge.handlers.webhooks import WebhookDelivery
from bridge.security import AllowList, OutboundGuard
from bridge.webhooks import retry_after
from storage import Job, Tx
from storage import webhooks_store as store
from tests.broadcast_kit import new, subscribers
from tests.commands_kit import AGENT, MANAGER, command
from tests.fakes.twilio import FakeTwilio
from tests.fakes.whatsapp import FakeWhatsApp
from tests.harness import eventually, start_bridge
from tests.world import free_port, start_world, stop_world

ANN = 4711
WA_ID = "4915112345678"


# -- the receiver: a real HTTP server, as a CRM would run one ------------------------------------


@dataclass
class Delivery:
    """One POST the receiver got, with the status it answered."""

    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    at: float

    @property
    def event(self) -> dict[str, Any]:
        return json.loads(self.body)


@dataclass
class Receiver:
    """Records every POST to /<name>; answers each name from a script of statuses, then 200."""

    url: str = ""
    deliveries: list[Delivery] = field(default_factory=list)
    scripts: dict[str, list[int | tuple[int, dict[str, str]]]] = field(default_factory=dict)
    always: dict[str, int] = field(default_factory=dict)
    jitter: float = 0.0
    in_flight: dict[str, int] = field(default_factory=dict)
    most_in_flight: dict[str, int] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    _runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{name}", self._hook)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        self.url = f"http://127.0.0.1:{self.port}"

    @property
    def allow(self) -> str:
        """Its entry in `[security] allow_private`: this loopback port only."""
        return f"127.0.0.1:{self.port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def answer(self, name: str, *statuses: int | tuple[int, dict[str, str]]) -> None:
        self.scripts.setdefault(name, []).extend(statuses)

    def got(self, name: str, kind: str | None = None) -> list[Delivery]:
        """Every POST to a name (of one event type), oldest first."""
        return [
            d
            for d in self.deliveries
            if d.path == name and (kind is None or d.headers.get("X-Bridge-Event") == kind)
        ]

    def accepted(self, name: str, kind: str | None = None) -> list[dict[str, Any]]:
        """The events a name accepted (answered 2xx), oldest first."""
        return [d.event for d in self.got(name, kind) if 200 <= d.status < 300]

    async def _hook(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        self.in_flight[name] = self.in_flight.get(name, 0) + 1
        self.most_in_flight[name] = max(self.most_in_flight.get(name, 0), self.in_flight[name])
        try:
            body = await request.read()
            if self.jitter:
                await asyncio.sleep(random.uniform(0, self.jitter))
            script = self.scripts.get(name)
            answer = script.pop(0) if script else self.always.get(name, 200)
            status, headers = answer if isinstance(answer, tuple) else (answer, {})
            self.deliveries.append(
                Delivery(name, dict(request.headers), body, status, time.monotonic())
            )
            return web.Response(status=status, headers=headers, text="ok")
        finally:
            self.in_flight[name] -= 1


def verify(secret: str, headers: dict[str, str], body: bytes, tolerance: int = 300) -> bool:
    """The README's check: the HMAC of "<timestamp>.<body>", and a timestamp that is recent."""
    timestamp = headers["X-Bridge-Timestamp"]
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    expected = "sha256=" + mac.hexdigest()
    fresh = abs(time.time() - int(timestamp)) <= tolerance
    return fresh and hmac.compare_digest(expected, headers["X-Bridge-Signature"])


@pytest.fixture
async def receiver():
    r = Receiver()
    await r.start()
    yield r
    await r.stop()


@pytest.fixture
async def world(tmp_path, receiver):
    w = await start_world(tmp_path, whatsapp=FakeWhatsApp(), sections=allowing(receiver))
    yield w
    await stop_world(w)


def allowing(*receivers: Receiver) -> dict[str, Any]:
    """Settings that let the bridge reach these receivers (on loopback) and nothing else."""
    return {"security": {"allow_private": [r.allow for r in receivers]}}


async def subscribe(world, receiver: Receiver, name: str, events: str) -> tuple[int, str]:
    """`/webhook add` for the receiver's /<name>; the webhook's id and its secret."""
    reply = await command(world, f"webhook add {receiver.url}/{name} {events}")
    assert reply.ok, reply.text
    [(label, value)] = reply.fields
    assert label == "Signing secret"
    return int(reply.title.split()[1]), value.strip("`")


async def outbox_states(world, webhook_id: int) -> list[tuple[str, int, str | None]]:
    return [
        (state, attempts, error)
        for state, attempts, error in await world.sql(
            "select state, attempts, last_error from outbox"
            f" where lane = 'wh:{webhook_id}' order by id"
        )
    ]


# -- message.received ------------------------------------------------------------------------------


async def test_a_customer_message_is_posted_once_with_a_valid_signature(world, receiver):
    webhook_id, secret = await subscribe(world, receiver, "crm", "message.received")
    update = await world.says(ANN, "Where is my parcel?", first_name="Anna", last_name="Schmidt")
    [event] = await eventually(lambda: receiver.accepted("crm"), message="the event")
    [delivery] = receiver.got("crm")
    headers = delivery.headers
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Bridge-Event"] == "message.received"
    assert headers["X-Bridge-Delivery"] == event["id"]
    assert headers["X-Bridge-Signature"].startswith("sha256=")
    assert verify(secret, headers, delivery.body)
    assert not verify("another secret", headers, delivery.body)
    assert not verify(secret, headers, delivery.body.replace(b"parcel", b"parsel"))

    [(message_id, conversation_id, contact_id)] = await world.sql(
        "select m.id, m.conversation_id, v.contact_id from messages m"
        " join conversations v on v.id = m.conversation_id where m.direction = 'in'"
    )
    assert event["id"] == f"message.received:{message_id}"
    assert event["type"] == "message.received"
    assert datetime.fromisoformat(event["created_at"]).tzinfo is not None
    data = event["data"]
    assert data == {
        "message_id": message_id,
        "conversation_id": conversation_id,
        "contact_id": contact_id,
        "platform": "telegram",
        "account": data["account"],
        "chat_id": str(ANN),
        "external_id": data["external_id"],
        "author": "Anna Schmidt",
        "username": data["username"],
        "text": "Where is my parcel?",
        "attachments": [],
        "sent_at": data["sent_at"],
    }
    assert data["sent_at"].endswith("Z")

    # Telegram delivers the same update again: the message is stored once, the event posted once.
    await world.customer(update)
    await world.says(ANN, "Hello?")
    await eventually(lambda: len(receiver.accepted("crm")) == 2, message="the second message")
    await asyncio.sleep(0.5)
    texts = [e["data"]["text"] for e in receiver.accepted("crm")]
    assert texts == ["Where is my parcel?", "Hello?"]
    assert len(receiver.got("crm")) == 2
    assert [s for s, _, _ in await outbox_states(world, webhook_id)] == ["done", "done"]


async def test_each_subscriber_gets_its_events_in_order_one_at_a_time(world, receiver):
    await subscribe(world, receiver, "first", "message.received")
    await subscribe(world, receiver, "second", "all")
    receiver.jitter = 0.05  # the receivers answer at uneven speeds
    texts = [f"message {n}" for n in range(12)]
    for n, said in enumerate(texts):
        await world.says(ANN + n % 3, said)
    for name in ("first", "second"):
        await eventually(
            lambda name=name: len(receiver.accepted(name, "message.received")) == len(texts),
            timeout=20,
            message=f"every message at {name}",
        )
        got = [e["data"]["text"] for e in receiver.accepted(name, "message.received")]
        assert got == texts
        ids = [e["data"]["message_id"] for e in receiver.accepted(name, "message.received")]
        assert ids == sorted(ids)
        assert receiver.most_in_flight[name] == 1
    # "all" also got each new contact's opt-in, ahead of that contact's first message.
    kinds = [(e["type"], e["data"]["contact_id"]) for e in receiver.accepted("second")]
    for contact in {c for _, c in kinds}:
        mine = [k for k, c in kinds if c == contact]
        assert mine[0] == "contact.opted_in" and mine.count("contact.opted_in") == 1


# -- failures: retried, or failed for good ---------------------------------------------------------


async def test_a_receiver_that_fails_twice_gets_the_event_on_the_third_try(world, receiver):
    webhook_id, secret = await subscribe(world, receiver, "flaky", "message.received")
    receiver.answer("flaky", 500, 503)
    await world.says(ANN, "Are you there?")
    [event] = await eventually(
        lambda: receiver.accepted("flaky"), timeout=20, message="the third try"
    )
    tries = receiver.got("flaky")
    assert [d.status for d in tries] == [500, 503, 200]
    # The same event each time, signed again with the time of each try.
    assert {d.headers["X-Bridge-Delivery"] for d in tries} == {event["id"]}
    assert all(verify(secret, d.headers, d.body) for d in tries)
    assert tries[1].at - tries[0].at >= 0.7  # backoff between the tries
    await asyncio.sleep(1.0)
    assert len(receiver.got("flaky")) == 3
    [(state, attempts, _)] = await outbox_states(world, webhook_id)
    assert (state, attempts) == ("done", 3)


async def test_a_429_waits_for_retry_after(world, receiver):
    await subscribe(world, receiver, "busy", "message.received")
    receiver.answer("busy", (429, {"Retry-After": "1"}))
    await world.says(ANN, "Hi")
    await eventually(lambda: receiver.accepted("busy"), timeout=10, message="after the wait")
    first, second = receiver.got("busy")
    assert first.status == 429 and second.status == 200
    assert second.at - first.at >= 0.9


@pytest.mark.parametrize("status", [410, 400])
async def test_a_refusal_fails_the_delivery_and_the_next_event_goes_on(world, receiver, status):
    webhook_id, _ = await subscribe(world, receiver, "strict", "message.received")
    receiver.answer("strict", status)
    await world.says(ANN, "first")
    await eventually(lambda: receiver.got("strict"), message="the first try")
    await world.says(ANN, "second")
    [accepted] = await eventually(lambda: receiver.accepted("strict"), message="the next event")
    assert accepted["data"]["text"] == "second"
    await asyncio.sleep(1.5)
    assert [d.status for d in receiver.got("strict")] == [status, 200]  # never tried again
    [(state, attempts, error), (state2, _, _)] = await outbox_states(world, webhook_id)
    assert (state, attempts, state2) == ("failed", 1, "done")
    assert f"answered HTTP {status}" in error
    assert receiver.url not in error  # the URL may carry a token: it stays out of the record


# -- the other event types -------------------------------------------------------------------------


async def test_opt_in_stop_and_start_are_contact_events(world, receiver):
    assert (await command(world, "channel create news --join JOIN-NEWS --leave LEAVE-NEWS")).ok
    [(channel_id,)] = await world.sql("select id from channels")
    await subscribe(world, receiver, "consent", "contact.opted_in,contact.opted_out")
    await world.says(ANN, "JOIN-NEWS", first_name="Anna")
    await eventually(lambda: receiver.accepted("consent"), message="the opt-in")
    await eventually(lambda: world.tg.messages_to(ANN), message="the join confirmation")
    await world.says(ANN, "STOP")
    await eventually(lambda: len(receiver.accepted("consent")) == 2, message="the opt-out")
    await world.says(ANN, "STOP")  # again: nothing changes, no event
    await world.says(ANN, "START")
    await eventually(lambda: len(receiver.accepted("consent")) == 3, message="the opt-in again")
    await asyncio.sleep(0.5)
    joined, stopped, back = receiver.accepted("consent")
    [(contact_id,)] = await world.sql("select id from contacts")
    assert joined["type"] == "contact.opted_in"
    assert joined["id"] == f"contact.opted_in:{contact_id}:new"
    assert joined["data"] == {
        "contact_id": contact_id,
        "platform": "telegram",
        "account": joined["data"]["account"],
        "chat_id": str(ANN),
        "display_name": "Anna",
        "username": joined["data"]["username"],
        "scope": "contact",
        "source": "keyword: JOIN-NEWS",
        "channels": [],
    }
    assert stopped["type"] == "contact.opted_out"
    assert stopped["data"]["scope"] == "channels"
    assert stopped["data"]["channels"] == [channel_id]
    assert stopped["data"]["source"] == "replied STOP"
    assert back["type"] == "contact.opted_in"
    assert (back["data"]["scope"], back["data"]["channels"]) == ("channels", [channel_id])
    assert len(receiver.got("consent")) == 3


async def test_agent_replies_report_their_delivery_statuses(world, receiver):
    await subscribe(world, receiver, "status", "message.status")
    await world.wa.customer_says(WA_ID, "Hi", name="Wanda")
    root = await world.thread_of(WA_ID)
    await world.slack.agent_says(root.channel, root.ts, "Hello Wanda!")
    await eventually(lambda: world.wa.sent_to(WA_ID), message="the send")
    wamid = world.wa.sent_to(WA_ID)[0]["_id"]
    await eventually(lambda: receiver.accepted("status"), message="sent")
    assert await world.wa.status(wamid, "delivered") == 200
    assert await world.wa.status(wamid, "delivered") == 200  # WhatsApp repeats itself
    assert await world.wa.status(wamid, "read") == 200
    await eventually(lambda: len(receiver.accepted("status")) == 3, message="delivered and read")
    assert await world.wa.status(wamid, "delivered") == 200  # late: the status stays read
    await asyncio.sleep(0.5)
    events = receiver.accepted("status")
    assert [e["data"]["status"] for e in events] == ["sent", "delivered", "read"]
    [(message_id, conversation_id, contact_id)] = await world.sql(
        "select m.id, m.conversation_id, v.contact_id from messages m"
        " join conversations v on v.id = m.conversation_id where m.direction = 'out'"
    )
    assert events[1]["id"] == f"message.status:{message_id}:delivered"
    assert events[1]["data"] == {
        "message_id": message_id,
        "conversation_id": conversation_id,
        "contact_id": contact_id,
        "platform": "whatsapp",
        "account": events[1]["data"]["account"],
        "external_id": wamid,
        "status": "delivered",
        "code": None,
        "reason": None,
    }
    assert len(receiver.got("status")) == 3


async def test_a_failed_reply_reports_the_failure_with_its_reason(world, receiver):
    await subscribe(world, receiver, "status", "message.status")
    await world.says(ANN, "Hi")
    root = await world.thread_of(ANN)
    world.tg.block(ANN)  # the customer blocked the bot
    await world.slack.agent_says(root.channel, root.ts, "Hello?")
    [event] = await eventually(lambda: receiver.accepted("status"), message="the failure")
    assert event["data"]["status"] == "failed"
    assert event["data"]["code"] and event["data"]["reason"]


async def test_a_finished_broadcast_reports_its_figures(world, receiver):
    assert (await command(world, f"user role {MANAGER} manager")).ok
    assert (await command(world, "channel create news --join JOIN-NEWS --leave LEAVE-NEWS")).ok
    await subscribe(world, receiver, "bc", "broadcast.finished")
    chats = await subscribers(world, 3)
    number = await new(world, 'news "Sale for you, {FIRSTNAME}!"')
    assert (await command(world, f"broadcast confirm {number}", user=MANAGER)).ok
    [event] = await eventually(
        lambda: receiver.accepted("bc"), timeout=20, message="broadcast.finished"
    )
    assert event["id"] == f"broadcast.finished:{number}"
    data = event["data"]
    assert data["broadcast_id"] == number
    assert data["state"] == "done"
    assert data["queued"] == len(chats)
    assert data["counts"]["sent"] == len(chats)
    assert data["counts"]["failed"] == 0
    assert data["platforms"] == {"telegram": {"sent": len(chats)}}
    assert data["created_by"] == MANAGER
    assert data["finished_at"].endswith("Z") and data["started_at"]
    await asyncio.sleep(PROGRESS_SETTLE)
    assert len(receiver.got("bc")) == 1


PROGRESS_SETTLE = 3.5  # longer than a progress step: a later step makes no second event


async def test_an_sms_stop_is_one_opt_out_of_the_whole_contact(tmp_path, receiver):
    world = await start_world(tmp_path, sms=FakeTwilio(), sections=allowing(receiver))
    try:
        number = "+14155550123"
        assert (await command(world, "channel create news --join JOIN-NEWS")).ok
        await subscribe(world, receiver, "sms", "contact.opted_out,contact.opted_in,message.status")
        await world.sms.customer_texts(number, "JOIN-NEWS")
        root = await world.thread_of(number)
        await world.sms.customer_texts(number, "STOP")  # the carrier's word and the bridge's
        await eventually(
            lambda: receiver.accepted("sms", "contact.opted_out"), message="the opt-out"
        )
        await world.slack.agent_says(root.channel, root.ts, "Sorry to see you go")
        # The join confirmation the bridge sent by itself was reported too; the reply failed.
        [refused] = await eventually(
            lambda: [
                e
                for e in receiver.accepted("sms", "message.status")
                if e["data"]["status"] == "failed"
            ],
            message="the refusal",
        )
        assert receiver.accepted("sms", "message.status")[0]["data"]["status"] == "sent"
        assert (refused["data"]["status"], refused["data"]["code"]) == ("failed", "refused")
        await world.sms.customer_texts(number, "START")
        await eventually(
            lambda: len(receiver.accepted("sms", "contact.opted_in")) == 2, message="back in"
        )
        await asyncio.sleep(0.5)
        [stopped] = receiver.accepted("sms", "contact.opted_out")
        assert stopped["data"]["scope"] == "contact"
        assert stopped["data"]["source"] == "replied STOP"
        joined, back = receiver.accepted("sms", "contact.opted_in")
        assert joined["data"]["source"] == "keyword: JOIN-NEWS"
        assert back["data"]["scope"] == "contact"
        assert back["id"] != joined["id"]
    finally:
        await stop_world(world)


# -- subscriptions ---------------------------------------------------------------------------------


async def test_subscriptions_get_only_the_events_they_asked_for(world, receiver):
    messages_id, _ = await subscribe(world, receiver, "messages", "message.received")
    await subscribe(world, receiver, "optins", "contact.opted_in")
    await world.says(ANN, "Hello")
    await eventually(lambda: receiver.accepted("messages"), message="message.received")
    await eventually(lambda: receiver.accepted("optins"), message="contact.opted_in")
    await asyncio.sleep(0.5)
    assert [e["type"] for e in receiver.accepted("messages")] == ["message.received"]
    assert [e["type"] for e in receiver.accepted("optins")] == ["contact.opted_in"]

    listed = await command(world, "webhook list")
    assert listed.ok and listed.title == "2 webhooks"
    assert any("message.received" in line and "/messages" in line for line in listed.lines)
    removed = await command(world, f"webhook remove {messages_id}")
    assert removed.ok, removed.text
    await world.says(ANN, "Still there?")
    await world.says(ANN + 1, "Hi")  # a new contact: the other webhook still gets its opt-in
    await eventually(lambda: len(receiver.accepted("optins")) == 2, message="the second opt-in")
    await asyncio.sleep(0.5)
    assert len(receiver.got("messages")) == 1
    assert (await command(world, "webhook list")).title == "1 webhook"
    again = await command(world, f"webhook remove {messages_id}")
    assert not again.ok


async def test_a_ping_goes_to_the_webhook_named_whatever_it_subscribed_to(world, receiver):
    webhook_id, secret = await subscribe(world, receiver, "ping", "broadcast.finished")
    reply = await command(world, f"webhook test {webhook_id}", user_name="Ada")
    assert reply.ok, reply.text
    [event] = await eventually(lambda: receiver.accepted("ping"), message="the ping")
    [delivery] = receiver.got("ping")
    assert delivery.headers["X-Bridge-Event"] == "ping"
    assert verify(secret, delivery.headers, delivery.body)
    assert event["type"] == "ping"
    assert event["data"] == {"webhook_id": webhook_id, "requested_by": "Ada"}
    assert not (await command(world, "webhook test 999")).ok


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("webhook add ftp://crm.example.com/in all", "must start with https://"),
        ("webhook add javascript:alert(1) all", "must start with https://"),
        ("webhook add file:///etc/passwd all", "must start with https://"),
        ("webhook add crm.example.com/in all", "must start with https://"),
        ("webhook add https:///in all", "names no host"),
        ("webhook add https://crm.example.com/in message.sent", "unknown event message.sent"),
        ("webhook add https://crm.example.com/in", "missing arguments"),
    ],
)
async def test_urls_that_are_not_http_and_unknown_events_are_refused(world, line, problem):
    reply = await command(world, line)
    assert not reply.ok
    assert problem in reply.title.lower() or problem in reply.text, reply.text
    assert any(line.startswith("Usage: `/webhook add") for line in reply.lines)
    assert await world.sql("select count(*) from webhooks") == [(0,)]


async def test_only_admins_manage_webhooks_and_the_secret_is_never_shown_in_matrix(world, receiver):
    assert (await command(world, f"user role {MANAGER} manager")).ok
    webhook_id, secret = await subscribe(world, receiver, "crm", "all")
    for user in (MANAGER, AGENT):
        for line in (
            f"webhook add {receiver.url}/other all",
            "webhook list",
            f"webhook test {webhook_id}",
            f"webhook remove {webhook_id}",
        ):
            reply = await command(world, line, user=user)
            assert not reply.ok
            assert "needs the admin role" in reply.title, reply.text
    listed = await command(world, "webhook list")
    assert secret not in listed.text
    matrix = await command(
        world, f"webhook add {receiver.url}/m all", surface="matrix", channel="!room:hs"
    )
    assert not matrix.ok and "direct room with the bot" in matrix.text
    assert await world.sql("select count(*) from webhooks") == [(1,)]
    help_reply = await command(world, "webhook help")
    assert "/webhook add <url> <event,...|all>" in help_reply.text
    bridge_help = await command(world, "bridge help")
    assert any(line.startswith("`/webhook`") for line in bridge_help.lines)


async def test_a_query_string_stays_out_of_what_staff_see(world, receiver):
    reply = await command(world, f"webhook add {receiver.url}/crm?token=s3cr3t message.received")
    assert reply.ok, reply.text
    assert "s3cr3t" not in reply.title
    listed = await command(world, "webhook list")
    assert "s3cr3t" not in listed.text and "/crm?…" in listed.text
    await world.says(ANN, "Hi")
    await eventually(lambda: receiver.accepted("crm"), message="delivered to the full URL")


# -- durability ------------------------------------------------------------------------------------


async def test_a_delivery_queued_before_a_restart_is_made_after_it(world, receiver):
    webhook_id, secret = await subscribe(world, receiver, "later", "message.received")
    receiver.always["later"] = 503  # the CRM is down for maintenance
    await world.says(ANN, "Anyone?")
    await eventually(lambda: receiver.got("later"), message="a first try")
    settings, url = world.bridge.settings, world.bridge.url
    await world.bridge.stop()
    receiver.always["later"] = 200  # back up while the bridge is stopped
    tried = len(receiver.got("later"))
    world.bridge = await start_bridge(settings, port=int(url.rsplit(":", 1)[1]))
    [event] = await eventually(
        lambda: receiver.accepted("later"), timeout=20, message="the delivery after the restart"
    )
    assert event["data"]["text"] == "Anyone?"
    assert verify(secret, receiver.got("later")[-1].headers, receiver.got("later")[-1].body)
    await asyncio.sleep(1.0)
    assert len(receiver.got("later")) == tried + 1
    assert [s for s, _, _ in await outbox_states(world, webhook_id)] == ["done"]


async def test_erasing_a_contact_drops_their_undelivered_events(world, receiver):
    webhook_id, _ = await subscribe(world, receiver, "down", "message.received")
    receiver.always["down"] = 503
    await world.says(ANN, "Please forget me")
    await eventually(lambda: receiver.got("down"), message="a first try")
    reply = await command(world, f"contact forget {ANN} --confirm")
    assert reply.ok, reply.text
    receiver.always["down"] = 200
    await asyncio.sleep(4.0)  # longer than the backoff after two tries
    assert receiver.accepted("down") == []
    rows = await world.sql(f"select payload from outbox where lane = 'wh:{webhook_id}'")
    assert all("Please forget me" not in str(payload) for (payload,) in rows)


# -- the handler and the store on their own --------------------------------------------------------


def _job(webhook_id: int, event: store.WebhookEvent) -> Job:
    new_job = store.deliver_job(webhook_id, event)
    return Job(
        id=1,
        kind=new_job.kind,
        idem_key=new_job.idem_key,
        lane=new_job.lane,
        rate_keys=new_job.rate_keys,
        payload=new_job.payload,
        attempts=0,
        next_at=0.0,
        created_at=time.time(),
    )


async def test_the_handler_maps_each_answer_to_the_outbox_errors(world, receiver):
    webhook_id, _ = await subscribe(world, receiver, "unit", "all")
    event = store.ping_event(webhook_id, by="test", at=datetime.now(UTC))
    slow, closed = Receiver(), free_port()
    guard = OutboundGuard(AllowList.parse([receiver.allow, slow.allow, f"127.0.0.1:{closed}"]))
    try:
        handler = WebhookDelivery(guard, world.bridge.db, timeout=0.5, clock=time.time)
        for status, error in [
            ((429, {"Retry-After": "7"}), RateLimited),
            (503, TransientError),
            (408, TransientError),
            (301, PermanentError),
            (404, PermanentError),
        ]:
            receiver.answer("unit", status)
            with pytest.raises(error) as raised:
                await handler.run([_job(webhook_id, event)])
            if isinstance(raised.value, RateLimited):
                assert raised.value.retry_after == 7
        receiver.answer("unit", 204)
        assert (await handler.run([_job(webhook_id, event)])).failed_reason is None

        receiver.jitter = 0.0
        await slow.start()
        try:
            slow.jitter = 2.0
            slow.answer("x", 200)
            # A receiver slower than the timeout: retried later.
            created = await world.bridge.app[WRITER].call(
                lambda tx: tx.webhooks.create(
                    f"{slow.url}/x", ["all"], by="t", at=datetime.now(UTC)
                )
            )
            timed = WebhookDelivery(guard, world.bridge.db, timeout=0.05)
            with pytest.raises(TransientError, match="did not answer within"):
                await timed.run([_job(created.id, event)])
        finally:
            await slow.stop()

        gone = await world.bridge.app[WRITER].call(
            lambda tx: tx.webhooks.create(
                f"http://127.0.0.1:{closed}/x", ["all"], by="t", at=datetime.now(UTC)
            )
        )
        with pytest.raises(Unreachable):
            await handler.run([_job(gone.id, event)])
        assert await world.bridge.app[WRITER].call(lambda tx: tx.webhooks.deactivate(gone.id))
        with pytest.raises(PermanentError, match="removed"):
            await handler.run([_job(gone.id, event)])
    finally:
        await guard.close()


def test_retry_after_reads_seconds_and_dates():
    now = time.time()
    assert retry_after("12", now) == 12
    assert retry_after(None, now) == 30
    assert retry_after("soon", now) == 30
    assert retry_after("0", now) == 1
    assert retry_after("999999", now) == 3600
    date = datetime.fromtimestamp(now + 60, UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert 55 <= retry_after(date, now) <= 61


async def test_the_store_on_each_database(database):
    at = datetime.now(UTC)

    def create(tx):
        first = tx.webhooks.create("https://crm.example.com/a", ["message.received"], by="a", at=at)
        second = tx.webhooks.create("http://crm.example.com/b", ["all"], by="b", at=at)
        return first, second

    first, second = await database.write_tx(create)
    assert first.secret != second.secret and len(first.secret) == 64
    assert first.secret not in repr(first)
    assert first.events == ("message.received",) and second.events == ("all",)
    cache = store.ActiveWebhooks()
    wanting = await database.read_tx(lambda tx: cache.wanting(tx.webhooks, "contact.opted_out"))
    assert [w.id for w in wanting] == [second.id]
    assert await database.read_tx(lambda tx: tx.webhooks.get(first.id)) == first

    event = store.WebhookEvent("message.received:1", "message.received", at, {"text": "x"}, 5)
    jobs = store.event_jobs(cache.load(None), event)  # cached: no connection needed
    assert [j.idem_key for j in jobs] == [
        f"wh:{first.id}:message.received:1",
        f"wh:{second.id}:message.received:1",
    ]
    assert jobs[0].lane == f"wh:{first.id}" and jobs[0].payload["contact"] == 5

    def enqueue_twice(conn):
        tx = Tx(conn)
        tx.enqueue(jobs, time.time())
        tx.enqueue(jobs, time.time())  # a repeated event is ignored
        return conn.execute(text("select count(*) from outbox")).scalar()

    assert await database.run_write(enqueue_twice) == 2
    waiting = await database.read_tx(lambda tx: tx.webhooks.waiting([first.id, second.id]))
    assert waiting == {first.id: 1, second.id: 1}

    long = store.WebhookEvent("x" * 400, "ping", at, {})
    assert len(store.deliver_job(first.id, long).idem_key) <= store.IDEM_KEY_MAX

    assert await database.write_tx(lambda tx: tx.webhooks.deactivate(first.id))
    assert not await database.write_tx(lambda tx: tx.webhooks.deactivate(first.id))
    cache.changed()
    assert [w.id for w in await database.read_tx(lambda tx: cache.load(tx.webhooks))] == [second.id]
    assert await database.write_tx(lambda tx: tx.webhooks.delete_webhook(second.id))
    assert await database.read_tx(lambda tx: tx.webhooks.all_webhooks(active_only=False)) == [
        store.WebhookRecord(
            first.id, first.url, first.events, first.secret, "a", first.created_at, False
        )
    ]
