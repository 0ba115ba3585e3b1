"""Matrix with `[matrix] encryption = true`, against a real Synapse: an encrypted room whose
two staff members use encrypting clients; messages, edits, redactions and images both ways,
and a restart that keeps the bot's device."""

from __future__ import annotations

import pytest

import connectors.matrix_crypto
from bridge.types import ThreadRef
from connectors.matrix_render import MARKER
from tests import matrix_e2e_kit
from tests.harness import eventually, start_bridge
from tests.matrix_e2e_kit import ANNA, PNG, E2eWorld
from tests.matrix_e2e_user import E2eStaff
from tests.matrix_user import MatrixUser
from tests.synapse import Synapse
from tests.test_matrix_surface import synced
from tests.world import start_world, stop_world

e2e = matrix_e2e_kit.e2e  # the fixture


async def test_customer_and_staff_talk_through_an_encrypted_room(e2e):
    await e2e.world.says(ANNA, "Where is my parcel?", first_name="Anna")
    root = (await e2e.card(e2e.maria))["event_id"]
    for staff in (e2e.maria, e2e.ben):
        first = await e2e.in_thread(staff, root, "Where is my parcel?")
        assert first["content"]["body"].endswith("Where is my parcel?")
        # What the bot posted went encrypted: the staff clients decrypted it.
        assert {root, first["event_id"]} <= staff.decrypted
    reply = await e2e.maria.reply(e2e.room, root, "It left today.")
    sent = await eventually(lambda: e2e.world.tg.messages_to(ANNA), message="the reply")
    assert [m.text for m in sent] == ["It left today."]

    await e2e.maria.edit(e2e.room, reply, "It left this morning.")
    await eventually(
        lambda: e2e.world.tg.messages_to(ANNA)[0].edited_texts or None, message="the edit"
    )
    assert e2e.world.tg.messages_to(ANNA)[0].edited_texts[-1] == "It left this morning."

    await e2e.maria.redact(e2e.room, reply)
    await eventually(lambda: not e2e.world.tg.messages_to(ANNA), message="the deletion")
    assert e2e.maria.undecrypted == [] and e2e.ben.undecrypted == []


async def test_a_customers_reaction_goes_encrypted_into_the_room(e2e):
    await e2e.world.says(ANNA, "Where is my parcel?", first_name="Anna")
    root = (await e2e.card(e2e.maria))["event_id"]
    reply = await e2e.maria.reply(e2e.room, root, "It left today.")
    [sent] = await eventually(lambda: e2e.world.tg.messages_to(ANNA), message="the reply")
    await e2e.world.customer(e2e.world.tg.reaction_update(ANNA, sent.message_id, ["👍"]))

    def reaction(event: dict) -> bool:
        relation = event["content"].get("m.relates_to") or {}
        return (
            event.get("type") == "m.reaction"
            and relation.get("event_id") == reply
            and relation.get("key") == "👍"
        )

    shown = await e2e.ben.wait_for(reaction)
    # It came as an m.room.encrypted event: only the members' devices know which emoji; the
    # bot's own delivery mark on the reply went the same way.
    assert shown["event_id"] in e2e.ben.decrypted
    mark = await e2e.ben.wait_for(
        lambda e: e.get("type") == "m.reaction"
        and (e["content"].get("m.relates_to") or {}).get("key") == "✅"
    )
    assert mark["event_id"] in e2e.ben.decrypted


async def test_images_go_both_ways_as_encrypted_files(e2e):
    await e2e.world.customer(e2e.world.tg.photo_update(ANNA, PNG, "my label", first_name="Anna"))
    root = (await e2e.card(e2e.ben))["event_id"]
    image = await e2e.ben.wait_for(lambda e: e["content"].get("msgtype") == "m.image")
    assert "url" not in image["content"]
    assert await e2e.ben.download(image["content"]["file"]) == PNG

    await e2e.ben.send_image(e2e.room, root, PNG, "label.png")
    sent = await eventually(
        lambda: [m for m in e2e.world.tg.messages_to(ANNA) if m.file_bytes], message="the image"
    )
    assert sent[0].file_bytes == PNG


@pytest.mark.parametrize("e2e", ["sqlite", "postgresql", "password"], indirect=True)
async def test_a_restart_keeps_the_bots_device_and_nothing_is_undecryptable(e2e):
    await e2e.world.says(ANNA, "Hello?", first_name="Anna")
    root = (await e2e.card(e2e.maria))["event_id"]
    await e2e.maria.reply(e2e.room, root, "before")
    await eventually(lambda: e2e.world.tg.messages_to(ANNA), message="the first reply")
    olm = e2e.surface().client.olm
    device, identity = e2e.surface().client.device_id, olm.account.identity_keys

    settings, url = e2e.world.bridge.settings, e2e.world.bridge.url
    await e2e.world.bridge.stop()
    await e2e.maria.reply(e2e.room, root, "while down")
    e2e.world.bridge = await start_bridge(settings, port=int(url.rsplit(":", 1)[1]))
    await synced(e2e.world)
    client = e2e.surface().client
    assert (client.device_id, client.olm.account.identity_keys) == (device, identity)

    await eventually(
        lambda: len(e2e.world.tg.messages_to(ANNA)) >= 2 or None, message="the reply while down"
    )
    await e2e.world.says(ANNA, "Thanks, and after?", first_name="Anna")
    for staff in (e2e.maria, e2e.ben):
        await e2e.in_thread(staff, root, "Thanks, and after?")
    await e2e.ben.reply(e2e.room, root, "after")
    await eventually(
        lambda: len(e2e.world.tg.messages_to(ANNA)) >= 3 or None, message="the reply after"
    )
    assert [m.text for m in e2e.world.tg.messages_to(ANNA)] == ["before", "while down", "after"]
    assert e2e.maria.undecrypted == [] and e2e.ben.undecrypted == []


