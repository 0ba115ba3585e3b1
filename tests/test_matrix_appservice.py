"""Matrix application-service mode against a real Synapse: each customer is a Matrix user of
their own (their messages and their reactions come from it), the homeserver pushes
transactions (checked by token), and the bridge ignores its own users' events."""

from __future__ import annotations

import asyncio
import hmac
import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, redirect_stdout
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest

import run
from bridge.config import Settings
from connectors.matrix_appservice import registration
from tests.commands_kit import command
from tests.harness import eventually
from tests.matrix_user import MatrixUser, body_of, relation_of
from tests.synapse import Synapse
from tests.world import free_port, start_world, stop_world

ANNA = 7170001
AS_TOKEN = "as-token-for-tests-0123456789"
HS_TOKEN = "hs-token-for-tests-9876543210"
BOT = "@bridge:localhost"


def puppet_of(customer: str) -> str:
    """The user a customer appears as: a hash keyed with the as_token (no phone numbers)."""
    digest = hmac.new(AS_TOKEN.encode(), customer.encode(), "sha256").hexdigest()
    return f"@customer_{digest[:32]}:localhost"


def appservice_settings(port: int, room: str = "!unused:localhost") -> dict:
    return {
        "homeserver": "http://unused",
        "user_id": BOT,
        "room": room,
        "mode": "appservice",
        "as_token": AS_TOKEN,
        "hs_token": HS_TOKEN,
    }


@asynccontextmanager
async def appservice_world(
    tmp_path, *, matrix: dict | None = None, **world: Any
) -> AsyncIterator[tuple[Any, MatrixUser, str, int]]:
    """Registration file first, then the homeserver, then the bridge on the promised port;
    `matrix` adds settings, `world` goes to start_world. Yields (world, staff, room, port)."""
    port = free_port()
    settings = Settings.model_validate(
        {"bridge": {"public_url": f"http://127.0.0.1:{port}"}, "matrix": appservice_settings(port)}
    )
    text, _ = registration(settings)
    path = tmp_path / "support-bridge.yaml"
    path.write_text(text)
    server = Synapse.start(tmp_path / "hs", app_service_config_files=[path])
    staff = await MatrixUser.register(server, displayname="Maria Staff")
    room = await staff.create_room("support", invite=[BOT])
    running = await start_world(
        tmp_path / "bridge",
        port=port,
        matrix={**appservice_settings(port, room), "homeserver": server.base_url, **(matrix or {})},
        **world,
    )
    try:
        yield running, staff, room, port
    finally:
        await stop_world(running)
        await staff.close()
        server.stop()


@pytest.fixture
async def asworld(tmp_path):
    """A homeserver with the bridge as its application service."""
    async with appservice_world(tmp_path) as running:
        yield running


async def test_a_customer_speaks_as_their_own_matrix_user_and_replies_reach_them(asworld):
    world, staff, room, _ = asworld
    await world.says(ANNA, "Where is my parcel?", first_name="Anna", last_name="Schmidt")
    puppet = puppet_of(f"telegram_{ANNA}")
    said = await staff.wait_for_event(
        room, lambda e: e.get("sender") == puppet and body_of(e) == "Where is my parcel?", 30
    )
    root = relation_of(said)["event_id"]
    card = await staff.event(room, root)
    assert card["sender"] == BOT and "Anna Schmidt" in body_of(card)
    profile = await staff.request(
        "GET", f"/_matrix/client/v3/profile/{quote(puppet, safe='')}/displayname"
    )
    assert profile["displayname"] == "Anna Schmidt"
    await staff.send_text(room, "It left today.", thread_root=root)
    sent = await eventually(lambda: world.tg.messages_to(ANNA), timeout=40, message="the reply")
    assert [m.text for m in sent] == ["It left today."]
    # The customer's own events come back in transactions too: they are not replies.
    await world.says(ANNA, "Thanks!", first_name="Anna", last_name="Schmidt")
    await staff.wait_for_event(room, lambda e: body_of(e) == "Thanks!", 30)
    await asyncio.sleep(1.0)
    assert [m.text for m in world.tg.messages_to(ANNA)] == ["It left today."]


