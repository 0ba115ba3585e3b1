"""Opt-in and opt-out: a first message, a deep link or a join keyword subscribes a customer; leave
keywords, STOP in every shipped language and START change that, the customer is told once and
the thread shows what was sent."""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from storage.models import Contact
from tests.commands_kit import command, services_of
from tests.consent_kit import (
    JOINED_DEALS,
    JOINED_NEWS,
    START_WORDS,
    STOP_WORDS,
    STOPPED,
    WELCOME_BACK,
    shipped,
)
from tests.harness import eventually

ANN = 111
BOB = 222


def automatic(text: str) -> str:
    """How the thread shows a confirmation the bridge sent by itself."""
    return f":information_source: Sent automatically: {text}"


async def two_channels(world) -> None:
    """news (JOIN-NEWS, LEAVE-NEWS) and deals (DEALS, no leave keyword)."""
    for line in (
        "channel create news --join JOIN-NEWS --leave LEAVE-NEWS",
        "channel create deals --join DEALS",
    ):
        reply = await command(world, line)
        assert reply.ok, reply.text


def sent(world, chat: int = ANN) -> list[str | None]:
    """What the customer received from the bot, oldest first."""
    return [m.text for m in world.tg.messages_to(chat)]


async def says_and_is_told(world, text: str, answer: str, chat: int = ANN) -> None:
    """The customer writes and gets exactly `answer` back."""
    before = len(sent(world, chat))
    await world.says(chat, text)
    got = await eventually(lambda: sent(world, chat)[before:], message=f"the answer to {text!r}")
    assert got == [answer]


async def stored(world, chat: int, direction: str) -> int:
    [(count,)] = await world.sql(
        "select count(*) from messages m join conversations v on v.id = m.conversation_id"
        f" join contacts c on c.id = v.contact_id where c.chat_id = '{chat}'"
        f" and m.direction = '{direction}'"
    )
    return int(count)


async def says_and_nothing_comes_back(world, text: str, chat: int = ANN) -> None:
    """The customer writes; once the message is stored, nothing was queued or sent to them (an
    automatic answer is stored in the same transaction as the message it answers)."""
    before_in, before_out = await stored(world, chat, "in"), await stored(world, chat, "out")
    received = sent(world, chat)
    await world.says(chat, text)
    await eventually(lambda: _more(world, chat, before_in), message=f"{text!r} stored", timeout=5.0)
    assert await stored(world, chat, "out") == before_out
    assert sent(world, chat) == received


async def _more(world, chat: int, before: int) -> bool:
    return await stored(world, chat, "in") > before


async def memberships(world, chat: int = ANN) -> dict[str, str]:
    """Each channel the customer ever joined: "member", or how they left."""
    rows = await world.sql(
        "select ch.name, m.left_at is null, m.left_source from channel_members m"
        " join channels ch on ch.id = m.channel_id join contacts c on c.id = m.contact_id"
        f" where c.chat_id = '{chat}'"
    )
    return {name: "member" if active else f"left: {how}" for name, active, how in rows}


async def opt_in(world, chat: int = ANN) -> tuple[str, datetime]:
    """The contact's opt-in source and time, as stored."""

    def read(conn):
        return conn.execute(
            select(Contact.opt_in_source, Contact.opt_in_at).where(Contact.chat_id == str(chat))
        ).one()

    source, at = await services_of(world).db.run_read(read)
    return source, at


async def join_both(world, chat: int = ANN) -> None:
    await says_and_is_told(world, "JOIN-NEWS", JOINED_NEWS, chat)
    await says_and_is_told(world, "DEALS", JOINED_DEALS, chat)
    assert await memberships(world, chat) == {"news": "member", "deals": "member"}


# -- opt-in -------------------------------------------------------------------------------------


async def test_first_message_opts_in_with_its_source_and_time(world):
    await two_channels(world)
    before = datetime.now(UTC)
    await world.says(ANN, "Hello, is my order on its way?")
    root = await world.thread_of(ANN)
    source, at = await opt_in(world)
    assert source == "first message"
    assert before - timedelta(seconds=1) <= at <= datetime.now(UTC)
    assert "first message" in str(root.blocks)  # the contact card names it
    shown = await command(world, f"contact show {ANN}")
    assert ("Opt-in", f"first message ({at:%Y-%m-%d %H:%M} UTC)") in shown.fields

    # Joining a channel later subscribes them, but the opt-in stays what it was.
    await says_and_is_told(world, "JOIN-NEWS", JOINED_NEWS)
    assert await opt_in(world) == (source, at)
    assert await memberships(world) == {"news": "member"}


