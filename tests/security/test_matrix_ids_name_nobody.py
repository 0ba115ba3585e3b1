"""Matrix application-service mode shows each customer as a Matrix user. Such ids cannot be
erased from a homeserver (membership history keeps them), so they must not contain the
customer's address: an SMS customer's phone number appears in no user id, before or after
`!contact forget`."""

from __future__ import annotations

import pytest

from bridge.config import Settings
from connectors.matrix import registration
from tests.commands_kit import command
from tests.fakes.twilio import FakeTwilio
from tests.matrix_user import MatrixUser, body_of
from tests.synapse import Synapse
from tests.test_matrix_appservice import appservice_settings
from tests.world import free_port, start_world, stop_world

PHONE = "+4915177452290"
DIGITS = PHONE[1:]


@pytest.fixture
async def asworld(tmp_path):
    """A homeserver with the bridge as its application service; customers write by SMS."""
    port = free_port()
    settings = Settings.model_validate(
        {"bridge": {"public_url": f"http://127.0.0.1:{port}"}, "matrix": appservice_settings(port)}
    )
    text, _ = registration(settings)
    path = tmp_path / "support-bridge.yaml"
    path.write_text(text)
    server = Synapse.start(tmp_path / "hs", app_service_config_files=[path])
    staff = await MatrixUser.register(server, displayname="Maria Staff")
    room = await staff.create_room("support", invite=["@bridge:localhost"])
    world = await start_world(
        tmp_path / "bridge",
        port=port,
        sms=FakeTwilio(),
        matrix={**appservice_settings(port, room), "homeserver": server.base_url},
    )
    yield world, staff, room
    await stop_world(world)
    await staff.close()
    server.stop()


async def user_ids_seen(staff: MatrixUser, room: str) -> list[str]:
    """Every user id the room's members and the user directory show."""
    members = list(await staff.members(room))
    found = await staff.request(
        "POST",
        "/_matrix/client/v3/user_directory/search",
        json_body={"search_term": "customer", "limit": 50},
    )
    return members + [u["user_id"] for u in found["results"]]


async def test_a_customers_matrix_user_id_does_not_contain_their_phone_number(asworld):
    world, staff, room = asworld
    assert await world.sms.customer_texts(PHONE, "Is my table booked?") == 200
    said = await staff.wait_for_event(
        room,
        lambda e: e.get("sender", "").startswith("@customer_")
        and body_of(e) == "Is my table booked?",
        30,
    )
    puppet = said["sender"]
    assert DIGITS not in puppet
    assert [u for u in await user_ids_seen(staff, room) if DIGITS in u] == []

    assert (await command(world, f"user role {staff.user_id} admin")).ok
    [(contact_id,)] = await world.sql("select id from contacts")
    await staff.send_text(room, f"!contact forget #{contact_id} --confirm")
    await staff.wait_for(
        lambda: _left(staff, room, puppet), timeout=40, what="the customer's user leaving"
    )
    assert [u for u in await user_ids_seen(staff, room) if DIGITS in u] == []


async def _left(staff: MatrixUser, room: str, user: str) -> bool | None:
    return (await staff.members(room)).get(user) == "leave" or None
