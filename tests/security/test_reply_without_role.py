"""Finding 3: only staff with the agent role answer customers.

A member of the support channel (or room) whose role is `none` writes in a customer's thread,
shares a file, edits or deletes a reply: nothing of it reaches the customer; they are told
privately why and who can give them the role, and their message shows the failure mark.
"""

from __future__ import annotations

import pytest

from tests.commands_kit import ADMIN, AGENT, command
from tests.harness import eventually
from tests.matrix_user import MatrixUser, body_of, relation_of
from tests.world import start_world, stop_world

ANNA = "U0ANNA1"  # a member of the support channel
CUSTOMER = 4040001
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))


async def demote(world, who: str) -> None:
    reply = await command(world, f"user role {who} none", user=ADMIN, user_name="Ada")
    assert reply.ok, reply.text


def ephemerals_to(world, user: str, thread_ts: str) -> list[str]:
    return [
        e["text"]
        for e in world.slack.ephemerals
        if e["user"] == user and e["thread_ts"] == thread_ts
    ]


async def told(world, user: str, root, words: str) -> str:
    found: list[str] = await eventually(
        lambda: [t for t in ephemerals_to(world, user, root.ts) if words in t],
        message=f"a private explanation containing {words!r}",
    )
    return found[-1]


async def barrier(world, root, text: str = "An agent's answer") -> None:
    """An agent's reply after the refused action: it leaves in the same ordered lane, so once
    it has arrived, anything queued before it would have arrived too."""
    await world.slack.agent_says(root.channel, root.ts, text, user=AGENT)
    await eventually(
        lambda: any(m.current_text == text for m in world.tg.messages_to(CUSTOMER)),
        message="the agent's reply",
    )


async def test_a_reply_from_a_member_without_a_role_never_reaches_the_customer(world):
    await demote(world, ANNA)
    await world.says(CUSTOMER, "Where is my refund?")
    root = await world.thread_of(CUSTOMER)
    ts = await world.slack.agent_says(
        root.channel, root.ts, "Send your card number to me", user=ANNA
    )
    text = await told(world, ANNA, root, "agent role")
    assert "not sent" in text.lower()
    assert f"/user role {ANNA} agent" in text
    assert f"`{ADMIN}`" in text  # who can give the role
    message = world.slack.find(root.channel, ts)
    await eventually(lambda: "x" in message.reactions, message="the not-sent mark")
    await barrier(world, root)
    assert [m.current_text for m in world.tg.messages_to(CUSTOMER)] == ["An agent's answer"]
    assert await world.sql("select count(*) from messages where text like '%card number%'") == [
        (0,)
    ]


async def test_a_file_from_a_member_without_a_role_never_reaches_the_customer(world):
    await demote(world, ANNA)
    await world.says(CUSTOMER, "Can you send the form?")
    root = await world.thread_of(CUSTOMER)
    ts = await world.slack.agent_says(
        root.channel, root.ts, "", user=ANNA, files=[("form.png", PNG, "image/png")]
    )
    await told(world, ANNA, root, "agent role")
    message = world.slack.find(root.channel, ts)
    await eventually(lambda: "x" in message.reactions, message="the not-sent mark")
    await barrier(world, root)
    sent = world.tg.messages_to(CUSTOMER)
    assert [m.current_text for m in sent] == ["An agent's answer"]
    assert not any(m.file_bytes for m in sent)


async def test_edits_and_deletions_by_a_member_whose_role_was_taken_stay_in_slack(world):
    await world.says(CUSTOMER, "Hello?")
    root = await world.thread_of(CUSTOMER)
    ts = await world.slack.agent_says(root.channel, root.ts, "Your refund is on its way", user=ANNA)
    [sent] = await eventually(lambda: world.tg.messages_to(CUSTOMER), message="Anna's reply")
    message = world.slack.find(root.channel, ts)
    await eventually(lambda: "white_check_mark" in message.reactions, message="the sent mark")
    await demote(world, ANNA)

    await world.slack.agent_edits(root.channel, ts, "No refund, pay me instead", user=ANNA)
    await told(world, ANNA, root, "edit")
    await eventually(lambda: "x" in message.reactions, message="the not-sent mark")
    await world.slack.agent_deletes(root.channel, ts)
    await told(world, ANNA, root, "deletion")
    await barrier(world, root)

    assert sent.edited_texts == [] and not sent.deleted
    assert [m.current_text for m in world.tg.messages_to(CUSTOMER)] == [
        "Your refund is on its way",
        "An agent's answer",
    ]
    assert await world.sql("select text, deleted from messages where direction = 'out'") == [
        ("Your refund is on its way", False),
        ("An agent's answer", False),
    ]