async def test_deep_link_payload_is_the_opt_in_source_and_nothing_is_sent(world):
    before = datetime.now(UTC)
    await world.says(ANN, "/start flyer-2026")
    root = await world.thread_of(ANN)
    source, at = await opt_in(world)
    assert source == "deep link: flyer-2026"
    assert before - timedelta(seconds=1) <= at <= datetime.now(UTC)
    assert "deep link: flyer-2026" in str(root.blocks)
    await eventually(lambda: world.texts(root) == ["/start flyer-2026"])
    assert sent(world) == []
    assert await memberships(world) == {}


async def test_deep_link_carrying_a_join_keyword_opts_in_and_joins_once(world):
    await two_channels(world)
    await says_and_is_told(world, "/start JOIN-NEWS", JOINED_NEWS)
    assert (await opt_in(world))[0] == "deep link: JOIN-NEWS"
    assert await world.sql("select source from channel_members") == [("keyword JOIN-NEWS",)]
    root = await world.thread_of(ANN)
    await eventually(
        lambda: world.texts(root) == ["/start JOIN-NEWS", automatic(JOINED_NEWS)],
        message="the deep link and the confirmation in the thread",
    )
    assert sent(world) == [JOINED_NEWS]
    assert await stored(world, ANN, "out") == 1


async def test_join_keyword_as_first_message_opts_in_joins_and_opens_the_thread(world):
    await two_channels(world)
    before = datetime.now(UTC)
    await says_and_is_told(world, "  join-News ", JOINED_NEWS)
    source, at = await opt_in(world)
    assert source == "keyword: JOIN-NEWS"
    assert before - timedelta(seconds=1) <= at <= datetime.now(UTC)
    [(joined_source, joined_at)] = await world.sql("select source, joined_at from channel_members")
    assert joined_source == "keyword JOIN-NEWS"
    assert joined_at is not None
    # The confirmation does not hold back the new thread: the keyword, then what was sent.
    root = await world.thread_of(ANN)
    await eventually(
        lambda: [t.strip() for t in world.texts(root)] == ["join-News", automatic(JOINED_NEWS)],
        message="the keyword and the confirmation in the new thread",
    )


# -- join and leave keywords ----------------------------------------------------------------------


async def test_join_confirmation_is_the_channel_reply_or_a_default_naming_the_leave_word(world):
    await two_channels(world)
    reply = await command(world, "channel reply news join Welcome! News every Friday.")
    assert reply.ok, reply.text
    await world.says(ANN, "Hi")
    root = await world.thread_of(ANN)
    await eventually(lambda: world.texts(root) == ["Hi"], message="the first message")
    await says_and_is_told(world, "join-news", "Welcome! News every Friday.")
    await says_and_is_told(world, "Deals", JOINED_DEALS)
    assert await memberships(world) == {"news": "member", "deals": "member"}
    await eventually(
        lambda: world.texts(root)
        == [
            "Hi",
            "join-news",
            automatic("Welcome! News every Friday."),
            "Deals",
            automatic(JOINED_DEALS),
        ],
        message="both keywords and both confirmations in the thread",
    )
    # Sending the keyword again changes nothing and is not confirmed a second time.
    await says_and_nothing_comes_back(world, "JOIN-NEWS")
    assert await world.sql("select count(*) from channel_members") == [(2,)]


async def test_leave_keyword_leaves_only_its_channel_with_the_channel_reply(world):
    await two_channels(world)
    await join_both(world)
    await says_and_is_told(world, " leave-news ", "You have left news.")
    assert await memberships(world) == {"news": "left: keyword LEAVE-NEWS", "deals": "member"}
    await says_and_nothing_comes_back(world, "LEAVE-NEWS")  # left already: no second answer

    reply = await command(world, "channel reply news leave Sorry to see you go.")
    assert reply.ok, reply.text
    await says_and_is_told(world, "JOIN-NEWS", JOINED_NEWS)
    await says_and_is_told(world, "LEAVE-NEWS", "Sorry to see you go.")
    root = await world.thread_of(ANN)
    await eventually(
        lambda: automatic("Sorry to see you go.") in world.texts(root), message="the notice"
    )


