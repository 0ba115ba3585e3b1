"""`/contact forget` in an encrypted Matrix room: the room's next message starts a new room key,
and nothing of the erased thread waits in the bridge's crypto state for keys."""

from __future__ import annotations

import json

from tests import matrix_e2e_kit
from tests.commands_kit import command
from tests.harness import eventually
from tests.matrix_e2e_kit import ANNA, E2eWorld

e2e = matrix_e2e_kit.e2e  # the fixture


async def _waiting_stored(e2e: E2eWorld) -> list[dict]:
    """The undecryptable events the bridge keeps in its database until their keys come."""
    kept = await e2e.surface()._state.load_secret("waiting")
    return json.loads(kept) if kept else []


async def test_forgetting_a_contact_drops_its_waiting_events_and_starts_a_new_room_key(e2e):
    await e2e.world.says(ANNA, "Where is my parcel?", first_name="Anna")
    card = await e2e.card(e2e.ben)
    root = card["event_id"]
    # A reply of Maria's that the bot cannot decrypt waits for its key, in the database too.
    await e2e.maria.blacklist(e2e.bot.user_id)
    await e2e.maria.reply(e2e.room, root, "A secret about the parcel")
    stored = await eventually(lambda: _waiting_stored(e2e), message="a waiting event")
    assert [w["room"] for w in stored] == [e2e.room]
    await e2e.world.says(ANNA, "Anything new?", first_name="Anna")
    before = await e2e.in_thread(e2e.ben, root, "Anything new?")

    reply = await command(e2e.world, f"contact forget {ANNA} --confirm", user_name="Ada")
    assert reply.ok, reply
    tombstone = await e2e.in_thread(e2e.ben, root, "erased")

    assert e2e.surface()._crypto._waiting == {}
    assert await _waiting_stored(e2e) == []
    # What the bot posts from now on is sealed with a room key that opens nothing before.
    assert e2e.ben.sessions[tombstone["event_id"]] != e2e.ben.sessions[before["event_id"]]
