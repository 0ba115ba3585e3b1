"""`/contact forget`: an admin erases a contact at their request. Without --confirm it only says
what would go; with it every stored trace goes, each Slack thread keeps a tombstone (staff's own
messages stay, and the tombstone counts them), and the customer writing again is a stranger."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from sqlalchemy import insert, select

from storage.models import Base, Contact, Conversation, Message
from tests.commands_kit import AGENT, MANAGER, command, services_of
from tests.fakes.twilio import FakeTwilio
from tests.harness import eventually
from tests.world import start_world, stop_world

ZELDA = 7310042
BOB = 7310077
ZELDA_PROFILE = {"first_name": "Zelda", "last_name": "Quackenbush", "username": "zq_parcel"}
# Every text of Zelda's conversations carries this, so a search for it finds any copy.
CASE = "QX-5521"
PNG = b"\x89PNG\r\n\x1a\n" + b"QX-5521 label" + bytes(range(64))
TOMBSTONE = re.compile(
    r"^This contact's data was erased on \d{4}-\d{2}-\d{2} at their request \(by Ada\)\."
)
# Ids the seed rows take; the contacts, conversations and messages of the tests come right
# after them, so their ids are long numbers that no timestamp or counter contains by chance.
SEED_CONTACT, SEED_CONVERSATION, SEED_MESSAGE = 880_000_100, 880_000_200, 880_000_300


@pytest.fixture(autouse=True)
async def staff(world):
    """Distinctive ids; UMANAGER is a manager, everybody else an agent."""
    await seed_ids(world)
    assert (await command(world, f"user role {MANAGER} manager")).ok


async def seed_ids(world) -> None:
    """A contact, conversation and message with high ids (their own test data, kept)."""
    now = datetime.now(UTC)

    def write(tx) -> None:
        tx.conn.execute(
            insert(Contact).values(
                id=SEED_CONTACT,
                platform="telegram",
                account="seed",
                chat_id="5550100",
                display_name="Seed",
                first_seen=now,
                last_seen=now,
                message_count=1,
            )
        )
        tx.conn.execute(
            insert(Conversation).values(
                id=SEED_CONVERSATION, contact_id=SEED_CONTACT, status="closed", opened_at=now
            )
        )
        tx.conn.execute(
            insert(Message).values(
                id=SEED_MESSAGE,
                conversation_id=SEED_CONVERSATION,
                direction="in",
                platform="telegram",
                account="seed",
                text="seed",
                sent_at=now,
                deleted=False,
            )
        )

    await services_of(world).write(write)


async def settled(world) -> None:
    """Wait until the bridge has carried out everything it queued."""

    async def idle():
        return await world.sql("select count(*) from outbox where state = 'pending'") == [(0,)]

    await eventually(idle, message="an empty outbox")


async def every_row(world) -> dict[str, list[str]]:
    """Every row of every table of the schema, each as one string (bytes decoded)."""

    def show(value: Any) -> str:
        return value.decode("latin-1") if isinstance(value, bytes) else repr(value)

    def read(conn) -> dict[str, list[str]]:
        return {
            table.name: [" | ".join(show(v) for v in row) for row in conn.execute(select(table))]
            for table in Base.metadata.sorted_tables
        }

    return await services_of(world).db.run_read(read)


async def traces(world, *needles: object) -> list[str]:
    """Rows (as `table: row`) that contain any of the needles."""
    words = [str(n) for n in needles]
    rows = await every_row(world)
    return [
        f"{table}: {row}"
        for table, found in rows.items()
        for row in found
        if any(word in row for word in words)
    ]


async def ids_of(world, chat_id: int | str) -> tuple[int, list[int], list[int]]:
    """A contact's id, its conversations' ids and its messages' ids."""
    [(contact,)] = await world.sql(f"select id from contacts where chat_id = '{chat_id}'")
    conversations = [
        c for (c,) in await world.sql(f"select id from conversations where contact_id = {contact}")
    ]
    messages = [
        m
        for (m,) in await world.sql(
            "select m.id from messages m join conversations c on c.id = m.conversation_id"
            f" where c.contact_id = {contact}"
        )
    ]
    return int(contact), conversations, messages