# -- STOP -----------------------------------------------------------------------------------------


async def test_every_language_ships_stop_words_and_the_database_holds_them_all(world):
    rows = await world.sql("select word, kind, language from consent_words")
    seeded = [(w, "stop", lang) for lang, words in STOP_WORDS.items() for w in words] + [
        (w, "start", lang) for lang, words in START_WORDS.items() for w in words
    ]
    assert sorted(rows) == sorted(seeded)  # what the STOP/START tests below go through
    assert len({lang for _, kind, lang in rows if kind == "stop"}) >= 10
    stops = {w for w, kind, _ in rows if kind == "stop"}
    named_in_the_issue = ["stop", "stopp", "abmelden", "arrêt", "alto", "basta", "cancelar"]
    named_in_the_issue += ["стоп", "parar", "afmelden"]
    assert set(named_in_the_issue) <= stops


@pytest.mark.parametrize("word", shipped(STOP_WORDS))
async def test_stop_word_unsubscribes_from_every_channel_and_confirms_once(world, word):
    await two_channels(world)
    await join_both(world)
    await says_and_is_told(world, f"  {word.upper()}\n ", STOPPED)
    assert await memberships(world) == {"news": "left: STOP", "deals": "left: STOP"}

    await says_and_nothing_comes_back(world, word)  # said again: no second confirmation
    assert sent(world) == [JOINED_NEWS, JOINED_DEALS, STOPPED]
    root = await world.thread_of(ANN)
    await eventually(lambda: automatic(STOPPED) in world.texts(root), message="the notice")
    assert world.texts(root).count(automatic(STOPPED)) == 1


async def test_stop_words_match_however_the_keyboard_spells_them(world):
    await two_channels(world)
    spellings = {
        301: "İPTAL",  # iptal on a Turkish keyboard, caps on
        302: unicodedata.normalize("NFD", "Arrêt"),  # the accent as a combining character
        303: "ＳＴＯＰ",  # full-width letters of an East Asian keyboard
        304: "\u00a0Stop\u00a0",  # no-break spaces around it
    }
    for chat, text in spellings.items():
        await says_and_is_told(world, "DEALS", JOINED_DEALS, chat)
        await says_and_is_told(world, text, STOPPED, chat)
        assert await memberships(world, chat) == {"deals": "left: STOP"}, text


@pytest.mark.parametrize("line", ["STOP JOIN-NEWS", "  stopp   join-news ", "Abmelden Join-News"])
async def test_stop_with_a_join_keyword_leaves_only_that_channel(world, line):
    await two_channels(world)
    await join_both(world)
    await says_and_is_told(world, line, "You have left news. Send JOIN-NEWS to join again.")
    assert await memberships(world) == {"news": "left: STOP", "deals": "member"}
    await says_and_nothing_comes_back(world, line)
    await says_and_is_told(world, "START", WELCOME_BACK)
    assert await memberships(world) == {"news": "member", "deals": "member"}


async def test_stop_with_a_join_keyword_confirms_with_the_channel_leave_reply(world):
    await two_channels(world)
    reply = await command(world, "channel reply news leave Sorry to see you go.")
    assert reply.ok, reply.text
    await join_both(world)
    await says_and_is_told(world, "STOP JOIN-NEWS", "Sorry to see you go.")
    assert await memberships(world) == {"news": "left: STOP", "deals": "member"}


async def test_stop_inside_a_longer_message_unsubscribes_nobody(world):
    await two_channels(world)
    await join_both(world)
    for text in (
        "Please stop sending me the wrong invoice",
        "stop it",
        "Can I STOP the delivery?",
        "STOP JOIN-NOTHING",
        "stopped",
    ):
        await says_and_nothing_comes_back(world, text)
    assert await memberships(world) == {"news": "member", "deals": "member"}
    root = await world.thread_of(ANN)
    # Shown to staff as ordinary messages (quick ones may share a post).
    await eventually(
        lambda: "stopped" in "\n".join(world.texts(root)), message="the messages mirrored"
    )
    assert automatic(STOPPED) not in world.texts(root)


