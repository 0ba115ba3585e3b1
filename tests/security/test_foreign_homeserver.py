"""Matrix counterpart of the foreign-workspace finding: a federated room lets users of any
homeserver in, and the homeserver pushes their events like any other. Only users of the bot's
own homeserver (and of those in `[matrix] allowed_servers`) are staff; a user of another
server has role none, whatever the default role says.

The foreign users' events are pushed the way Synapse pushes federated events to an application
service (a transaction signed with hs_token), since one test homeserver cannot federate.
"""

from __future__ import annotations

import asyncio
import itertools
import time

import aiohttp
import pytest

from bridge.config import Settings
from tests.harness import eventually
from tests.matrix_user import body_of, relation_of
from tests.test_matrix_appservice import HS_TOKEN, appservice_world, puppet_of

CUSTOMER = 7170077
PARTNER = "partner.example"
_txn = itertools.count()


@pytest.fixture
async def federated(tmp_path):
    """An appservice bridge whose room's staff are on localhost, and partner.example allowed."""
    async with appservice_world(tmp_path, matrix={"allowed_servers": [PARTNER]}) as running:
        yield running


async def push(port: int, room: str, sender: str, content: dict) -> str:
    """The homeserver hands the bridge an event of `sender` (a transaction, signed)."""
    event_id = f"$federated{next(_txn)}"
    event = {
        "type": "m.room.message",
        "room_id": room,
        "sender": sender,
        "event_id": event_id,
        "origin_server_ts": int(time.time() * 1000),
        "content": content,
    }
    async with aiohttp.ClientSession() as http:
        async with http.put(
            f"http://127.0.0.1:{port}/matrix/_matrix/app/v1/transactions/f{next(_txn)}",
            json={"events": [event]},
            headers={"Authorization": f"Bearer {HS_TOKEN}"},
        ) as response:
            assert response.status == 200
    return event_id


def in_thread(root: str, body: str) -> dict:
    return {
        "msgtype": "m.text",
        "body": body,
        "m.relates_to": {"rel_type": "m.thread", "event_id": root},
    }


async def thread_root(world, staff, room) -> str:
    await world.says(CUSTOMER, "My order never came", first_name="Kim")
    puppet = puppet_of(f"telegram_{CUSTOMER}")
    said = await staff.wait_for_event(
        room, lambda e: e.get("sender") == puppet and body_of(e) == "My order never came", 30
    )
    return str(relation_of(said)["event_id"])


async def test_a_user_of_another_homeserver_cannot_answer_customers(federated):
    world, staff, room, port = federated
    root = await thread_root(world, staff, room)
    await push(port, room, "@eve:evil.example", in_thread(root, "Pay the fee at evil.example"))
    notice = await staff.wait_for_event(
        room,
        lambda e: "allowed_servers" in (body_of(e) or "")
        and "@eve:evil.example" in (body_of(e) or ""),
        30,
    )
    assert notice["sender"] == "@bridge:localhost"
    # A colleague of the bot's own server answers after it: the same ordered lane, so once
    # their reply is there, the refused one would have been too.
    await staff.send_text(room, "It is on its way.", thread_root=root)
    sent = await eventually(lambda: world.tg.messages_to(CUSTOMER), timeout=40, message="reply")
    await asyncio.sleep(0.5)
    assert [m.text for m in world.tg.messages_to(CUSTOMER)] == ["It is on its way."]
    assert [m.text for m in sent] == ["It is on its way."]


async def test_a_user_of_another_homeserver_has_no_role_for_commands(federated):
    world, staff, room, port = federated
    await push(port, room, "@eve:evil.example", {"msgtype": "m.text", "body": "!user whoami"})
    answer = await staff.wait_for_event(room, lambda e: "allowed_servers" in (body_of(e) or ""), 30)
    body = body_of(answer) or ""
    assert "none" in body and "@eve:evil.example" in body


async def test_users_of_an_allowed_homeserver_answer_like_our_own(federated):
    world, staff, room, port = federated
    root = await thread_root(world, staff, room)
    await push(port, room, f"@bob:{PARTNER}", in_thread(root, "A partner's answer"))
    sent = await eventually(lambda: world.tg.messages_to(CUSTOMER), timeout=40, message="reply")
    assert [m.text for m in sent] == ["A partner's answer"]


def test_an_allowed_server_that_is_no_server_name_is_refused_at_start():
    with pytest.raises(ValueError, match="not a Matrix server name"):
        Settings.model_validate({"matrix": {"allowed_servers": ["evil example/"]}})