def bot_posts(world, root) -> list:
    """What the bridge posted in a thread (besides the root), deleted ones included."""
    return [
        m
        for m in world.slack.messages
        if m.channel == root.channel and m.thread_ts == root.ts and m.ts != root.ts and m.bot_id
    ]


async def zelda_writes(world, text: str = f"Parcel {CASE} never arrived"):
    await world.says(ZELDA, text, **ZELDA_PROFILE)
    root = await world.thread_of(ZELDA)
    await eventually(lambda: text in world.texts(root), message="the mirrored message")
    return root


async def bob_writes(world):
    await world.says(BOB, "Hi, do you open on Sundays?", first_name="Bob")
    return await world.thread_of(BOB)


async def full_history(world):
    """Zelda's two conversations with everything the bridge stores about a contact: texts, a
    photo, a reply, a note, a closed thread, a channel membership and a blacklist entry.
    Returns both thread roots, oldest first."""
    first = await zelda_writes(world)
    await world.customer(world.tg.photo_update(ZELDA, PNG, caption=f"Label of {CASE}"))
    await eventually(lambda: any(m.files for m in world.replies(first)), message="the photo")
    await world.slack.agent_says(first.channel, first.ts, f"We resend {CASE} today")
    await eventually(lambda: world.tg.messages_to(ZELDA), message="the reply")
    await world.slack.agent_says(first.channel, first.ts, f"// Zelda phoned about {CASE}")
    await world.slack.agent_says(first.channel, first.ts, "!close")
    await eventually(lambda: any("closed by" in t for t in world.texts(first)), message="closed")
    await world.says(ZELDA, f"Still waiting for {CASE}", **ZELDA_PROFILE)
    second = await eventually(
        lambda: (r := world.root_for(ZELDA)) is not None and r.ts != first.ts and r,
        message="a second thread",
    )
    contact, _, _ = await ids_of(world, ZELDA)
    assert (await command(world, "channel create news")).ok
    added = await command(world, f'channel add news #{contact} --consent "asked by phone"')
    assert added.ok, added.text
    blocked = await command(world, f"blacklist add #{contact} out asked us to stop for {CASE}")
    assert blocked.ok, blocked.text
    await settled(world)
    return first, second


# -- asking first ----------------------------------------------------------------------------


async def test_without_confirm_it_says_what_would_go_and_changes_nothing(world):
    root = await zelda_writes(world)
    await world.slack.agent_says(root.channel, root.ts, f"Looking into {CASE}")
    await eventually(lambda: world.tg.messages_to(ZELDA), message="the reply")
    await settled(world)
    contact, _, _ = await ids_of(world, ZELDA)
    before = await every_row(world)
    reply = await command(world, "contact forget Quackenbush", user_name="Ada")
    assert reply.ok
    assert reply.title == (
        f"This erases #{contact} Zelda Quackenbush and everything stored about them:"
    )
    assert reply.lines[0] == "1 conversation with 2 messages"
    assert (
        reply.lines[1] == "1 staff thread (each keeps a tombstone) and 2 links to thread messages"
    )
    assert reply.lines[2] == "0 channel memberships, no blacklist entry"
    assert re.fullmatch(
        r"\d+ queued or finished delivery jobs \(nothing more is sent\)", reply.lines[3]
    )
    assert reply.lines[4] == (
        f"It cannot be undone. To erase, type `/contact forget #{contact} --confirm`"
    )
    assert await every_row(world) == before
    assert world.slack.count("chat.delete") == 0 and not world.slack.deleted_files
    assert f"Looking into {CASE}" in world.texts(root)