async def test_stop_as_the_very_first_message_is_confirmed_in_a_new_thread(world):
    reply = await command(world, "channel create tg-news --platform telegram")
    assert reply.ok, reply.text
    await says_and_is_told(world, "Stop", STOPPED)
    assert await memberships(world) == {"tg-news": "left: STOP"}
    root = await world.thread_of(ANN)
    await eventually(
        lambda: world.texts(root) == ["Stop", automatic(STOPPED)],
        message="the STOP and the confirmation in the new thread",
    )


async def test_stop_words_are_editable(world):
    await two_channels(world)
    for line in ("channel words add stop de Kündigen", "channel words remove quit"):
        reply = await command(world, line)
        assert reply.ok, reply.text
    await join_both(world)
    await says_and_nothing_comes_back(world, "QUIT")
    assert await memberships(world) == {"news": "member", "deals": "member"}
    await says_and_is_told(world, "KÜNDIGEN", STOPPED)
    assert await memberships(world) == {"news": "left: STOP", "deals": "left: STOP"}


async def test_after_stop_the_channels_leave_the_customer_out_but_the_conversation_goes_on(
    world,
):
    """What broadcasts will send to: the channel's current members."""
    await two_channels(world)
    await join_both(world, ANN)
    await says_and_is_told(world, "JOIN-NEWS", JOINED_NEWS, BOB)
    await says_and_is_told(world, "STOP", STOPPED, ANN)

    [(news_id, anns_id)] = await world.sql(
        f"select ch.id, c.id from channels ch, contacts c where ch.name = 'news'"
        f" and c.chat_id = '{ANN}'"
    )
    members = await services_of(world).read(lambda tx: tx.subscriptions.active_members(news_id))
    assert [m[0] for m in members] != [] and anns_id not in [m[0] for m in members]
    listed = await command(world, "channel members news")
    assert listed.title == "news: 1 member (telegram 1)"
    assert await world.sql(
        f"select left_at is not null, left_source from channel_members where contact_id = {anns_id}"
    ) == [(True, "STOP"), (True, "STOP")]
    # STOP ends newsletters, not the support conversation: agents' replies still reach Ann.
    assert await world.sql(f"select opted_out_at from contacts where id = {anns_id}") == [(None,)]
    root = await world.thread_of(ANN)
    await world.slack.agent_says(root.channel, root.ts, "Sure, no more newsletters.")
    await eventually(lambda: "Sure, no more newsletters." in sent(world), message="the reply")


# -- START and joining again ------------------------------------------------------------------


@pytest.mark.parametrize("word", shipped(START_WORDS))
async def test_start_word_brings_back_what_stop_ended_and_confirms_once(world, word):
    await two_channels(world)
    await join_both(world)
    await says_and_is_told(world, "LEAVE-NEWS", "You have left news.")
    await says_and_is_told(world, "STOP", STOPPED)
    await says_and_is_told(world, f" {word.title()} ", WELCOME_BACK)
    # deals comes back; news was left by its own keyword before the STOP and stays left.
    assert await memberships(world) == {"news": "left: keyword LEAVE-NEWS", "deals": "member"}
    await says_and_nothing_comes_back(world, word)
    root = await world.thread_of(ANN)
    await eventually(lambda: automatic(WELCOME_BACK) in world.texts(root), message="the notice")


async def test_join_keyword_after_stop_subscribes_to_that_channel_only(world):
    await two_channels(world)
    await join_both(world)
    await says_and_is_told(world, "STOP", STOPPED)
    await says_and_is_told(world, "JOIN-NEWS", JOINED_NEWS)
    assert await memberships(world) == {"news": "member", "deals": "left: STOP"}
    assert await world.sql(
        "select m.source from channel_members m join channels ch on ch.id = m.channel_id"
        " where ch.name = 'news'"
    ) == [("keyword JOIN-NEWS",)]
    # A second STOP ends the new subscription and is confirmed again: something changed.
    await says_and_is_told(world, "STOP", STOPPED)
    assert await memberships(world) == {"news": "left: STOP", "deals": "left: STOP"}


async def test_start_without_a_stop_before_changes_nothing_and_says_nothing(world):
    await two_channels(world)
    await join_both(world)
    await says_and_nothing_comes_back(world, "START")
    assert await memberships(world) == {"news": "member", "deals": "member"}
