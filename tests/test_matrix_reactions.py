"""On Matrix, against a real Synapse: a customer's reaction on the agent's reply is an
`m.annotation` on the agent's event, redacted when the customer takes it back; the echo of
that reply in Slack gets it too; one the delivery marks use is a notice in the thread, posted
once even when its row is carried out again. A customer's reply shows a quote of what it
answers."""

from __future__ import annotations

from bridge.app import SURFACES
from bridge.types import ReactionChange, StaffMessageRef, ThreadRef
from tests import test_matrix_surface
from tests.harness import eventually
from tests.matrix_user import body_of
from tests.test_matrix_surface import MatrixWorld

ANNA = 6160011

# The bridge with Telegram, Slack and a real homeserver, as the Matrix surface's tests use it.
mx = test_matrix_surface.mx


async def _agent_replied(mx: MatrixWorld) -> tuple[dict, str, int]:
    """Anna writes, staff answer in Matrix; the root, the reply's event id, its Telegram id."""
    await mx.world.says(ANNA, "Where is my parcel?", first_name="Anna")
    root = await mx.root_for(ANNA)
    reply = await mx.staff.send_text(mx.room, "It left today.", thread_root=root["event_id"])
    [sent] = await eventually(lambda: mx.world.tg.messages_to(ANNA), message="the reply")
    return root, reply, sent.message_id


async def test_a_reaction_on_the_agents_reply_is_an_annotation_until_taken_back(mx):
    _, reply, message_id = await _agent_replied(mx)
    await mx.world.customer(mx.world.tg.reaction_update(ANNA, message_id, ["👍"]))

    async def keys() -> list[str]:
        return [k for _, k in await mx.staff.reactions(mx.room, reply)]

    async def shown():
        return "👍" in await keys() or None

    await mx.staff.wait_for(shown, what="the customer's reaction")
    slack_root = await mx.world.thread_of(ANNA)
    echo = await eventually(
        lambda: next((m for m in mx.world.replies(slack_root) if "It left" in m.text), None),
        message="the reply's echo in Slack",
    )
    await eventually(lambda: "+1" in echo.reactions, message="the reaction on the echo")
    await mx.world.customer(mx.world.tg.reaction_update(ANNA, message_id, [], ["👍"]))

    async def gone():
        return "👍" not in await keys() or None

    await mx.staff.wait_for(gone, what="the reaction redacted")
    await eventually(lambda: "+1" not in echo.reactions, message="the echo's reaction gone")
    assert "✅" in await keys()  # the delivery mark stays


async def test_a_reply_to_the_agent_shows_the_quote_in_the_matrix_thread(mx):
    root, _, message_id = await _agent_replied(mx)
    await mx.world.customer(
        mx.world.tg.reply_update(ANNA, "Which depot?", to=message_id, first_name="Anna")
    )
    event = await mx.staff.wait_for_thread_event(
        mx.room, root["event_id"], lambda e: "Which depot?" in (body_of(e) or "")
    )
    assert body_of(event) == "> It left today.\n\nAnna: Which depot?"
    assert event["content"]["formatted_body"] == (
        "<blockquote>It left today.</blockquote><b>Anna</b>: Which depot?"
    )


async def test_a_reaction_notice_is_posted_once_when_its_row_runs_again(mx):
    root, reply, _ = await _agent_replied(mx)
    surface = next(s for s in mx.world.bridge.app[SURFACES] if s.name == "matrix")
    thread = ThreadRef(f"{mx.room}/{root['event_id']}")
    change = ReactionChange(author="Anna", added=("👀",), on="It left today.", marker="9001")
    # The row posted its notice, then the bridge stopped before recording it: run again.
    await surface.react(thread, StaffMessageRef(f"{mx.room}/{reply}"), change)
    again = ReactionChange(
        author="Anna", added=("👀",), on="It left today.", marker="9001", again=True
    )
    await surface.react(thread, StaffMessageRef(f"{mx.room}/{reply}"), again)
    texts = await mx.thread_texts(root)
    assert texts.count("ℹ️ Anna reacted 👀 on “It left today.”") == 1
