"""Chatbot rules, on the pipeline alone: an auto-reply rule answers the customer and tells the
thread; an ignore rule keeps spam out of the thread; limits and the `rest` rule hold;
channel actions join and leave."""

from __future__ import annotations

from tests.pipeline_kit import Rig, rig_fixture

ANNA = "8180001"
BOB = "8180002"


rig = rig_fixture(rules={"timezone": "Europe/Berlin"})


async def add(rig: Rig, line: str) -> None:
    reply = await rig.command(f"rule add {line}")
    assert reply.ok, reply.text


async def says(rig: Rig, chat: str, text: str, name: str = "Anna Schmidt") -> None:
    await rig.customer.says(chat, text, name=name)
    await rig.settle()


async def test_auto_answer_fills_placeholders_and_tells_the_thread(rig):
    await add(
        rig,
        'hours contain "open, hours" --do "answer: Hi {NICKNAME}, we open at 8 (you said: {MSG})"',
    )
    await says(rig, ANNA, "When are you open?")
    assert rig.customer.texts_to(ANNA) == [
        "Hi Anna Schmidt, we open at 8 (you said: When are you open?)"
    ]
    thread = rig.surface.thread_of(ANNA)
    assert any("Rule 'hours': answered automatically" in t for t in thread.texts())
    assert "When are you open?" in thread.posts()  # still mirrored


async def test_a_message_no_rule_matches_gets_no_answer(rig):
    await add(rig, 'hours contain "open, hours" --do "answer: We open at 8"')
    await says(rig, ANNA, "Where is my parcel?")
    assert rig.customer.sent == []
    assert rig.surface.thread_of(ANNA).posts() == ["Where is my parcel?"]


async def test_do_nothing_keeps_spam_out_of_the_thread(rig):
    await add(rig, 'spam regexp "(?i)crypto.*profit" --do "ignore"')
    await says(rig, BOB, "CRYPTO giveaway, huge profit!!", name="Spammer")
    await says(rig, ANNA, "Hello")
    assert not rig.surface.has_thread(BOB)  # no thread for a conversation of spam only
    assert await rig.sql("select text from messages where author = 'Spammer'") == [
        ("CRYPTO giveaway, huge profit!!",)
    ]
    await says(rig, BOB, "Sorry, a real question", name="Spammer")
    assert rig.surface.thread_of(BOB).posts() == ["Sorry, a real question"]


async def test_rest_fires_only_when_no_other_rule_does_and_limits_hold(rig):
    await add(rig, 'greet contain "hello" --limit once --do "answer: Welcome!"')
    await add(rig, 'fallback rest --limit every 1h --do "answer: We will get back to you."')
    await says(rig, ANNA, "hello")
    assert rig.customer.texts_to(ANNA) == ["Welcome!"]
    await says(rig, ANNA, "hello again")  # greet is used up: rest fires
    assert rig.customer.texts_to(ANNA) == ["Welcome!", "We will get back to you."]
    await says(rig, ANNA, "anyone?")  # the fallback waits an hour
    assert rig.customer.texts_to(ANNA) == ["Welcome!", "We will get back to you."]
    rig.advance(hours=1, minutes=1)
    await says(rig, ANNA, "still there?")
    assert rig.customer.texts_to(ANNA) == [
        "Welcome!",
        "We will get back to you.",
        "We will get back to you.",
    ]


async def test_channel_actions_add_and_remove(rig):
    assert (await rig.command("channel create news --join JOIN-NEWS")).ok
    await add(rig, 'vip contain "vip" --do "join: news"')
    await add(rig, 'novip contain "unvip" --do "leave: news"')
    await says(rig, ANNA, "I am a vip")
    assert await rig.sql("select source, left_at is null from channel_members") == [("rule vip", 1)]
    await says(rig, ANNA, "please unvip me")
    assert await rig.sql("select left_at is not null from channel_members") == [(1,)]
