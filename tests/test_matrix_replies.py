"""On Matrix, against a real Synapse: a customer's reply to a message the thread shows is a
real reply there (the thread relation with `m.in_reply_to` the answered event), its quote kept
for clients that show no replies; a reply to a message the bridge never saw keeps the quote
only; an edit of a reply keeps its quote."""

from __future__ import annotations

from tests import test_matrix_surface
from tests.harness import eventually
from tests.matrix_user import body_of, relation_of
from tests.test_matrix_surface import MatrixWorld

ANNA = 6160021

# The bridge with Telegram, Slack and a real homeserver, as the Matrix surface's tests use it.
mx = test_matrix_surface.mx


async def _reply_event(mx: MatrixWorld, root: dict, text: str) -> dict:
    return await mx.staff.wait_for_thread_event(
        mx.room, root["event_id"], lambda e: text in (body_of(e) or "")
    )


async def test_a_reply_to_the_agent_answers_the_agents_event_in_the_thread(mx):
    await mx.world.says(ANNA, "Where is my parcel?", first_name="Anna")
    root = await mx.root_for(ANNA)
    reply = await mx.staff.send_text(mx.room, "It left today.", thread_root=root["event_id"])
    [sent] = await eventually(lambda: mx.world.tg.messages_to(ANNA), message="the reply")
    await mx.world.customer(
        mx.world.tg.reply_update(ANNA, "Which depot?", to=sent.message_id, first_name="Anna")
    )
    event = await _reply_event(mx, root, "Which depot?")
    assert relation_of(event) == {
        "rel_type": "m.thread",
        "event_id": root["event_id"],
        "is_falling_back": False,
        "m.in_reply_to": {"event_id": reply},
    }
    assert body_of(event) == "> It left today.\n\nAnna: Which depot?"


async def test_a_reply_to_their_own_message_answers_its_mirror(mx):
    first = await mx.world.says(ANNA, "Order QX-1", first_name="Anna")
    root = await mx.root_for(ANNA)
    mirrored = await _reply_event(mx, root, "Order QX-1")
    message_id = first["message"]["message_id"]
    await mx.world.customer(
        mx.world.tg.reply_update(ANNA, "that one", to=message_id, first_name="Anna")
    )
    event = await _reply_event(mx, root, "that one")
    assert relation_of(event)["m.in_reply_to"] == {"event_id": mirrored["event_id"]}
    assert relation_of(event)["is_falling_back"] is False


async def test_a_reply_to_a_message_the_bridge_never_saw_keeps_the_quote_only(mx):
    update = mx.world.tg.text_update(ANNA, "Still waiting", message_id=50, first_name="Anna")
    update["message"]["reply_to_message"] = {
        "message_id": 7,
        "from": {"id": ANNA, "is_bot": False, "first_name": "Anna"},
        "chat": update["message"]["chat"],
        "date": update["message"]["date"] - 86400,
        "text": "Order placed yesterday",
    }
    await mx.world.customer(update)
    root = await mx.root_for(ANNA)
    event = await _reply_event(mx, root, "Still waiting")
    assert body_of(event) == "> Order placed yesterday\n\nAnna: Still waiting"
    relation = relation_of(event)
    assert relation["is_falling_back"] is True
    assert relation["m.in_reply_to"] == {"event_id": root["event_id"]}


async def test_an_edited_reply_keeps_its_quote(mx):
    await mx.world.says(ANNA, "Where is my parcel?", first_name="Anna")
    root = await mx.root_for(ANNA)
    await mx.staff.send_text(mx.room, "It left today.", thread_root=root["event_id"])
    [sent] = await eventually(lambda: mx.world.tg.messages_to(ANNA), message="the reply")
    update = mx.world.tg.reply_update(ANNA, "Which depot?", to=sent.message_id, first_name="Anna")
    await mx.world.customer(update)
    event = await _reply_event(mx, root, "Which depot?")
    message_id = update["message"]["message_id"]
    await mx.world.customer(mx.world.tg.edit_update(ANNA, message_id, "Which depot, please?"))

    async def edited() -> dict | None:
        content = await mx.staff.current_content(mx.room, event["event_id"])
        return content if "please" in content.get("body", "") else None

    content = await mx.staff.wait_for(edited, what="the edit")
    assert content["body"] == "> It left today.\n\nAnna: Which depot, please? (edited)"
    assert content["formatted_body"].startswith("<blockquote>It left today.</blockquote>")
