"""Matrix counterpart of the mention finding: a customer whose name or text holds a staff
member's display name (or `@room`) must not ping anyone. Matrix clients and the homeserver's
push rules highlight an event whose body contains a user's display name unless the event says
whom it mentions (`m.mentions`, Matrix 1.7 intentional mentions); the bridge's events say
nobody, so staff's highlights stay empty. Checked against a real Synapse."""

from __future__ import annotations

import pytest

from tests.matrix_user import body_of
from tests.test_matrix_surface import start_matrix_world
from tests.world import stop_world

CUSTOMER = 6170001


@pytest.fixture
async def mx(tmp_path, synapse):
    mw = await start_matrix_world(tmp_path, synapse)
    yield mw
    await stop_world(mw.world)
    await mw.staff.close()
    await mw.bot.close()


async def highlights(mw) -> list[dict]:
    """The events the homeserver highlighted for the staff member (their mentions)."""
    answer = await mw.staff.request(
        "GET", "/_matrix/client/v3/notifications", params={"only": "highlight"}
    )
    return [n["event"] for n in answer.get("notifications", [])]


async def test_a_customer_writing_a_staff_members_name_pings_nobody(mx):
    text = "Maria Staff, @room: call me now"
    await mx.world.says(CUSTOMER, text, first_name="Maria Staff")
    root = await mx.root_for(CUSTOMER)
    mirrored = await mx.staff.wait_for_thread_event(
        mx.room, root["event_id"], lambda e: text in (body_of(e) or "")
    )
    assert "Maria Staff" in body_of(root)
    for event in (root, mirrored):
        assert event["content"].get("m.mentions") == {}, event["content"]
    assert await highlights(mx) == []
