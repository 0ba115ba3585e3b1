"""Broadcasts end to end: preview with exclusions, one private message per recipient with
placeholders filled, progress in the chat, cancel, unsubscribe during the run, WhatsApp's
template rule, scheduling across a restart, and replies marked in the thread."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest

from tests.broadcast_kit import new, newsletters, subscribers
from tests.commands_kit import MANAGER, command
from tests.fakes.whatsapp import FakeWhatsApp
from tests.forms_kit import open_form, submit
from tests.harness import eventually, start_bridge
from tests.world import start_world, stop_world


@pytest.fixture
async def rig(tmp_path):
    world = await start_world(tmp_path, whatsapp=FakeWhatsApp())
    assert (await command(world, f"user role {MANAGER} manager")).ok
    assert (await command(world, "channel create news --join JOIN-NEWS --leave LEAVE-NEWS")).ok
    yield world
    await stop_world(world)


async def test_preview_counts_the_audience_and_names_who_is_skipped(rig):
    world = rig
    chats = await subscribers(world, 3)
    await world.wa.customer_says("4915111111111", "JOIN-NEWS")
    [(blocked_id,)] = await world.sql(f"select id from contacts where chat_id = '{chats[0]}'")
    assert (await command(world, f"blacklist add #{blocked_id} out", user=MANAGER)).ok
    reply = await command(world, 'broadcast new news "Sale, {FIRSTNAME}!"', user=MANAGER)
    assert reply.title.endswith(": 2 recipients"), reply.text
    assert "*telegram*: to 2; skipped 1: blacklisted" in reply.lines
    assert any(
        line.startswith("*whatsapp*: to 0; skipped 1: WhatsApp allows newsletters only")
        for line in reply.lines
    )
    assert "It reads (for Anna Schmidt): Sale, Anna!" in reply.lines
    assert sum(len(newsletters(world, c)) for c in chats) == 0  # nothing before confirm


async def test_confirmed_broadcast_reaches_each_subscriber_once_with_progress(rig):
    world = rig
    chats = await subscribers(world, 12)
    number = await new(world, 'news "Sale for you, {FIRSTNAME}!"')
    confirmed = await command(world, f"broadcast confirm {number}", user=MANAGER)
    assert confirmed.ok, confirmed.text
    await eventually(
        lambda: all(newsletters(world, c) for c in chats), timeout=20, message="newsletters"
    )
    for chat in chats:
        assert newsletters(world, chat) == [f"Sale for you, Reader{chat % 1000}!"]

    def summary():
        posted = [m for m in world.slack.roots("C0001") if f"Broadcast #{number}" in m.text]
        return posted and "is done" in posted[-1].text and posted[-1]

    progress = await eventually(summary, timeout=20, message="the summary")
    assert "12 of 12 delivered to the platforms" in progress.text
    assert len([m for m in world.slack.roots("C0001") if f"#{number}" in m.text]) == 1
    again = await command(world, f"broadcast confirm {number}", user=MANAGER)
    assert not again.ok  # a repeated confirmation sends nothing
    await asyncio.sleep(0.5)
    assert all(len(newsletters(world, c)) == 1 for c in chats)


async def test_cancel_halfway_stops_what_is_not_sent(rig):
    world = rig
    chats = await subscribers(world, 20)
    world.tg.set_rate_limits(None, 4)  # the platform slows down: about 4 messages a second
    number = await new(world, 'news "Sale now"')
    assert (await command(world, f"broadcast confirm {number}", user=MANAGER)).ok
    await eventually(
        lambda: sum(len(newsletters(world, c)) for c in chats) >= 3, timeout=20, message="a few"
    )
    cancelled = await command(world, f"broadcast cancel {number}", user=MANAGER)
    assert cancelled.ok, cancelled.text
    await asyncio.sleep(2.0)
    sent = sum(len(newsletters(world, c)) for c in chats)
    assert 3 <= sent < 20
    await asyncio.sleep(2.0)
    assert sum(len(newsletters(world, c)) for c in chats) == sent
    status = await command(world, f"broadcast status {number}")
    assert "cancelled" in status.title


async def test_who_unsubscribes_during_the_run_gets_nothing(rig):
    world = rig
    chats = await subscribers(world, 15)
    leaver = chats[-1]
    world.tg.storm(3.0)  # Telegram answers 429 for a while: the broadcast waits, queued
    number = await new(world, 'news "Sale today"')
    assert (await command(world, f"broadcast confirm {number}", user=MANAGER)).ok
    await eventually(
        lambda: world.sql("select queued from broadcasts where queued = 15"),
        message="everyone queued",
    )
    await world.says(leaver, "LEAVE-NEWS", first_name="Leaver")
    await eventually(
        lambda: all(newsletters(world, c) for c in chats[:-1]), timeout=30, message="the rest"
    )
    await asyncio.sleep(1.0)
    assert newsletters(world, leaver) == []
    [(reason,)] = await world.sql("select reason from broadcast_sends where state = 'skipped'")
    assert reason == "left the channel"


async def test_whatsapp_newsletters_go_out_as_templates(rig):
    world = rig
    number_wa = "4915122222222"
    await world.wa.customer_says(number_wa, "JOIN-NEWS")
    await eventually(lambda: world.wa.sent_to(number_wa), message="the join confirmation")
    number = await new(
        world, "whatsapp --template order_update:en_US --param {FIRSTNAME} --param A-20"
    )
    assert (await command(world, f"broadcast confirm {number}", user=MANAGER)).ok

    def template_sent():
        return [m for m in world.wa.sent_to(number_wa) if m.get("type") == "template"]

    [sent] = await eventually(template_sent, timeout=20, message="the template")
    assert sent["template"]["name"] == "order_update"
    params = sent["template"]["components"][0]["parameters"]
    assert [p["text"] for p in params][1] == "A-20"


async def test_a_delivery_report_that_comes_before_the_send_is_answered_still_counts(rig):
    world = rig
    number_wa = "4915133333333"
    await world.wa.customer_says(number_wa, "JOIN-NEWS")
    await eventually(lambda: world.wa.sent_to(number_wa), message="the join confirmation")
    # WhatsApp's status webhooks may overtake the answer to the send itself.
    world.wa.report_before_answer = ["sent", "delivered"]
    number = await new(
        world, "whatsapp --template order_update:en_US --param {FIRSTNAME} --param A-21"
    )
    assert (await command(world, f"broadcast confirm {number}", user=MANAGER)).ok
    await eventually(
        lambda: world.sql(
            f"select 1 from broadcast_sends where broadcast_id = {number} and state = 'delivered'"
        ),
        timeout=20,
        message="the delivery counted",
    )
    assert await world.sql("select key from kv where key like 'early:%'") == []


async def test_a_reply_to_the_newsletter_is_marked_in_the_thread(rig):
    world = rig
    [chat] = await subscribers(world, 1)
    number = await new(world, 'news "Sale: reply YES to order"')
    assert (await command(world, f"broadcast confirm {number}", user=MANAGER)).ok
    await eventually(lambda: newsletters(world, chat), timeout=20, message="the newsletter")
    await asyncio.sleep(0.3)
    await world.says(chat, "YES please", first_name="Reader")
    root = await world.thread_of(chat)
    await eventually(
        lambda: any(f"reply to broadcast #{number}" in t for t in world.texts(root)),
        message="the mark",
    )


async def test_a_scheduled_broadcast_survives_a_restart(rig):
    world = rig
    chats = await subscribers(world, 3)
    at = datetime.now(UTC) + timedelta(seconds=4)
    number = await new(world, f'news --at "{at.isoformat(timespec="seconds")}" "Sale later"')
    confirmed = await command(world, f"broadcast confirm {number}", user=MANAGER)
    assert confirmed.ok and "starts at" in confirmed.title
    settings, url = world.bridge.settings, world.bridge.url
    await world.bridge.stop()
    await asyncio.sleep(0.5)
    assert sum(len(newsletters(world, c)) for c in chats) == 0
    world.bridge = await start_bridge(settings, port=int(url.rsplit(":", 1)[1]))
    await eventually(
        lambda: all(newsletters(world, c) for c in chats), timeout=20, message="after restart"
    )
    assert all(len(newsletters(world, c)) == 1 for c in chats)


async def test_the_slack_composer_prepares_a_broadcast_with_a_preview(rig):
    world = rig
    await subscribers(world, 2)
    world.slack.add_user(MANAGER, "Max Manager", "max")
    view = await open_form(world, "new", command="/broadcast")
    to = next(b for b in view["blocks"] if b["block_id"] == "to")
    assert {"news", "telegram"} <= {o["value"] for o in to["element"]["options"]}
    status, body = await submit(world, view, to=["news"], text="Sale {FIRSTNAME}!\nSee you.")
    assert status == 200 and not body, body
    preview = world.slack.ephemerals[-1]["text"]
    assert "Broadcast #1 prepared: 2 recipients" in preview
    assert await world.sql("select text, state from broadcasts") == [
        ("Sale {FIRSTNAME}!\nSee you.", "draft")
    ]


async def test_links_are_shortened_per_recipient_and_clicks_are_counted(rig):
    world = rig
    chats = await subscribers(world, 2)
    number = await new(world, 'news "Sale: https://shop.example.org/sale?x=1 now!"')
    [(text,)] = await world.sql("select text from broadcasts")
    assert f"{world.bridge.url}/s/" in text and "shop.example.org" not in text
    assert (await command(world, f"broadcast confirm {number}", user=MANAGER)).ok
    await eventually(lambda: all(newsletters(world, c) for c in chats), message="newsletters")
    links = [newsletters(world, c)[0].split()[1] for c in chats]
    assert links[0] != links[1] and all(link.startswith(world.bridge.url) for link in links)
    async with aiohttp.ClientSession() as http:
        async with http.get(links[0], allow_redirects=False) as response:
            assert response.status == 302
            assert response.headers["Location"] == "https://shop.example.org/sale?x=1"

    async def counted():
        status = await command(world, f"broadcast status {number}")
        return "links clicked 1 times by 1 recipients" in status.text

    await eventually(counted, message="the click in the status")

    # The recipient's export says what they were sent and what they clicked.
    [(clicker,)] = await world.sql(f"select id from contacts where chat_id = '{chats[0]}'")
    export = await command(world, f"contact export #{clicker}")
    data = json.loads(export.file.data)
    [received] = data["broadcasts"]
    assert received["broadcast_id"] == number and received["state"] == "sent"
    [click] = data["link_clicks"]
    assert click["url"] == "https://shop.example.org/sale?x=1" and click["at"].endswith("Z")


async def test_a_contact_erased_during_the_run_gets_nothing_and_leaves_no_trace(rig):
    world = rig
    chats = await subscribers(world, 12)
    world.tg.set_rate_limits(None, 3)  # about 3 messages a second
    [(erased,)] = await world.sql(f"select id from contacts where chat_id = '{chats[-1]}'")
    number = await new(world, 'news "Sale for the erased"')
    assert (await command(world, f"broadcast confirm {number}", user=MANAGER)).ok
    await eventually(
        lambda: world.sql("select queued from broadcasts where queued = 12"), message="queued"
    )
    forgot = await command(world, f"contact forget #{erased} --confirm")
    assert forgot.ok, forgot.text
    await eventually(
        lambda: all(newsletters(world, c) for c in chats[:-1]), timeout=30, message="the rest"
    )
    status = await eventually(
        lambda: world.sql(f"select state from broadcasts where id = {number} and state = 'done'"),
        timeout=20,
        message="the broadcast done",
    )
    assert status
    assert newsletters(world, chats[-1]) == []
    assert await world.sql(f"select id from broadcast_sends where contact_id = {erased}") == []
    assert await world.sql(f"select id from outbox where lane = 'bc:{erased}'") == []
    payloads = await world.sql("select payload from outbox where kind = 'broadcast.send'")
    assert not any(str(chats[-1]) in str(p) for (p,) in payloads)