async def test_a_customers_reaction_comes_from_their_own_matrix_user(asworld):
    world, staff, room, _ = asworld
    await world.says(ANNA, "Where is my parcel?", first_name="Anna", last_name="Schmidt")
    puppet = puppet_of(f"telegram_{ANNA}")
    said = await staff.wait_for_event(
        room, lambda e: e.get("sender") == puppet and body_of(e) == "Where is my parcel?", 30
    )
    root = relation_of(said)["event_id"]
    reply = await staff.send_text(room, "It left today.", thread_root=root)
    [sent] = await eventually(lambda: world.tg.messages_to(ANNA), timeout=40, message="the reply")
    await world.customer(world.tg.reaction_update(ANNA, sent.message_id, ["👍"]))

    async def shown() -> bool | None:
        return (puppet, "👍") in await staff.reactions(room, reply) or None

    await staff.wait_for(shown, what="the customer's reaction")
    assert (BOT, "👍") not in await staff.reactions(room, reply)
    await world.customer(world.tg.reaction_update(ANNA, sent.message_id, [], ["👍"]))

    async def gone() -> bool | None:
        return (puppet, "👍") not in await staff.reactions(room, reply) or None

    await staff.wait_for(gone, what="the reaction taken back")


@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), ({"Authorization": "Bearer wrong"}, 403)],
    ids=["no-token", "wrong-token"],
)
async def test_transactions_without_the_homeservers_token_are_refused(asworld, headers, status):
    world, _, room, port = asworld
    event = {
        "type": "m.room.message",
        "room_id": room,
        "sender": "@mallory:localhost",
        "event_id": "$forged",
        "content": {
            "msgtype": "m.text",
            "body": "!user role @mallory:localhost admin",
        },
    }
    async with aiohttp.ClientSession() as http:
        async with http.put(
            f"http://127.0.0.1:{port}/matrix/_matrix/app/v1/transactions/t1",
            json={"events": [event]},
            headers=headers,
        ) as response:
            assert response.status == status
    assert await world.sql("select user_id from staff_roles") == []


def test_registration_command_prints_the_file_and_the_settings_to_add(tmp_path, capsys):
    config = tmp_path / "bridge.toml"
    config.write_text(
        '[bridge]\npublic_url = "https://bridge.example.org"\n'
        '[matrix]\nhomeserver = "https://matrix.example.org"\n'
        'user_id = "@support:example.org"\nroom = "!r:example.org"\naccess_token = "x"\n'
    )
    out = io.StringIO()
    with redirect_stdout(out):
        assert run.main(["--config", str(config), "matrix-registration"]) == 0
    text = out.getvalue()
    assert 'url: "https://bridge.example.org/matrix"' in text
    assert 'sender_localpart: "support"' in text
    assert 'regex: "@customer_.*:example\\\\.org"' in text
    notes = capsys.readouterr().err
    assert 'mode = "appservice"' in notes and "as_token = " in notes and "hs_token = " in notes


async def test_forgetting_a_customer_redacts_their_user_s_events_and_name(asworld):
    world, staff, room, _ = asworld
    await world.says(ANNA, "I live at Lindenstrasse 5", first_name="Anna", last_name="Schmidt")
    puppet = puppet_of(f"telegram_{ANNA}")
    said = await staff.wait_for_event(
        room, lambda e: e.get("sender") == puppet and e["type"] == "m.room.message", 30
    )
    root = relation_of(said)["event_id"]
    assert (await command(world, f"user role {staff.user_id} admin")).ok
    [(contact_id,)] = await world.sql("select id from contacts")
    await staff.send_text(room, f"!contact forget #{contact_id} --confirm")

    async def redacted():
        return (await staff.event(room, said["event_id"]))["content"] == {} or None

    await staff.wait_for(redacted, timeout=40, what="the customer's event redacted")
    await staff.wait_for_thread_event(
        room, root, lambda e: "erased" in (body_of(e) or "").lower(), timeout=30
    )
    profile = await staff.request(
        "GET", f"/_matrix/client/v3/profile/{quote(puppet, safe='')}/displayname"
    )
    assert profile["displayname"] == "Erased customer"
