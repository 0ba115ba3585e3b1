"""Matrix as the staff surface, against a real Synapse: threads, replies, edits, media,
commands, both surfaces at once, a restart and the homeserver's rate limit."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from bridge.app import SURFACES
from tests.commands_kit import command
from tests.harness import eventually, start_bridge
from tests.matrix_user import MatrixUser, body_of, relation_of
from tests.synapse import RateLimit, Synapse
from tests.world import World, start_world, stop_world

ANNA = 6160001
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8


@dataclass
class MatrixWorld:
    """The bridge with Telegram and Slack fakes, plus a real homeserver with a staff member."""

    world: World
    staff: MatrixUser
    bot: MatrixUser
    room: str

    async def root_for(self, chat_id: int) -> dict:
        """The contact card the bridge posted for this customer (the thread's root)."""

        def is_card(event: dict) -> bool:
            return (
                event.get("sender") == self.bot.user_id
                and event.get("type") == "m.room.message"
                and not relation_of(event)
                and f"telegram id {chat_id}" in (body_of(event) or "")
            )

        return await self.staff.wait_for_event(self.room, is_card, timeout=20)

    async def thread_texts(self, root: dict) -> list[str]:
        """Bodies of the events in a thread, oldest first."""
        return [body_of(e) or "" for e in await self.staff.thread(self.room, root["event_id"])]


async def start_matrix_world(
    tmp_path,
    server: Synapse,
    *,
    bot: MatrixUser | None = None,
    staff: MatrixUser | None = None,
    room: str | None = None,
) -> MatrixWorld:
    bot = bot or await MatrixUser.register(server, prefix="bridge", displayname="Support Bridge")
    staff = staff or await MatrixUser.register(server, displayname="Maria Staff")
    if room is None:
        room = await staff.create_room("support", invite=[bot.user_id])
    world = await start_world(
        tmp_path,
        matrix={
            "homeserver": server.base_url,
            "user_id": bot.user_id,
            "access_token": bot.access_token,
            "room": room,
        },
    )
    await synced(world)
    return MatrixWorld(world, staff, bot, room)


async def synced(world: World) -> None:
    """Wait until the bridge has its sync position: what is sent after that is news to it."""
    surface = next(s for s in world.bridge.app[SURFACES] if s.name == "matrix")
    await asyncio.wait_for(surface.synced.wait(), 30)


@pytest.fixture
async def mx(tmp_path, synapse):
    mw = await start_matrix_world(tmp_path, synapse)
    yield mw
    await stop_world(mw.world)
    await mw.staff.close()
    await mw.bot.close()


async def anna_writes(mx: MatrixWorld, text: str = "Where is my parcel?") -> dict:
    await mx.world.says(ANNA, text, first_name="Anna", last_name="Schmidt", username="anna_s")
    return await mx.root_for(ANNA)


async def test_a_customer_gets_a_thread_with_the_contact_card_and_their_message(mx):
    root = await anna_writes(mx)
    assert "Anna Schmidt" in body_of(root)
    assert "<h4>Anna Schmidt</h4>" in root["content"]["formatted_body"]
    first = await mx.staff.wait_for_thread_event(
        mx.room, root["event_id"], lambda e: "Where is my parcel?" in (body_of(e) or "")
    )
    assert body_of(first) == "Anna Schmidt: Where is my parcel?"
    relation = relation_of(first)
    assert relation["rel_type"] == "m.thread" and relation["event_id"] == root["event_id"]
    # Clients without threads show it as a reply to the card.
    assert relation["m.in_reply_to"]["event_id"] == root["event_id"]


async def test_a_reply_in_the_thread_reaches_the_customer_and_is_marked_sent(mx):
    root = await anna_writes(mx)
    reply = await mx.staff.send_text(mx.room, "It left today.", thread_root=root["event_id"])
    sent = await eventually(lambda: mx.world.tg.messages_to(ANNA), message="the reply")
    assert [m.text for m in sent] == ["It left today."]

    async def marked():
        return ("✅" in [k for _, k in await mx.staff.reactions(mx.room, reply)]) or None

    await mx.staff.wait_for(marked, what="the sent reaction")


async def test_a_note_stays_internal(mx):
    root = await anna_writes(mx)
    await mx.staff.send_text(mx.room, "// call her back tomorrow", thread_root=root["event_id"])
    await mx.staff.send_text(mx.room, "Hello Anna", thread_root=root["event_id"])
    await eventually(lambda: mx.world.tg.messages_to(ANNA), message="the reply")
    assert [m.text for m in mx.world.tg.messages_to(ANNA)] == ["Hello Anna"]


async def test_an_edit_and_a_redaction_of_a_reply_reach_telegram(mx):
    root = await anna_writes(mx)
    reply = await mx.staff.send_text(mx.room, "It left todya.", thread_root=root["event_id"])
    [sent] = await eventually(lambda: mx.world.tg.messages_to(ANNA), message="the reply")
    await eventually(lambda: mx.world.tg.messages_to(ANNA)[0].message_id, message="the Telegram id")
    await asyncio.sleep(0.3)  # the send's answer is recorded before the edit is taken
    await mx.staff.edit(mx.room, reply, "It left today.")
    await eventually(lambda: sent.edited_texts == ["It left today."], message="the edit")
    await mx.staff.redact(mx.room, reply)
    await eventually(lambda: sent.deleted, message="the deletion")


async def test_customer_photo_is_uploaded_and_staff_file_reaches_the_customer(mx):
    await mx.world.customer(mx.world.tg.photo_update(ANNA, PNG, "my label", first_name="Anna"))
    root = await mx.root_for(ANNA)
    image = await mx.staff.wait_for_thread_event(
        mx.room, root["event_id"], lambda e: e["content"].get("msgtype") == "m.image"
    )
    assert await mx.staff.download(image["content"]["url"]) == PNG
    await mx.staff.send_media(
        mx.room, b"%PDF-1.4 invoice", "application/pdf", "invoice.pdf", thread_root=root["event_id"]
    )
    sent = await eventually(
        lambda: [m for m in mx.world.tg.messages_to(ANNA) if m.file_bytes], message="the file"
    )
    assert sent[0].file_bytes == b"%PDF-1.4 invoice" and sent[0].file_name == "invoice.pdf"


async def test_thread_commands_answer_in_the_thread_and_edit_the_card(mx):
    root = await anna_writes(mx)
    await mx.staff.send_text(mx.room, "!close", thread_root=root["event_id"])
    answer = await mx.staff.wait_for_thread_event(
        mx.room, root["event_id"], lambda e: "closed" in (body_of(e) or "").lower()
    )
    assert answer["sender"] == mx.bot.user_id and answer["content"]["msgtype"] == "m.notice"

    async def card_closed():
        content = await mx.staff.current_content(mx.room, root["event_id"])
        return "Status: closed" in content.get("body", "") or None

    await mx.staff.wait_for(card_closed, what="the card edited to closed")
    assert mx.world.tg.messages_to(ANNA) == []


async def test_room_commands_answer_in_the_room_with_roles_checked(mx):
    await anna_writes(mx)
    await mx.staff.send_text(mx.room, "!contact find schmidt")
    found = await mx.staff.wait_for_event(
        mx.room, lambda e: "1 contact matches schmidt" in (body_of(e) or "")
    )
    assert not relation_of(found)
    assert "<b>1 contact matches schmidt</b>" in found["content"]["formatted_body"]
    await mx.staff.send_text(mx.room, "!channel create news --join JOIN-NEWS")
    refused = await mx.staff.wait_for_event(
        mx.room, lambda e: "needs the manager role" in (body_of(e) or "")
    )
    assert refused["sender"] == mx.bot.user_id
    assert await mx.world.sql("select name from channels") == []


async def test_a_reply_from_slack_shows_in_the_matrix_thread_and_goes_out_once(mx):
    root = await anna_writes(mx)
    slack_root = await mx.world.thread_of(ANNA)
    await mx.world.slack.agent_says(slack_root.channel, slack_root.ts, "Sent from Slack")
    await mx.staff.wait_for_thread_event(
        mx.room, root["event_id"], lambda e: "Sent from Slack" in (body_of(e) or "")
    )
    await mx.staff.send_text(mx.room, "Sent from Matrix", thread_root=root["event_id"])
    await eventually(
        lambda: any("Sent from Matrix" in t for t in mx.world.texts(slack_root)),
        message="the Matrix reply in Slack",
    )
    await eventually(lambda: len(mx.world.tg.messages_to(ANNA)) == 2, message="both replies")
    await asyncio.sleep(0.5)
    assert [m.text for m in mx.world.tg.messages_to(ANNA)] == [
        "Sent from Slack",
        "Sent from Matrix",
    ]


async def test_replies_written_while_the_bridge_was_down_go_out_once_after_restart(mx):
    root = await anna_writes(mx)
    await mx.staff.send_text(mx.room, "before", thread_root=root["event_id"])
    await eventually(lambda: mx.world.tg.messages_to(ANNA), message="the first reply")
    await asyncio.sleep(0.5)  # its sync position is stored
    settings, url = mx.world.bridge.settings, mx.world.bridge.url
    await mx.world.bridge.stop()
    for text in ("while down 1", "while down 2"):
        await mx.staff.send_text(mx.room, text, thread_root=root["event_id"])
    mx.world.bridge = await start_bridge(settings, port=int(url.rsplit(":", 1)[1]))
    await eventually(
        lambda: len(mx.world.tg.messages_to(ANNA)) >= 3, message="the replies sent while down"
    )
    await asyncio.sleep(1.0)
    assert [m.text for m in mx.world.tg.messages_to(ANNA)] == [
        "before",
        "while down 1",
        "while down 2",
    ]


async def test_homeserver_rate_limit_delays_but_loses_nothing(tmp_path):
    # One message a second, two at once: tight enough that the bridge's sends exceed it even
    # when a busy machine slows each of them down.
    server = Synapse.start(tmp_path / "hs", rc_message=RateLimit(1, 2))
    try:
        mw = await start_matrix_world(tmp_path / "bridge", server)
        try:
            texts = [f"message {n}" for n in range(12)]
            for text in texts:
                await mw.world.says(ANNA, text, first_name="Anna")
            root = await mw.root_for(ANNA)

            async def all_there():
                joined = "\n".join(await mw.thread_texts(root))
                return all(t in joined for t in texts) or None

            await mw.staff.wait_for(all_there, timeout=90, what="every message in the thread")
            joined = "\n".join(await mw.thread_texts(root))
            positions = [
                joined.index(t + "\n") if t + "\n" in joined else joined.index(t) for t in texts
            ]
            assert positions == sorted(positions)
            assert all(joined.count(t + "\n") + joined.endswith(t) <= 1 for t in texts)
            # The homeserver did refuse sends on the way (its access log shows the 429s).
            log = server.log_file.read_text(errors="replace")
            assert ' 429 "PUT /_matrix/client/v3/rooms/' in log
        finally:
            await stop_world(mw.world)
            await mw.staff.close()
            await mw.bot.close()
    finally:
        server.stop()


async def test_forgetting_a_contact_redacts_the_matrix_thread_and_leaves_a_tombstone(mx):
    root = await anna_writes(mx, "My address is Lindenstrasse 5")
    await mx.staff.wait_for_thread_event(
        mx.room, root["event_id"], lambda e: "Lindenstrasse" in (body_of(e) or "")
    )
    assert (await command(mx.world, f"user role {mx.staff.user_id} admin")).ok
    [(contact_id,)] = await mx.world.sql("select id from contacts")
    await mx.staff.send_text(mx.room, f"!contact forget #{contact_id} --confirm")

    def tombstone(event: dict) -> bool:
        return event["sender"] == mx.bot.user_id and "erased" in (body_of(event) or "").lower()

    await mx.staff.wait_for_thread_event(mx.room, root["event_id"], tombstone, timeout=30)
    card = await mx.staff.event(mx.room, root["event_id"])
    assert card["content"] == {}  # redacted
    for event in await mx.staff.thread(mx.room, root["event_id"]):
        assert "Lindenstrasse" not in str(event.get("content"))
    assert await mx.world.sql("select count(*) from messages") == [(0,)]