async def test_a_staff_member_who_joins_later_reads_new_threads(e2e, synapse, tmp_path):
    await e2e.world.says(ANNA, "First!", first_name="Anna")
    await e2e.card(e2e.maria)
    carl = await E2eStaff.login(synapse, tmp_path / "carl", "carl")
    try:
        await e2e.maria.invite(e2e.room, carl.user_id)
        await carl.join(e2e.room)
        await e2e.world.says(6160102, "I am new here", first_name="Bruno")
        root = (await e2e.card(carl, 6160102))["event_id"]
        # What was posted before he joined stays unreadable to him (room history is not
        # shared with new devices); the new thread is his to read.
        await e2e.in_thread(carl, root, "I am new here")
    finally:
        await carl.close()


async def test_a_message_the_bot_cannot_decrypt_gets_a_notice_and_reaches_nobody(e2e, monkeypatch):
    # Give up on missing keys at once (the bridge waits two minutes).
    monkeypatch.setattr(connectors.matrix_crypto, "KEY_WAIT_S", 0.0)
    await e2e.world.says(ANNA, "Hello?", first_name="Anna")
    root = (await e2e.card(e2e.maria))["event_id"]
    await e2e.maria.blacklist(e2e.bot.user_id)
    await e2e.maria.reply(e2e.room, root, "A secret the bot cannot read")
    notice = await e2e.in_thread(e2e.ben, root, "could not be decrypted")
    assert e2e.maria.user_id in notice["content"]["body"]
    assert notice["content"]["msgtype"] == "m.notice"
    assert e2e.world.tg.messages_to(ANNA) == []


async def test_a_room_switched_to_encrypted_while_running_gets_encrypted_posts(
    tmp_path, synapse: Synapse
):
    bot = await MatrixUser.register(synapse, prefix="bridge", displayname="Support Bridge")
    maria = await E2eStaff.login(synapse, tmp_path / "maria", "maria")
    room = await maria.create_room(invite=[bot.user_id])
    world = await start_world(
        tmp_path / "bridge",
        matrix={
            "homeserver": synapse.base_url,
            "user_id": bot.user_id,
            "access_token": bot.access_token,
            "room": room,
            "encryption": True,
        },
    )
    try:
        await synced(world)
        e2e = E2eWorld(world, maria, maria, bot, room)
        await world.says(ANNA, "In the clear", first_name="Anna")
        root = (await e2e.card(maria))["event_id"]
        assert root not in maria.decrypted
        await maria.encrypt_room(room)
        client = e2e.surface().client
        await eventually(
            lambda: room in client.encrypted_rooms or None, message="the encryption event"
        )
        await world.says(ANNA, "Now secret", first_name="Anna")
        secret = await e2e.in_thread(maria, root, "Now secret")
        assert secret["event_id"] in maria.decrypted
        await maria.reply(room, root, "Encrypted answer")
        sent = await eventually(lambda: world.tg.messages_to(ANNA), message="the reply")
        assert [m.text for m in sent] == ["Encrypted answer"]
    finally:
        await stop_world(world)
        await maria.close()
        await bot.close()


async def test_the_bridge_finds_its_own_encrypted_posts_again(e2e):
    # After a crash between a send and its record, the outbox looks for the post by its row.
    await e2e.world.says(ANNA, "Where is my parcel?", first_name="Anna")
    card = await e2e.card(e2e.maria)
    first = await e2e.in_thread(e2e.maria, card["event_id"], "Where is my parcel?")
    thread = ThreadRef(f"{e2e.room}/{card['event_id']}")
    surface = e2e.surface()
    assert await surface.find_thread(e2e.room, card["content"][MARKER]) == thread
    found = await surface.find_post(thread, first["content"][MARKER])
    assert found == f"{e2e.room}/{first['event_id']}"


async def test_a_message_whose_keys_come_late_reaches_the_customer(e2e):
    await e2e.world.says(ANNA, "Hello?", first_name="Anna")
    root = (await e2e.card(e2e.maria))["event_id"]
    await e2e.maria.blacklist(e2e.bot.user_id)
    key = e2e.maria.hold_room_key(e2e.room)
    await e2e.maria.reply(e2e.room, root, "Sent before the bot had the key")
    surface = e2e.surface()
    await eventually(lambda: surface._crypto._waiting or None, message="the waiting event")
    await e2e.maria.share_late(e2e.bot.user_id, key)
    sent = await eventually(lambda: e2e.world.tg.messages_to(ANNA), message="the late reply")
    assert [m.text for m in sent] == ["Sent before the bot had the key"]
