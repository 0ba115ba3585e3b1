"""Answers that carry a secret (a webhook's signing secret, a new API key) are shown to the
caller alone wherever the command is typed, and refused where no answer can be private."""

from __future__ import annotations

import json
import re

from tests.commands_kit import ADMIN, command
from tests.harness import eventually
from tests.matrix_user import MatrixUser, body_of
from tests.slash_kit import slash_answer
from tests.test_matrix_surface import start_matrix_world
from tests.world import stop_world

ANNA = 7720001
HOOK = "https://crm.example.com/bridge-events"


def public_texts(world) -> str:
    """Everything the bridge posted in Slack (text, blocks, file comments): what others read."""
    return "\n".join(f"{m.text} {json.dumps(m.blocks)}" for m in world.slack.messages)


async def admin_in_a_thread(world):
    world.slack.add_user(ADMIN, "Ada Admin", "ada")
    await world.says(ANNA, "Hello", first_name="Anna")
    return await world.thread_of(ANNA)


async def stored_secret(world) -> str:
    [(secret,)] = await world.sql("select secret from webhooks")
    return str(secret)


async def test_webhook_add_in_a_thread_shows_the_signing_secret_only_to_its_author(world):
    root = await admin_in_a_thread(world)
    await world.slack.agent_says(root.channel, root.ts, f"!webhook add {HOOK} all", user=ADMIN)
    told = await eventually(
        lambda: [e for e in world.slack.ephemerals if e["user"] == ADMIN], message="the answer"
    )
    secret = await stored_secret(world)
    assert secret in json.dumps(told)
    assert secret not in public_texts(world)
    assert not any("Signing secret" in t for t in world.texts(root))


async def test_webhook_add_by_slash_command_answers_ephemerally(world):
    world.slack.add_user(ADMIN, "Ada Admin", "ada")
    answer = await slash_answer(world.slack, "/webhook", f"add {HOOK} all", user_id=ADMIN)
    assert answer["response_type"] == "ephemeral"
    secret = await stored_secret(world)
    assert secret in json.dumps(answer)
    assert secret not in public_texts(world)


async def test_apikey_create_in_a_thread_shows_the_key_only_to_its_author(world):
    root = await admin_in_a_thread(world)
    await world.slack.agent_says(root.channel, root.ts, "!apikey create crm agent", user=ADMIN)
    told = await eventually(
        lambda: [e for e in world.slack.ephemerals if e["user"] == ADMIN], message="the answer"
    )
    [(prefix,)] = await world.sql("select prefix from api_keys")
    keys = re.findall(rf"{re.escape(str(prefix))}[A-Za-z0-9_\-]+", json.dumps(told))
    assert keys, told
    assert all(key not in public_texts(world) for key in keys)
    assert not any("API key" in t for t in world.texts(root))


async def test_webhook_add_in_a_shared_matrix_room_is_refused_and_nothing_is_created(
    tmp_path, synapse
):
    mx = await start_matrix_world(tmp_path, synapse)
    colleague = await MatrixUser.register(synapse, displayname="Someone Else")
    try:
        made = await command(mx.world, f"user role {mx.staff.user_id} admin", surface="matrix")
        assert made.ok, made.text
        await mx.staff.invite(mx.room, colleague.user_id)
        await colleague.join(mx.room)
        await mx.staff.send_text(mx.room, f"!webhook add {HOOK} all")

        def refusal(event: dict) -> bool:
            return "direct room" in (body_of(event) or "")

        await mx.staff.wait_for_event(mx.room, refusal, timeout=20)
        assert await mx.world.sql("select count(*) from webhooks") == [(0,)]
        events = await colleague.messages(mx.room)
        assert not any("Signing secret" in (body_of(e) or "") for e in events)
    finally:
        await stop_world(mx.world)
        await colleague.close()
        await mx.staff.close()
        await mx.bot.close()
