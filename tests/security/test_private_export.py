"""`/contact export` hands out personal data: it reaches the caller alone (a direct message from
the bridge in Slack; a Matrix room of only the caller and the bot), never the channel or thread."""

from __future__ import annotations

import json

from tests.commands_kit import ADMIN, AGENT
from tests.harness import eventually
from tests.matrix_user import MatrixUser, body_of
from tests.slash_kit import slash_answer
from tests.test_matrix_surface import ANNA as MX_ANNA
from tests.test_matrix_surface import anna_writes, start_matrix_world
from tests.world import stop_world

ANNA = 7710001


async def anna_thread(world):
    world.slack.add_user(ADMIN, "Ada Admin", "ada")
    world.slack.add_user(AGENT, "Alex Agent", "alex")
    await world.says(ANNA, "My address is Hauptstr. 1", first_name="Anna", last_name="Schmidt")
    return await world.thread_of(ANNA)


def shared_outside_dms(world) -> list[str]:
    """Text and file names of everything the bridge posted where others can read it."""
    return [
        f"{m.text} {json.dumps(m.blocks)} {[f.get('name') for f in m.files]}"
        for m in world.slack.messages
        if not m.channel.startswith("D")
    ]


async def test_contact_export_by_slash_command_reaches_only_the_callers_direct_messages(world):
    await anna_thread(world)
    answer = await slash_answer(world.slack, "/contact", f"export {ANNA}", user_id=AGENT)
    assert answer["response_type"] == "ephemeral"
    assert "direct message" in json.dumps(answer)
    [post] = await eventually(lambda: world.slack.dm_messages(AGENT), message="the DM")
    [file] = post.files
    assert file["name"].startswith("contact-") and file["name"].endswith(".json")
    assert b"Hauptstr. 1" in (world.slack.file_bytes(file["id"]) or b"")
    assert not any("contact-" in shown for shown in shared_outside_dms(world))
    assert not any("Everything held" in shown for shown in shared_outside_dms(world))


async def test_contact_export_typed_in_a_thread_is_not_posted_in_the_thread(world):
    root = await anna_thread(world)
    await world.slack.agent_says(root.channel, root.ts, f"!contact export {ANNA}", user=AGENT)
    [post] = await eventually(lambda: world.slack.dm_messages(AGENT), message="the DM")
    assert post.files and post.files[0]["name"].endswith(".json")
    told = await eventually(
        lambda: [e for e in world.slack.ephemerals if e["user"] == AGENT], message="ephemeral"
    )
    assert "direct message" in json.dumps(told)
    assert all(not m.files for m in world.replies(root))
    assert not any("Everything held" in shown for shown in shared_outside_dms(world))
    assert not any("contact-" in shown for shown in shared_outside_dms(world))


async def test_contact_export_in_a_shared_matrix_room_is_refused_and_nothing_is_posted(
    tmp_path, synapse
):
    mx = await start_matrix_world(tmp_path, synapse)
    colleague = await MatrixUser.register(synapse, displayname="Someone Else")
    try:
        await mx.staff.invite(mx.room, colleague.user_id)
        await colleague.join(mx.room)
        await anna_writes(mx)
        await mx.staff.send_text(mx.room, f"!contact export {MX_ANNA}")

        def refusal(event: dict) -> bool:
            return "direct room" in (body_of(event) or "")

        await mx.staff.wait_for_event(mx.room, refusal, timeout=20)
        events = await colleague.messages(mx.room)
        assert not any(e.get("content", {}).get("msgtype") == "m.file" for e in events)
        assert not any("Everything held" in (body_of(e) or "") for e in events)
    finally:
        await stop_world(mx.world)
        await colleague.close()
        await mx.staff.close()
        await mx.bot.close()


async def test_contact_export_in_a_room_of_only_the_caller_and_the_bot_is_delivered_there(
    tmp_path, synapse
):
    mx = await start_matrix_world(tmp_path, synapse)
    try:
        await anna_writes(mx)
        await mx.staff.send_text(mx.room, f"!contact export {MX_ANNA}")

        def the_file(event: dict) -> bool:
            return event.get("content", {}).get("msgtype") == "m.file"

        found = await mx.staff.wait_for_event(mx.room, the_file, timeout=20)
        assert str(found["content"]["body"]).endswith(".json")
    finally:
        await stop_world(mx.world)
        await mx.staff.close()
        await mx.bot.close()
