"""A customer cannot hide messages from staff by flooding the thread.

Customer messages waiting in one thread are joined into one mirror post. Without a bound, a
burst of long messages (or one very long text) makes a post past Slack's 40,000 characters
(`msg_too_long`): the whole batch failed for good and staff never saw any of it. Every
character must reach the thread, in posts under the limit, and a mirror that fails for good
leaves a notice in the thread that says what was lost.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from tests.fakes.whatsapp import FakeWhatsApp
from tests.harness import eventually
from tests.matrix_user import MatrixUser
from tests.test_matrix_surface import MatrixWorld, synced
from tests.world import World, start_world, stop_world

EVE = 7130001
EVE_WA = "4915170000013"
MESSAGE_CHARS = 4096
# Letters and words, with what Slack's escaping makes longer (& < >), combining marks, emoji
# made of several code points (ZWJ families, flags, skin tones): every one must arrive whole.
PIECES = [
    "word",
    "Paket",
    "&",
    "<b>",
    "a>b",
    "é",  # e + COMBINING ACUTE ACCENT
    "👩‍👩‍👧",
    "🇩🇪",
    "👍🏽",
    "ünïcödé",
    "\n",
    "\n\n",
]


def flood_text(seed: int, length: int = MESSAGE_CHARS) -> str:
    """A message of exactly `length` code points, different for every seed."""
    rng = random.Random(seed)
    parts = [f"[message {seed}] "]
    size = len(parts[0])
    while size < length:
        part = rng.choice(PIECES) + (" " if rng.random() < 0.8 else "")
        parts.append(part)
        size += len(part)
    return "".join(parts)[:length]


def unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def thread_text(world: World, chat_id: int | str) -> str:
    """Everything the bridge posted in the customer's thread, joined as staff read it."""
    root = world.root_for(chat_id)
    if root is None:
        return ""
    return "".join(unescape(t) for t in world.texts(root))


@pytest.fixture
async def world(tmp_path):
    # A slow Slack channel: the customer's messages queue up and are joined into posts.
    w = await start_world(
        tmp_path,
        whatsapp=FakeWhatsApp(),
        sections={"slack": {"rate_per_channel": 2, "burst_per_channel": 1}},
    )
    yield w
    await stop_world(w)


async def says(world: World, platform: str, text: str) -> None:
    if platform == "telegram":
        await world.says(EVE, text, first_name="Eve")
    else:
        assert world.wa is not None
        assert await world.wa.customer_says(EVE_WA, text, name="Eve") == 200


@pytest.mark.parametrize("platform", ["telegram", "whatsapp"])
async def test_a_flood_of_long_messages_reaches_the_thread_whole(world, platform):
    chat = EVE if platform == "telegram" else EVE_WA
    texts = [flood_text(n) for n in range(14)]
    # One text far past Slack's limit (about 120,000 characters once escaped).
    texts.append(flood_text(99, 60_000))
    for text in texts:
        await says(world, platform, text)

    def all_there() -> bool:
        shown = thread_text(world, chat)
        return all(t in shown for t in texts)

    await eventually(all_there, timeout=60, message="every message in the thread")
    root = world.root_for(chat)
    assert root is not None
    posts = world.replies(root)
    assert all(len(p.text) <= 40_000 for p in posts)
    # Joined while they waited: fewer posts than messages, yet nothing refused or lost.
    assert len(posts) < len(texts)
    assert not [t for t in world.texts(root) if "could not be shown" in t]
    failed = await world.sql("select count(*) from outbox where state = 'failed'")
    assert failed == [(0,)]


async def test_a_post_refused_as_too_long_is_posted_again_in_smaller_pieces(world):
    await says(world, "telegram", "Hello")
    await eventually(lambda: "Hello" in thread_text(world, EVE), message="the first message")
    # Slack counts differently from the bridge: it refuses the next posts as too long.
    world.slack.fail_next("chat.postMessage", "msg_too_long", times=2)
    texts = [flood_text(100 + n) for n in range(3)]
    await asyncio.gather(*(says(world, "telegram", t) for t in texts))

    await eventually(
        lambda: all(t in thread_text(world, EVE) for t in texts),
        timeout=30,
        message="the refused messages in the thread",
    )
    assert "could not be shown" not in thread_text(world, EVE)


async def test_a_mirror_that_fails_for_good_leaves_a_notice_in_the_thread(world):
    await says(world, "telegram", "Hello")
    await eventually(lambda: "Hello" in thread_text(world, EVE), message="the first message")
    world.slack.fail_next("chat.postMessage", "restricted_action")
    await says(world, "telegram", "Are you there?")

    root = world.root_for(EVE)
    assert root is not None
    notices = await world.notices(root, "could not be shown", message="the notice")
    assert notices == [
        ":information_source: 1 message from Eve could not be shown here:"
        " Slack refused it: restricted_action"
    ]
    assert "Are you there?" not in thread_text(world, EVE)


async def test_a_flood_of_long_messages_reaches_the_matrix_thread_whole(tmp_path, synapse):
    # Matrix counts bytes of the event's JSON (64 KiB), escaping and HTML body included.
    bot = await MatrixUser.register(synapse, prefix="bridge", displayname="Support Bridge")
    staff = await MatrixUser.register(synapse, displayname="Maria Staff")
    room = await staff.create_room("support", invite=[bot.user_id])
    # A slow homeserver for the bridge: the customer's messages queue up and are joined.
    world = await start_world(
        tmp_path,
        matrix={
            "homeserver": synapse.base_url,
            "user_id": bot.user_id,
            "access_token": bot.access_token,
            "room": room,
            "rate": 2,
            "burst": 1,
        },
    )
    mx = MatrixWorld(world, staff, bot, room)
    await synced(world)
    try:
        texts = [flood_text(200 + n) for n in range(12)]
        texts.append(flood_text(299, 60_000))
        for text in texts:
            await mx.world.says(EVE, text, first_name="Eve")
        root = await mx.root_for(EVE)

        async def shown() -> str:
            bodies = await mx.thread_texts(root)
            return "".join(b.removeprefix("Eve: ") for b in bodies)

        async def all_there() -> bool | None:
            joined = await shown()
            return all(t in joined for t in texts) or None

        await mx.staff.wait_for(all_there, timeout=90, what="every message in the thread")
        assert "could not be shown" not in await shown()
    finally:
        await stop_world(mx.world)
        await mx.staff.close()
        await mx.bot.close()


async def test_an_edit_that_makes_a_joined_post_too_long_still_reaches_the_thread(world):
    texts = [f"[plain {n}] " + "x" * 4000 for n in range(8)]
    updates = [world.tg.text_update(EVE, t, first_name="Eve") for t in texts]
    for update in updates:
        await world.customer(update)
    await eventually(
        lambda: all(t in thread_text(world, EVE) for t in texts), message="the messages"
    )
    root = world.root_for(EVE)
    assert root is not None
    [joined] = [p for p in world.replies(root) if texts[-1] in p.text]
    assert len(joined.text) > 20_000  # the last message shares its post with others

    # Escaped for Slack, the edit is five times as long: the joined post would pass 40,000.
    edit = "&" * 4000 + " [edited]"
    last = updates[-1]["message"]["message_id"]
    await world.customer(world.tg.edit_update(EVE, last, edit))
    await eventually(lambda: edit in thread_text(world, EVE), message="the edited text")
    assert all(len(p.text) <= 40_000 for p in world.replies(root))
