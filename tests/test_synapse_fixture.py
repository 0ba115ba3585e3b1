"""The real homeserver fixture and the test-side staff client (MatrixUser) work end to end."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import tests.synapse as synapse_module
from tests.matrix_user import MatrixError, MatrixUser, body_of, relation_of
from tests.synapse import GENEROUS, RateLimit, Synapse, SynapseError


@pytest.fixture
async def alice(synapse: Synapse) -> AsyncIterator[MatrixUser]:
    """A staff member on the shared homeserver."""
    user = await MatrixUser.register(synapse, displayname="Alice")
    yield user
    await user.close()


@pytest.fixture
async def bob(synapse: Synapse) -> AsyncIterator[MatrixUser]:
    """A second staff member on the shared homeserver."""
    user = await MatrixUser.register(synapse, displayname="Bob")
    yield user
    await user.close()


async def shared_room(alice: MatrixUser, bob: MatrixUser) -> str:
    """A room alice creates and bob joins after seeing the invite."""
    room = await alice.create_room("Support", invite=[bob.user_id])
    assert await bob.wait_for_invite() == room
    assert await bob.join(room) == room
    return room


async def test_threaded_reply_is_read_back_with_its_relation(
    alice: MatrixUser, bob: MatrixUser
) -> None:
    room = await shared_room(alice, bob)
    assert (await alice.members(room))[bob.user_id] == "join"

    root = await alice.send_text(room, "Customer +49 151 ... wrote: hello")
    first = await bob.send_text(room, "Hi, how can I help?", thread_root=root)
    second = await bob.send_text(
        room, "Are you there?", thread_root=root, formatted="<b>Are</b> you there?"
    )

    thread = await alice.wait_for(
        lambda: _thread_of_size(alice, room, root, 2), what="two thread replies"
    )
    assert [e["event_id"] for e in thread] == [first, second]
    assert [body_of(e) for e in thread] == ["Hi, how can I help?", "Are you there?"]
    assert all(e["sender"] == bob.user_id for e in thread)
    rel_first, rel_second = relation_of(thread[0]), relation_of(thread[1])
    assert rel_first == {
        "rel_type": "m.thread",
        "event_id": root,
        "is_falling_back": True,
        "m.in_reply_to": {"event_id": root},
    }
    # The fallback for thread-unaware clients points at the latest event in the thread.
    assert rel_second["m.in_reply_to"] == {"event_id": first}
    assert thread[1]["content"]["formatted_body"] == "<b>Are</b> you there?"
    assert thread[1]["content"]["format"] == "org.matrix.custom.html"

    # The other side sees the same timeline, and the root carries the thread summary.
    seen = await alice.wait_for_event(room, lambda e: e["event_id"] == second)
    assert relation_of(seen)["event_id"] == root
    summary = (await alice.event(room, root))["unsigned"]["m.relations"]["m.thread"]
    assert summary["count"] == 2
    assert summary["latest_event"]["event_id"] == second


async def _thread_of_size(user: MatrixUser, room: str, root: str, size: int):
    events = await user.thread(room, root)
    return events if len(events) >= size else None


async def test_thread_rules_are_enforced(alice: MatrixUser, bob: MatrixUser) -> None:
    room = await shared_room(alice, bob)
    root = await alice.send_text(room, "root")
    reply = await bob.send_text(room, "reply", thread_root=root)
    with pytest.raises(MatrixError) as raised:
        await alice.send_text(room, "a thread from a threaded event", thread_root=reply)
    assert raised.value.status == 400


async def test_edit_reaction_and_redaction_are_visible(alice: MatrixUser, bob: MatrixUser) -> None:
    room = await shared_room(alice, bob)
    message = await alice.send_text(room, "Your order ships Monday")
    edit = await alice.edit(room, message, "Your order ships Tuesday")
    reaction = await bob.react(room, message, "👍")

    edit_event = await bob.wait_for_event(room, lambda e: e["event_id"] == edit)
    assert relation_of(edit_event) == {"rel_type": "m.replace", "event_id": message}
    assert edit_event["content"]["m.new_content"]["body"] == "Your order ships Tuesday"
    assert edit_event["content"]["body"] == "* Your order ships Tuesday"
    assert (await bob.current_content(room, message))["body"] == "Your order ships Tuesday"
    original = await bob.event(room, message)
    assert original["unsigned"]["m.relations"]["m.replace"]["event_id"] == edit

    assert await alice.reactions(room, message) == [(bob.user_id, "👍")]
    await bob.redact(room, reaction)
    assert await alice.wait_for(
        lambda: _no_reactions(alice, room, message), what="the reaction to go"
    )

    await alice.redact(room, message, reason="wrong day")
    redacted = await bob.wait_for(
        lambda: _redacted(bob, room, message), what="the message to be redacted"
    )
    assert redacted["content"] == {}
    assert redacted["unsigned"]["redacted_because"]["content"]["reason"] == "wrong day"


async def _no_reactions(user: MatrixUser, room: str, event_id: str) -> bool:
    return await user.reactions(room, event_id) == []


async def _redacted(user: MatrixUser, room: str, event_id: str):
    event = await user.event(room, event_id)
    return event if "redacted_because" in event.get("unsigned", {}) else None


async def test_media_upload_downloads_back_identically(alice: MatrixUser, bob: MatrixUser) -> None:
    room = await shared_room(alice, bob)
    root = await alice.send_text(room, "customer thread")
    payload = os.urandom(150_000)
    event_id = await alice.send_media(room, payload, "image/png", "photo.png", thread_root=root)

    event = await bob.wait_for_thread_event(room, root, lambda e: e["event_id"] == event_id)
    content = event["content"]
    assert content["msgtype"] == "m.image"
    assert content["info"] == {"mimetype": "image/png", "size": len(payload)}
    media = await bob.download_media(content["url"])
    assert media.data == payload
    assert media.content_type == "image/png"
    assert await alice.download(content["url"]) == payload

    with pytest.raises(MatrixError) as raised:
        await bob.download(content["url"] + "nope")
    assert raised.value.status == 404


async def test_tight_rate_limit_answers_429_then_restart_lifts_it(tmp_path: Path) -> None:
    server = await asyncio.to_thread(
        Synapse.start, tmp_path / "hs", rc_message=RateLimit(per_second=0.1, burst_count=3)
    )
    try:
        user = await MatrixUser.register(server, "sender")
        async with user:
            room = await user.create_room("tight")
            sent: list[str] = []
            with pytest.raises(MatrixError) as raised:
                for n in range(30):
                    sent.append(await user.send_text(room, f"message {n}"))
            error = raised.value
            assert 1 <= len(sent) < 30
            assert error.status == 429
            assert error.errcode == "M_LIMIT_EXCEEDED"
            assert error.retry_after_ms is not None and error.retry_after_ms > 0
            assert error.retry_after_header is not None and int(error.retry_after_header) >= 1
            assert error.retry_after is not None and error.retry_after >= 1

            # Reconfigure + restart keeps the data: the same token, room and messages remain.
            port = server.port
            await asyncio.to_thread(server.reconfigure, rc_message=GENEROUS)
            assert server.port == port
            assert await user.joined_rooms() == [room]
            for n in range(15):
                await user.send_text(room, f"after restart {n}")
            bodies = [body_of(e) for e in await user.messages(room, 100)]
            assert bodies.count("message 0") == 1
            assert "after restart 14" in bodies
    finally:
        await asyncio.to_thread(server.stop)
    assert not server.running
    assert "Received SIGTERM" in server.log_file.read_text()


def test_missing_synapse_fails_with_the_pip_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(synapse_module, "synapse_installed", lambda: False)
    with pytest.raises(SynapseError, match=r"pip install"):
        Synapse(tmp_path).run()
