"""Channel keywords and consent words, on the pipeline alone: a join keyword subscribes the
sender, a leave keyword or STOP unsubscribes, START brings back what STOP ended; the customer
is told once and the thread shows what was sent."""

from __future__ import annotations

import pytest

from tests.consent_kit import (
    JOINED_DEALS,
    JOINED_NEWS,
    START_WORDS,
    STOP_WORDS,
    STOPPED,
    WELCOME_BACK,
    shipped,
)
from tests.pipeline_kit import Rig, rig_fixture

ANN = "111"


def automatic(text: str) -> str:
    """How the thread shows a message the bridge sent by itself."""
    return f"Sent automatically: {text}"


bare = rig_fixture(name="bare")


@pytest.fixture
async def rig(bare: Rig) -> Rig:
    """news (JOIN-NEWS, LEAVE-NEWS) and deals (DEALS, no leave keyword), made by command."""
    for line in (
        "channel create news --join JOIN-NEWS --leave LEAVE-NEWS",
        "channel create deals --join DEALS",
    ):
        reply = await bare.command(line)
        assert reply.ok, reply.text
    return bare


async def says_and_is_told(rig: Rig, text: str, answer: str, chat: str = ANN) -> None:
    """The customer writes and gets exactly `answer` back."""
    before = len(rig.customer.texts_to(chat))
    await rig.customer.says(chat, text)
    await rig.settle()
    assert rig.customer.texts_to(chat)[before:] == [answer], text


async def says_and_nothing_comes_back(rig: Rig, text: str, chat: str = ANN) -> None:
    """The customer writes; nothing is sent to them and nothing is queued for them."""
    before = rig.customer.texts_to(chat)
    outgoing = await rig.outgoing()
    await rig.customer.says(chat, text)
    await rig.settle()
    assert rig.customer.texts_to(chat) == before, text
    assert await rig.outgoing() == outgoing


async def memberships(rig: Rig, chat: str = ANN) -> dict[str, str]:
    """Each channel the customer ever joined: "member", or how they left."""
    rows = await rig.sql(
        "select ch.name, m.left_at is null, m.left_source from channel_members m"
        " join channels ch on ch.id = m.channel_id join contacts c on c.id = m.contact_id"
        f" where c.chat_id = '{chat}'"
    )
    return {name: "member" if active else f"left: {how}" for name, active, how in rows}


async def join_both(rig: Rig, chat: str = ANN) -> None:
    await says_and_is_told(rig, "JOIN-NEWS", JOINED_NEWS, chat)
    await says_and_is_told(rig, "DEALS", JOINED_DEALS, chat)
    assert await memberships(rig, chat) == {"news": "member", "deals": "member"}


async def test_join_keyword_as_first_message_subscribes_opts_in_and_opens_the_thread(rig):
    await says_and_is_told(rig, "  join-News ", JOINED_NEWS)
    assert await memberships(rig) == {"news": "member"}
    assert await rig.sql("select opt_in_source from contacts") == [("keyword: JOIN-NEWS",)]
    assert await rig.sql("select source from channel_members") == [("keyword JOIN-NEWS",)]
    thread = rig.surface.thread_of(ANN)
    assert [t.strip() for t in thread.texts()] == ["join-News", automatic(JOINED_NEWS)]


async def test_join_keyword_said_again_is_not_confirmed_twice(rig):
    await says_and_is_told(rig, "JOIN-NEWS", JOINED_NEWS)
    await says_and_nothing_comes_back(rig, "join-news")
    assert await rig.sql("select count(*) from channel_members") == [(1,)]


async def test_channel_reply_replaces_the_default_confirmation(rig):
    reply = await rig.command("channel reply news join Welcome! News every Friday.")
    assert reply.ok, reply.text
    await says_and_is_told(rig, "join-news", "Welcome! News every Friday.")


async def test_leave_keyword_leaves_only_its_channel(rig):
    await join_both(rig)
    await says_and_is_told(rig, " leave-news ", "You have left news.")
    assert await memberships(rig) == {"news": "left: keyword LEAVE-NEWS", "deals": "member"}
    await says_and_nothing_comes_back(rig, "LEAVE-NEWS")  # left already: no second answer


@pytest.mark.parametrize("word", shipped(STOP_WORDS))
async def test_stop_word_unsubscribes_from_every_channel_and_confirms_once(rig, word):
    await join_both(rig)
    await says_and_is_told(rig, f"  {word.upper()}\n ", STOPPED)
    assert await memberships(rig) == {"news": "left: STOP", "deals": "left: STOP"}
    await says_and_nothing_comes_back(rig, word)  # said again: no second confirmation
    assert rig.customer.texts_to(ANN) == [JOINED_NEWS, JOINED_DEALS, STOPPED]
    assert rig.surface.thread_of(ANN).texts().count(automatic(STOPPED)) == 1


async def test_stop_with_a_join_keyword_leaves_only_that_channel(rig):
    await join_both(rig)
    await says_and_is_told(
        rig, "STOP JOIN-NEWS", "You have left news. Send JOIN-NEWS to join again."
    )
    assert await memberships(rig) == {"news": "left: STOP", "deals": "member"}


async def test_stop_inside_a_longer_message_unsubscribes_nobody(rig):
    await join_both(rig)
    for text in ("Please stop sending me the wrong invoice", "Can I STOP the delivery?"):
        await says_and_nothing_comes_back(rig, text)
    assert await memberships(rig) == {"news": "member", "deals": "member"}
    assert automatic(STOPPED) not in rig.surface.thread_of(ANN).texts()


@pytest.mark.parametrize("word", shipped(START_WORDS))
async def test_start_word_brings_back_what_stop_ended_and_confirms_once(rig, word):
    await join_both(rig)
    await says_and_is_told(rig, "LEAVE-NEWS", "You have left news.")
    await says_and_is_told(rig, "STOP", STOPPED)
    await says_and_is_told(rig, f" {word.title()} ", WELCOME_BACK)
    # deals comes back; news was left by its own keyword before the STOP and stays left.
    assert await memberships(rig) == {"news": "left: keyword LEAVE-NEWS", "deals": "member"}
    await says_and_nothing_comes_back(rig, word)
    assert automatic(WELCOME_BACK) in rig.surface.thread_of(ANN).texts()


async def test_start_without_a_stop_before_changes_nothing_and_says_nothing(rig):
    await join_both(rig)
    await says_and_nothing_comes_back(rig, "START")
    assert await memberships(rig) == {"news": "member", "deals": "member"}