async def test_agents_and_managers_may_not_forget_a_contact(world):
    await zelda_writes(world)
    contact, _, _ = await ids_of(world, ZELDA)
    for user, role in ((AGENT, "agent"), (MANAGER, "manager")):
        reply = await command(world, f"contact forget #{contact} --confirm", user=user)
        assert not reply.ok
        assert reply.title == "/contact forget needs the admin role"
        assert reply.lines == (
            f"You have the {role} role. An admin can change it with `/user role {user} admin`.",
        )
    assert await world.sql(f"select display_name from contacts where id = {contact}") == [
        ("Zelda Quackenbush",)
    ]


async def test_an_ambiguous_name_erases_nobody(world):
    await zelda_writes(world)
    await world.says(7310099, "Hello", first_name="Zelda", last_name="Berg")
    await world.thread_of(7310099)
    reply = await command(world, "contact forget zelda --confirm")
    assert not reply.ok and reply.title == "zelda matches several contacts"
    assert await world.sql("select count(*) from contacts where display_name like 'Zelda%'") == [
        (2,)
    ]


# -- erasing ---------------------------------------------------------------------------------


async def test_forgetting_leaves_no_trace_in_any_table(world):
    await full_history(world)
    bob = await bob_writes(world)
    await settled(world)
    contact, conversations, messages = await ids_of(world, ZELDA)
    assert len(conversations) == 2 and len(messages) >= 5
    needles = (ZELDA, "Zelda", "Quackenbush", "zq_parcel", CASE, contact, *conversations, *messages)
    # The search finds Zelda everywhere she is kept, so it would see a trace if one were left.
    found = {row.partition(":")[0] for row in await traces(world, *needles)}
    assert found >= {
        "contacts",
        "conversations",
        "messages",
        "staff_threads",
        "staff_refs",
        "outbox",
        "channel_members",
        "blacklist",
    }

    reply = await command(world, f"contact forget {ZELDA} --confirm", user_name="Ada")
    assert reply.ok and reply.title == f"Contact #{contact} erased", reply.text
    assert reply.lines[0] == f"2 conversations with {len(messages)} messages"
    assert reply.lines[2] == "1 channel membership, the blacklist entry"
    await settled(world)
    assert await traces(world, *needles) == []
    # Everybody else is untouched.
    assert await world.sql("select display_name from contacts order by id") == [
        ("Seed",),
        ("Bob",),
    ]
    assert "Hi, do you open on Sundays?" in world.texts(bob)
    assert await world.sql("select name from channels") == [("news",)]


async def test_forgetting_turns_each_thread_into_a_tombstone(world):
    first, second = await full_history(world)
    staff_first = [m for m in world.replies(first) if m.user]
    assert [m.text for m in staff_first] == [
        f"We resend {CASE} today",
        f"// Zelda phoned about {CASE}",
        "!close",
    ]
    ours = bot_posts(world, first) + bot_posts(world, second)
    files = [f["id"] for m in ours for f in m.files]
    assert files, "the photo was posted as a file by the bridge"

    contact, _, _ = await ids_of(world, ZELDA)
    reply = await command(world, f"contact forget #{contact} --confirm", user_name="Ada")
    assert reply.ok, reply.text

    def tombstone(root) -> str:
        text = world.slack.find(root.channel, root.ts).text
        return text if TOMBSTONE.match(text) else ""

    first_text = await eventually(lambda: tombstone(first), message="the first tombstone")
    second_text = await eventually(lambda: tombstone(second), message="the second tombstone")
    assert first_text.endswith(
        " 3 messages written by staff stay in this thread: their authors or a workspace admin"
        " can delete them."
    )
    assert TOMBSTONE.sub("", second_text) == ""  # nobody wrote in the second thread
    for root in (first, second):
        shown = world.slack.find(root.channel, root.ts)
        assert "Zelda" not in str(shown.blocks) and str(ZELDA) not in str(shown.blocks)
    assert all(m.deleted for m in ours)
    assert sorted(world.slack.deleted_files) == sorted(files)
    assert all(world.slack.file_bytes(f) is None for f in files)
    # What staff wrote stays: the bridge may not delete it (the tombstone says so).
    assert world.replies(first) == staff_first
    assert world.replies(second) == []