class TestNoDefaultRole:
    """With `default_role = "none"` a member nobody gave a role cannot answer either."""

    @pytest.fixture
    async def world(self, tmp_path):
        w = await start_world(tmp_path, default_role="none", admins=[ADMIN, AGENT])
        yield w
        await stop_world(w)

    async def test_a_member_nobody_gave_a_role_cannot_answer(self, world):
        await world.says(CUSTOMER, "Anyone there?")
        root = await world.thread_of(CUSTOMER)
        ts = await world.slack.agent_says(root.channel, root.ts, "I am not staff", user=ANNA)
        text = await told(world, ANNA, root, "agent role")
        assert "you have the none role" in text.lower()
        message = world.slack.find(root.channel, ts)
        await eventually(lambda: "x" in message.reactions, message="the not-sent mark")
        await barrier(world, root)
        assert [m.current_text for m in world.tg.messages_to(CUSTOMER)] == ["An agent's answer"]


# -- Matrix -------------------------------------------------------------------------------


@pytest.fixture
async def mx(tmp_path, synapse):
    from tests.test_matrix_surface import start_matrix_world

    mw = await start_matrix_world(tmp_path, synapse)
    mallory = await MatrixUser.register(synapse, displayname="Mallory")
    await mw.staff.invite(mw.room, mallory.user_id)
    await mallory.join(mw.room)
    yield mw, mallory
    await stop_world(mw.world)
    for user in (mw.staff, mw.bot, mallory):
        await user.close()


async def _notice_to(mw, user: MatrixUser, root: dict, event_id: str, words: str) -> dict:
    """The bridge's notice in the thread that answers `event_id` and names `user`."""

    def is_notice(event: dict) -> bool:
        relation = relation_of(event)
        return (
            event.get("sender") == mw.bot.user_id
            and event["content"].get("msgtype") == "m.notice"
            and relation.get("m.in_reply_to", {}).get("event_id") == event_id
            and user.user_id in (body_of(event) or "")
            and words in (body_of(event) or "")
        )

    return await mw.staff.wait_for_thread_event(mw.room, root["event_id"], is_notice, timeout=20)


async def _marked_failed(mw, event_id: str) -> None:
    async def marked():
        return ("❌" in [k for _, k in await mw.staff.reactions(mw.room, event_id)]) or None

    await mw.staff.wait_for(marked, what="the not-sent reaction")


async def test_matrix_members_without_a_role_cannot_reply_send_files_edit_or_delete(mx):
    mw, mallory = mx
    world = mw.world
    await world.says(CUSTOMER, "Where is my parcel?", first_name="Anna")
    root = await mw.root_for(CUSTOMER)
    reply = await mw.staff.send_text(mw.room, "It left today.", thread_root=root["event_id"])
    [sent] = await eventually(lambda: world.tg.messages_to(CUSTOMER), message="the reply")
    await eventually(lambda: sent.message_id, message="the Telegram id")
    assert (await command(world, f"user role {mallory.user_id} none")).ok

    forged = await mallory.send_text(mw.room, "Pay to my account", thread_root=root["event_id"])
    notice = await _notice_to(mw, mallory, root, forged, "agent role")
    assert f"!user role {mallory.user_id} agent" in body_of(notice)
    assert mallory.user_id in notice["content"].get("m.mentions", {}).get("user_ids", [])
    await _marked_failed(mw, forged)

    media = await mallory.send_media(
        mw.room, PNG, "image/png", "qr.png", thread_root=root["event_id"]
    )
    await _notice_to(mw, mallory, root, media, "agent role")
    await _marked_failed(mw, media)

    edit = await mallory.edit(mw.room, reply, "It left today. Pay to my account.")
    await _notice_to(mw, mallory, root, edit, "edit")

    assert (await command(world, f"user role {mw.staff.user_id} none")).ok
    redaction = await mw.staff.redact(mw.room, reply)
    await _notice_to(mw, mw.staff, root, redaction, "deletion")

    slack_root = await world.thread_of(CUSTOMER)
    await barrier(world, slack_root)
    assert sent.edited_texts == [] and not sent.deleted
    assert [m.current_text for m in world.tg.messages_to(CUSTOMER)] == [
        "It left today.",
        "An agent's answer",
    ]
    assert not any(m.file_bytes for m in world.tg.messages_to(CUSTOMER))
