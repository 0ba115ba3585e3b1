"""On Matrix, against a real Synapse: a staff message that mentions a colleague only through
`m.mentions.user_ids`, with their user id written bare (Client-Server API, "User and room
mentions"), reaches the customer with the colleague's display name; `@room` (with
`m.mentions.room`) does not reach the customer as a word of Matrix."""

from __future__ import annotations

from connectors.matrix_mentions import in_words, user_ids
from tests import test_matrix_surface
from tests.harness import eventually
from tests.matrix_user import MatrixUser
from tests.test_matrix_surface import MatrixWorld

ANNA = 6160031

mx = test_matrix_surface.mx


async def _thread_reply(mx: MatrixWorld, content: dict) -> str:
    """Anna writes; staff answer in her thread with `content`; the text Telegram got."""
    await mx.world.says(ANNA, "Can someone call me?", first_name="Anna")
    root = await mx.root_for(ANNA)
    content = {
        "msgtype": "m.text",
        **content,
        "m.relates_to": {
            "rel_type": "m.thread",
            "event_id": root["event_id"],
            "is_falling_back": True,
            "m.in_reply_to": {"event_id": root["event_id"]},
        },
    }
    await mx.staff.send_event(mx.room, "m.room.message", content)
    [sent] = await eventually(lambda: mx.world.tg.messages_to(ANNA), message="the reply")
    return str(sent.text)


async def test_a_colleague_mentioned_by_bare_id_is_named(mx, synapse):
    colleague = await MatrixUser.register(synapse, displayname="Jonas Weber")
    try:
        text = await _thread_reply(
            mx,
            {
                "body": f"{colleague.user_id} will call you back.",
                "m.mentions": {"user_ids": [colleague.user_id]},
            },
        )
    finally:
        await colleague.close()
    assert text == "Jonas Weber will call you back."


async def test_a_mention_without_a_pill_in_html_is_named(mx, synapse):
    colleague = await MatrixUser.register(synapse, displayname="Jonas Weber")
    try:
        text = await _thread_reply(
            mx,
            {
                "body": f"**{colleague.user_id}** will call.",
                "format": "org.matrix.custom.html",
                "formatted_body": f"<strong>{colleague.user_id}</strong> will call.",
                "m.mentions": {"user_ids": [colleague.user_id]},
            },
        )
    finally:
        await colleague.close()
    assert colleague.user_id not in text
    assert "Jonas Weber" in text


async def test_at_room_does_not_reach_the_customer(mx):
    text = await _thread_reply(
        mx, {"body": "@room: Anna asks for a call back.", "m.mentions": {"room": True}}
    )
    assert text == "Anna asks for a call back."


def test_ids_at_a_sentences_end_become_names_and_addresses_stay():
    text = "Ask @jonas:example.org. Or mail jonas@example.org, or tell @room today."
    assert user_ids(text) == ["@jonas:example.org"]
    shown = in_words(text, {"@jonas:example.org": "Jonas Weber"})
    assert shown == "Ask Jonas Weber. Or mail jonas@example.org, or tell everyone today."


def test_a_member_without_a_name_shows_their_localpart():
    assert in_words("@jonas:example.org:8448 calls", {}) == "jonas calls"