async def test_the_customer_writing_again_is_a_new_contact_in_a_new_thread(world):
    old = await zelda_writes(world)
    await world.slack.agent_says(old.channel, old.ts, f"We resend {CASE} today")
    await settled(world)
    contact, [conversation], _ = await ids_of(world, ZELDA)
    reply = await command(world, f"contact forget #{contact} --confirm", user_name="Ada")
    assert reply.ok, reply.text
    await eventually(
        lambda: TOMBSTONE.match(world.slack.find(old.channel, old.ts).text), message="tombstone"
    )

    await world.says(ZELDA, "Hello again", **ZELDA_PROFILE)
    new = await eventually(
        lambda: (r := world.root_for(ZELDA)) is not None and r.ts != old.ts and r,
        message="a new thread",
    )
    await eventually(lambda: world.texts(new) == ["Hello again"], message="the mirror")
    await settled(world)
    assert "previous conversation" not in str(new.blocks)
    assert old.ts.replace(".", "") not in str(new.blocks)
    assert all(m.user for m in world.replies(old))  # nothing new from the bridge in the old one
    new_contact, [new_conversation], _ = await ids_of(world, ZELDA)
    assert new_contact != contact and new_conversation != conversation
    card = await command(world, f"contact show #{new_contact}", user=AGENT)
    fields = dict(card.fields)
    assert fields["Messages"] == "1" and fields["Opt-in"].startswith("first message (")
    assert await world.sql(
        f"select previous_id from conversations where id = {new_conversation}"
    ) == [(None,)]
    # The old thread is no way into the new conversation: a reply there reaches nobody.
    await world.slack.agent_says(old.channel, old.ts, "Anyone there?")
    await settled(world)
    assert [m.text for m in world.tg.messages_to(ZELDA)] == [f"We resend {CASE} today"]


# -- SMS: files the bridge served to Twilio --------------------------------------------------


CUSTOMER = "+14155550123"


class TestSmsContact:
    """An SMS customer: files an agent sends them wait at the bridge's URLs for Twilio."""

    @pytest.fixture
    async def world(self, tmp_path):
        w = await start_world(tmp_path, sms=FakeTwilio())
        yield w
        await stop_world(w)

    async def test_forgetting_removes_the_files_served_to_twilio(self, world):
        assert await world.sms.customer_texts(CUSTOMER, f"Where is {CASE}?") == 200
        root = await world.thread_of(CUSTOMER)
        label = (f"label-{CASE}.png", PNG, "image/png")
        await world.slack.agent_says(root.channel, root.ts, "Here is the label", files=[label])
        [sent] = await eventually(lambda: world.sms.messages_to(CUSTOMER), message="the MMS")
        assert sent["_media"] == [(PNG, "image/png")]
        await settled(world)
        assert await traces(world, f"label-{CASE}")  # the file waits at its URL for Twilio
        contact, _, _ = await ids_of(world, CUSTOMER)
        sids = [sid for (sid,) in await world.sql("select external_id from messages") if sid]
        assert sent["_sid"] in sids

        reply = await command(world, f"contact forget {CUSTOMER} --confirm", user_name="Ada")
        assert reply.ok and reply.title == f"Contact #{contact} erased", reply.text
        await settled(world)
        needles = (CUSTOMER, CUSTOMER[1:], CASE, "QX-5521 label", contact, *sids)
        assert await traces(world, *needles) == []
        async with aiohttp.ClientSession() as http, http.get(sent["MediaUrl"][0]) as answer:
            assert answer.status == 404
