"""A Matrix room's end-to-end encryption respected while `[matrix] encryption` is off: the bot
posts nothing in the clear into an encrypted room, whether it was encrypted before the start or
became so while the bridge ran; the log says why once and the outbox rows fail with the reason.
Appservice mode with encryption on is refused at the start."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.harness import eventually
from tests.matrix_user import MatrixUser, body_of
from tests.test_matrix_surface import ANNA, MatrixWorld, anna_writes, start_matrix_world
from tests.world import stop_world

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = Path(__file__).parent / "corpus" / "matrix" / "room_encryption.json"
ENCRYPTED = "is end-to-end encrypted; set [matrix] encryption = true"


async def encrypt(user: MatrixUser, room: str) -> None:
    """Switch the room's end-to-end encryption on, as Element's room settings do."""
    event = json.loads(SAMPLE.read_text())
    await user.send_state(room, event["type"], event["content"], event["state_key"])


def refusals(caplog: pytest.LogCaptureFixture, room: str) -> list[str]:
    """The log's lines that refuse the room for its encryption."""
    return [
        r.getMessage()
        for r in [*caplog.get_records("setup"), *caplog.records]
        if r.levelno >= logging.ERROR and f"{room} {ENCRYPTED}" in r.getMessage()
    ]


async def posted_by_bot(mx: MatrixWorld) -> list[dict[str, Any]]:
    """What the bot posted into the room that members read (messages and reactions)."""
    return [
        e
        for e in await mx.staff.messages(mx.room, limit=200)
        if e.get("sender") == mx.bot.user_id and e.get("type") in ("m.room.message", "m.reaction")
    ]


async def failed_rows(mx: MatrixWorld, after: int = 0) -> list[tuple[Any, ...]]:
    """(kind, attempts, last_error, payload) of the outbox rows that failed, after row `after`."""
    return await mx.world.sql(
        "select kind, attempts, last_error, payload from outbox"
        f" where state = 'failed' and id > {after} order by id"
    )


@pytest.fixture
async def encrypted_room(tmp_path, synapse, caplog):
    """The bridge started with encryption off on a room that is end-to-end encrypted."""
    caplog.set_level(logging.ERROR)
    bot = await MatrixUser.register(synapse, prefix="bridge", displayname="Support Bridge")
    staff = await MatrixUser.register(synapse, displayname="Maria Staff")
    room = await staff.create_room("support", invite=[bot.user_id])
    await encrypt(staff, room)
    mx = await start_matrix_world(tmp_path, synapse, bot=bot, staff=staff, room=room)
    yield mx
    await stop_world(mx.world)
    await staff.close()
    await bot.close()


async def test_an_encrypted_room_gets_nothing_in_the_clear_and_the_log_says_why(
    encrypted_room, caplog
):
    mx = encrypted_room
    assert len(refusals(caplog, mx.room)) == 1
    await mx.world.says(ANNA, "Where is my parcel?", first_name="Anna", last_name="Schmidt")
    rows = await eventually(lambda: failed_rows(mx), message="the thread's row failing")
    kind, attempts, error, _ = rows[0]
    assert kind == "staff.open" and attempts == 1
    assert f"{mx.room} {ENCRYPTED}" in error
    assert await posted_by_bot(mx) == []
    assert len(refusals(caplog, mx.room)) == 1


async def test_a_room_encrypted_while_running_gets_no_more_posts(tmp_path, synapse, caplog):
    caplog.set_level(logging.ERROR)
    mx = await start_matrix_world(tmp_path, synapse)
    try:
        root = await anna_writes(mx)  # an unencrypted room works as before
        await mx.staff.wait_for_thread_event(
            mx.room, root["event_id"], lambda e: "Where is my parcel?" in (body_of(e) or "")
        )
        [(last,)] = await mx.world.sql("select max(id) from outbox")
        await encrypt(mx.staff, mx.room)
        await eventually(lambda: refusals(caplog, mx.room), message="the refusal in the log")

        await mx.world.says(ANNA, "Any news?", first_name="Anna", last_name="Schmidt")
        await mx.world.says(ANNA, "Hello?", first_name="Anna", last_name="Schmidt")

        def carrying(rows: list[tuple[Any, ...]], words: str) -> list[tuple[Any, ...]]:
            return [r for r in rows if words in json.dumps(r[3])]

        async def both_failed() -> list[tuple[Any, ...]] | None:
            rows = await failed_rows(mx, last)
            if carrying(rows, "Any news?") and carrying(rows, "Hello?"):
                return rows
            return None

        rows = await eventually(both_failed, message="both posts failing")
        for words in ("Any news?", "Hello?"):
            [(kind, attempts, error, _)] = carrying(rows, words)
            assert kind == "staff.post" and attempts == 1
            assert f"{mx.room} {ENCRYPTED}" in error
        texts = [body_of(e) or "" for e in await posted_by_bot(mx)]
        assert not [t for t in texts if "Any news?" in t or "Hello?" in t]
        assert len(refusals(caplog, mx.room)) == 1
    finally:
        await stop_world(mx.world)
        await mx.staff.close()
        await mx.bot.close()


