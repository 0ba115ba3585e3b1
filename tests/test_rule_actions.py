"""Every rule action, end to end: a customer writes on Telegram, the rule fires, and the
answer, the mail, the web call or the SMS arrives where it should; the thread says so."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from bridge.app import PIPELINE
from tests.commands_kit import command
from tests.fakes.twilio import FakeTwilio
from tests.harness import eventually
from tests.rules_kit import Endpoint, Mailbox
from tests.world import start_world, stop_world

ANNA = 8180001
BOB = 8180002


@pytest.fixture
async def rig(tmp_path):
    mailbox, endpoint = Mailbox(), Endpoint()
    await mailbox.start()
    await endpoint.start()
    world = await start_world(
        tmp_path,
        sms=FakeTwilio(),
        sections={
            "mail": mailbox.settings(),
            "rules": {"timezone": "Europe/Berlin"},
            # The fake web service listens on loopback: allowed by its port, and only that.
            "security": {"allow_private": [endpoint.allow]},
        },
    )
    yield world, mailbox, endpoint
    await stop_world(world)
    await endpoint.stop()
    await mailbox.stop()


async def add(world, line: str) -> None:
    reply = await command(world, f"rule add {line}")
    assert reply.ok, reply.text


def sent_texts(world, chat_id: int) -> list[str]:
    return [m.text or m.caption or "" for m in world.tg.messages_to(chat_id)]


async def test_auto_answer_fills_placeholders_and_tells_the_thread(rig):
    world, _, _ = rig
    await add(
        world,
        'hours contain "open, hours" --do "answer: Hi {NICKNAME}, we open at 8 (you said: {MSG})"',
    )
    await world.says(ANNA, "When are you open?", first_name="Anna", last_name="Schmidt")
    await eventually(lambda: sent_texts(world, ANNA), message="the answer")
    assert sent_texts(world, ANNA) == [
        "Hi Anna Schmidt, we open at 8 (you said: When are you open?)"
    ]
    root = await world.thread_of(ANNA)
    await eventually(
        lambda: any("Rule 'hours': answered automatically" in t for t in world.texts(root)),
        message="the rule line in the thread",
    )
    assert any("When are you open?" in t for t in world.texts(root))  # still mirrored


async def test_answer_with_a_file_sends_the_stored_file(rig):
    world, _, endpoint = rig
    endpoint.files["prices.pdf"] = (b"%PDF-1.4 prices", "application/pdf")
    await add(
        world,
        f'prices contain "price" --do "answer-file: {endpoint.url("/files/prices.pdf")} | Our prices"',
    )
    await world.says(ANNA, "What is the price?", first_name="Anna")
    sent = await eventually(
        lambda: [m for m in world.tg.messages_to(ANNA) if m.file_bytes], message="the file"
    )
    assert sent[0].file_bytes == b"%PDF-1.4 prices" and sent[0].file_name == "prices.pdf"


async def test_mail_forward_reaches_the_smtp_server(rig):
    world, mailbox, _ = rig
    await add(
        world,
        'cancel regexp ".*((Kündigung)|(gekündigt)).*" '
        '--do "mail: contracts@example.org | Cancellation from {NICKNAME} | {MSISDN} wrote at {TIMESTAMP}: {MSG}"',
    )
    await world.says(ANNA, "Hiermit meine Kündigung zum 31.12.", first_name="Anna")
    await eventually(lambda: mailbox.mails, message="the mail")
    [mail] = mailbox.mails
    assert mail["To"] == "contracts@example.org"
    assert mail["Subject"] == "Cancellation from Anna"
    body = mail.get_payload(decode=True).decode()
    assert f"{ANNA} wrote at 20" in body and "Hiermit meine Kündigung zum 31.12." in body
    assert mailbox.recipients == [["contracts@example.org"]]


async def test_mail_refused_by_the_server_is_reported_in_the_thread(rig):
    world, mailbox, _ = rig
    mailbox.refuse.add("nobody@example.org")
    await add(world, 'fwd always --do "mail: nobody@example.org"')
    await world.says(ANNA, "Hello", first_name="Anna")
    root = await world.thread_of(ANNA)
    await eventually(
        lambda: any(
            "Rule 'fwd': the mail forward failed" in t and "refused" in t for t in world.texts(root)
        ),
        message="the failure in the thread",
    )


async def test_webservice_forward_posts_the_message_as_json(rig):
    world, _, endpoint = rig
    await add(world, f'crm always --do "post: {endpoint.url("/crm")}"')
    await world.says(ANNA, "Order 17?", first_name="Anna", username="anna_s")
    await eventually(lambda: endpoint.posts, message="the post")
    [(path, body)] = endpoint.posts
    assert path == "/crm"
    assert body["text"] == "Order 17?" and body["platform"] == "telegram"
    assert body["contact"]["name"] == "Anna" and body["contact"]["username"] == "anna_s"
    assert body["contact"]["address"] == str(ANNA) and body["rule"] == "crm"


async def test_http_bot_answer_goes_back_to_the_customer_with_media(rig):
    world, _, endpoint = rig
    endpoint.files["map.png"] = (b"\x89PNG map", "image/png")
    endpoint.bot_answer = {"text": "Here is the way", "media": [endpoint.url("/files/map.png")]}
    await add(world, f'bot contain "way" --do "bot: {endpoint.url("/bot")}"')
    await world.says(ANNA, "Which way to the shop?", first_name="Anna")
    sent = await eventually(
        lambda: [m for m in world.tg.messages_to(ANNA) if m.file_bytes], message="the media"
    )
    assert sent[0].file_bytes == b"\x89PNG map"
    assert "Here is the way" in sent_texts(world, ANNA)


async def test_sms_forward_sends_to_the_fixed_number(rig):
    world, _, _ = rig
    await add(
        world, 'urgent contain "urgent" --do "sms: +4915199999999 | URGENT {NICKNAME}: {MSG}"'
    )
    await world.says(ANNA, "This is urgent!", first_name="Anna")
    sent = await eventually(
        lambda: world.sms.messages_to("+4915199999999"), message="the forwarded SMS"
    )
    assert sent[0]["Body"] == "URGENT Anna: This is urgent!"


async def test_channel_actions_add_and_remove(rig):
    world, _, _ = rig
    assert (await command(world, "channel create news --join JOIN-NEWS")).ok
    await add(world, 'vip contain "vip" --do "join: news"')
    await add(world, 'novip contain "unvip" --do "leave: news"')
    await world.says(ANNA, "I am a vip", first_name="Anna")
    await eventually(
        lambda: world.sql("select count(*) from channel_members where left_at is null"),
        message="membership",
    )
    assert await world.sql("select source from channel_members") == [("rule vip",)]
    await world.says(ANNA, "please unvip me", first_name="Anna")

    async def left():
        return await world.sql("select left_at is not null from channel_members") == [(1,)]

    await eventually(left, message="left the channel")


async def test_i18n_stop_unsubscribes_and_confirms(rig):
    world, _, _ = rig
    assert (await command(world, "channel create news --join JOIN-NEWS")).ok
    await world.says(ANNA, "JOIN-NEWS", first_name="Anna")
    await eventually(lambda: sent_texts(world, ANNA), message="the join confirmation")
    await add(world, 'quit regexp "(?i)^\\s*ich will nichts mehr\\s*$" --do "stop"')
    await world.says(ANNA, "Ich will nichts mehr", first_name="Anna")
    await eventually(
        lambda: any("unsubscribed" in t for t in sent_texts(world, ANNA)), message="confirmation"
    )
    assert await world.sql("select left_source from channel_members") == [("STOP",)]


async def test_do_nothing_keeps_spam_out_of_the_thread(rig):
    world, _, _ = rig
    await add(world, 'spam regexp "(?i)crypto.*profit" --do "ignore"')
    await world.says(BOB, "CRYPTO giveaway, huge profit!!", first_name="Spammer")
    await world.says(ANNA, "Hello", first_name="Anna")
    await world.thread_of(ANNA)
    await world.slack.wait_idle()
    assert world.root_for(BOB) is None  # no thread for a conversation of spam only
    assert await world.sql("select text from messages where author = 'Spammer'") == [
        ("CRYPTO giveaway, huge profit!!",)
    ]
    await world.says(BOB, "Sorry, a real question", first_name="Spammer")
    root = await world.thread_of(BOB)
    await eventually(
        lambda: any("a real question" in t for t in world.texts(root)), message="the mirror"
    )
    assert not any("CRYPTO" in t for t in world.texts(root))


async def test_rest_fires_only_when_no_other_rule_does_and_limits_hold(rig):
    world, _, _ = rig
    await add(world, 'greet contain "hello" --limit once --do "answer: Welcome!"')
    await add(world, 'fallback rest --limit every 1h --do "answer: We will get back to you."')
    await world.says(ANNA, "hello", first_name="Anna")
    await eventually(lambda: sent_texts(world, ANNA) == ["Welcome!"], message="greeting")
    await world.says(ANNA, "hello again", first_name="Anna")  # greet is used up: rest fires
    await eventually(
        lambda: sent_texts(world, ANNA) == ["Welcome!", "We will get back to you."],
        message="the fallback",
    )
    await world.says(ANNA, "anyone?", first_name="Anna")  # fallback waits an hour
    await world.slack.wait_idle()
    assert sent_texts(world, ANNA) == ["Welcome!", "We will get back to you."]
    pipeline = world.bridge.app[PIPELINE]
    later = pipeline.clock() + timedelta(hours=1, minutes=1)
    pipeline.clock = lambda: later
    await world.says(ANNA, "still there?", first_name="Anna")
    await eventually(
        lambda: sent_texts(world, ANNA)[-1:] == ["We will get back to you."]
        and len(sent_texts(world, ANNA)) == 3,
        message="the fallback an hour later",
    )


async def test_every_placeholder_is_filled(rig):
    world, _, _ = rig
    await add(
        world,
        'all contain "everything" --do "answer: '
        "{ID}|{MSGID}|{MSG}|{CONTACTID}|{CONTACTREMARK}|{MSISDN}|{NICKNAME}|{TIMESTAMP}|{UTC}"
        '|{MEDIATYPE}|{INFOCODE}"',
    )
    await world.says(ANNA, "tell me everything", first_name="Anna")
    await world.thread_of(ANNA)
    [(contact_id,)] = await world.sql("select id from contacts")
    assert (await command(world, f"contact remark #{contact_id} CRM-4711")).ok
    await world.says(ANNA, "everything again", first_name="Anna")
    answers = await eventually(
        lambda: [t for t in sent_texts(world, ANNA) if "again" in t], message="the answer"
    )
    [(message_id, external_id, sent_at)] = await world.sql(
        "select id, external_id, sent_at from messages where text = 'everything again'"
    )
    parts = answers[0].split("|")
    assert parts[0] == str(message_id) and parts[1] == external_id
    assert parts[2:7] == ["everything again", str(contact_id), "CRM-4711", str(ANNA), "Anna"]
    # TIMESTAMP in the rules' zone (Europe/Berlin), UTC in ISO 8601.
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", parts[7])
    utc = datetime.strptime(parts[8], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=ZoneInfo("UTC"))
    assert utc.astimezone(ZoneInfo("Europe/Berlin")).strftime("%Y-%m-%d %H:%M:%S") == parts[7]
    assert parts[9:] == ["text", ""]
    assert str(sent_at)[:16].replace("T", " ") == utc.strftime("%Y-%m-%d %H:%M")


@pytest.mark.parametrize(
    ("local", "fires"),
    [
        ("2026-12-04 17:59", False),  # Friday, before the window
        ("2026-12-04 18:00", True),  # Friday evening: the window opens
        ("2026-12-05 07:59", True),  # Saturday morning, still Friday's window
        ("2026-12-05 08:00", False),  # the window has closed
        ("2026-12-05 19:00", False),  # Saturday is not a day of the rule
    ],
)
async def test_schedule_by_the_rule_zone_across_midnight(rig, local, fires):
    world, _, _ = rig
    await add(world, 'night always --hours 18:00-08:00 --days mon-fri --do "answer: closed"')
    at = datetime.fromisoformat(local).replace(tzinfo=ZoneInfo("Europe/Berlin"))
    world.bridge.app[PIPELINE].clock = lambda: at
    await world.says(ANNA, "hi", first_name="Anna")
    await world.thread_of(ANNA)
    await world.slack.wait_idle()
    if fires:
        await eventually(lambda: sent_texts(world, ANNA) == ["closed"], message="the answer")
    else:
        assert sent_texts(world, ANNA) == []