async def test_the_dispatcher_process_posts_nothing_once_the_room_is_encrypted(tmp_path, synapse):
    from tests.fakes.telegram import FakeTelegram
    from tests.process_kit import Bridge
    from tests.world import free_port

    bot = await MatrixUser.register(synapse, prefix="bridge", displayname="Support Bridge")
    staff = await MatrixUser.register(synapse, displayname="Maria Staff")
    room = await staff.create_room("support", invite=[bot.user_id])
    tg = FakeTelegram()
    await tg.start()
    port = free_port()
    database = tmp_path / "bridge.db"
    config = tmp_path / "bridge.toml"
    config.write_text(
        f"""
[bridge]
database = "sqlite+aiosqlite:///{database}"
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"
dispatch = "process"

[telegram]
token = "{tg.token}"
api_base = "{tg.base_url}"
mode = "webhook"
webhook_secret = "guard-secret-0123456789"

[matrix]
homeserver = "{synapse.base_url}"
user_id = "{bot.user_id}"
access_token = "{bot.access_token}"
room = "{room}"
"""
    )
    log = tmp_path / "bridge.log"
    bridge = Bridge(config, port, log)
    await bridge.start()

    def failed_posts() -> list[tuple[Any, ...]]:
        with sqlite3.connect(database) as db:
            return db.execute(
                "select attempts, last_error, payload from outbox"
                " where state = 'failed' and kind = 'staff.post'"
            ).fetchall()

    try:
        # The sending is done by the dispatcher process, which does not sync.
        await tg.deliver(tg.text_update(ANNA, "Where is my parcel?", first_name="Anna"))
        await staff.wait_for_event(room, lambda e: "Where is my parcel?" in (body_of(e) or ""), 30)
        await encrypt(staff, room)
        await eventually(
            lambda: f"{room} {ENCRYPTED}" in log.read_text(errors="replace"),
            timeout=30,
            message="the refusal in the log",
        )
        await tg.deliver(tg.text_update(ANNA, "Any news?", first_name="Anna"))
        [(attempts, error, payload)] = await eventually(
            failed_posts, timeout=30, message="the post failing"
        )
        assert attempts == 1 and f"{room} {ENCRYPTED}" in error and "Any news?" in payload
        events = await staff.messages(room, limit=200)
        assert not [e for e in events if "Any news?" in json.dumps(e.get("content"))]
    finally:
        await bridge.terminate()
        await tg.stop()
        await staff.close()
        await bot.close()


async def test_appservice_mode_posts_nothing_once_its_room_is_encrypted(tmp_path, caplog):
    from tests.test_matrix_appservice import appservice_world, puppet_of

    caplog.set_level(logging.ERROR)
    why = "is end-to-end encrypted; appservice mode needs an unencrypted room"
    async with appservice_world(tmp_path) as (world, staff, room, _):
        await world.says(ANNA, "Where is my parcel?", first_name="Anna", last_name="Schmidt")
        puppet = puppet_of(f"telegram_{ANNA}")
        await staff.wait_for_event(room, lambda e: body_of(e) == "Where is my parcel?", 30)
        [(last,)] = await world.sql("select max(id) from outbox")
        await encrypt(staff, room)
        await eventually(
            lambda: [r for r in caplog.records if f"{room} {why}" in r.getMessage()],
            timeout=30,
            message="the refusal in the log",
        )
        await world.says(ANNA, "Any news?", first_name="Anna", last_name="Schmidt")
        rows = await eventually(
            lambda: world.sql(
                "select kind, attempts, last_error from outbox"
                f" where state = 'failed' and kind = 'staff.post' and id > {last}"
            ),
            message="the post failing",
        )
        assert [(kind, attempts) for kind, attempts, _ in rows] == [("staff.post", 1)]
        assert f"{room} {why}" in rows[0][2]
        events = await staff.messages(room, limit=200)
        assert not [e for e in events if e.get("sender") == puppet and "Any news?" in str(e)]


async def test_appservice_mode_with_encryption_is_refused_at_the_start(tmp_path):
    config = tmp_path / "bridge.toml"
    config.write_text(
        "[matrix]\n"
        'homeserver = "http://127.0.0.1:9"\n'
        'user_id = "@bridge:localhost"\n'
        'room = "!support:localhost"\n'
        'mode = "appservice"\n'
        'as_token = "as-token-for-tests-0123456789"\n'
        'hs_token = "hs-token-for-tests-9876543210"\n'
        "encryption = true\n"
    )
    why = "appservice mode needs an unencrypted room"

    async def run(*args: str) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(ROOT / "run.py"),
            *args,
            "--config",
            str(config),
            cwd=str(tmp_path),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 120)
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()

    code, _, err = await run()
    assert code == 2
    assert "matrix.encryption" in err and why in err
    code, out, _ = await run("check")
    assert code == 1
    [settings_line] = out.splitlines()
    assert settings_line.startswith("settings") and "FAILED" in settings_line
    assert why in settings_line
