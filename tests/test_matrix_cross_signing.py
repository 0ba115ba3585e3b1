"""The bot's device cross-signed by its own account, against a real Synapse: what another user's
/keys/query shows, checked with libsodium's Ed25519 and Synapse's own canonical JSON."""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import canonicaljson
import pytest
import vodozemac
from nacl.signing import VerifyKey
from pydantic import SecretStr
from unpaddedbase64 import decode_base64

from bridge.app import SURFACES
from bridge.state import KvState
from connectors.matrix_api import Homeserver
from connectors.matrix_cross_signing import KEYS_KEY, Outcome, SigningKeys, cross_sign
from storage import Database
from tests.harness import eventually
from tests.matrix_user import MatrixUser, body_of
from tests.world import World, start_world, stop_world

PREFIX = "surface.matrix."
UPLOADS = (
    "/_matrix/client/v3/keys/device_signing/upload",
    "/_matrix/client/v3/keys/signatures/upload",
)


@dataclass
class Calls:
    """Every request the bot's HTTP session made: (method, path)."""

    seen: list[tuple[str, str]] = field(default_factory=list)

    def uploads(self) -> list[str]:
        return [path for method, path in self.seen if method == "POST" and path in UPLOADS]


@pytest.fixture
async def http() -> AsyncIterator[tuple[aiohttp.ClientSession, Calls]]:
    calls = Calls()
    trace = aiohttp.TraceConfig()

    async def started(_s: Any, _c: Any, params: aiohttp.TraceRequestStartParams) -> None:
        calls.seen.append((params.method, params.url.path))

    trace.on_request_start.append(started)
    async with aiohttp.ClientSession(trace_configs=[trace]) as session:
        yield session, calls


async def open_db(path: Path) -> Database:
    db = Database(f"sqlite+aiosqlite:///{path}")
    await db.migrate()
    return db


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await open_db(tmp_path / "bridge.db")
    yield database
    await database.close()


@dataclass
class Bot:
    """The bot's account: its user, password and the access token of its registration."""

    user_id: str
    password: str
    token: str


@pytest.fixture
async def bot(synapse) -> Bot:
    password = secrets.token_urlsafe(12)
    user = await MatrixUser.register(synapse, prefix="bridge", password=password)
    await user.close()
    return Bot(user.user_id, password, user.access_token)


def homeserver(synapse, bot: Bot, http, *, with_password: bool = True) -> Homeserver:
    hs = Homeserver(
        synapse.base_url,
        bot.user_id,
        None,
        SecretStr(bot.password) if with_password else None,
        http,
    )
    if not with_password:
        hs.client.access_token = bot.token
    return hs


def hs_password(bot: Bot) -> SecretStr:
    return SecretStr(bot.password)


async def device_id_of(hs: Homeserver) -> str:
    await hs.ready()
    return str((await hs.api("GET", "/_matrix/client/v3/account/whoami"))["device_id"])


async def upload_device_keys(hs: Homeserver) -> None:
    """What an encrypting client does on its first start: its identity keys, self-signed."""
    await hs.ready()
    await keys_for(MatrixUser(hs.url, hs.client.user, hs.client.access_token))


async def keys_for(device_user: MatrixUser) -> None:
    """Upload device keys for the device of this user's access token."""
    user_id = device_user.user_id
    async with device_user:
        who = await device_user.request("GET", "/_matrix/client/v3/account/whoami")
        device = who["device_id"]
        account = vodozemac.Account()
        keys: dict[str, Any] = {
            "user_id": user_id,
            "device_id": device,
            "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
            "keys": {
                f"curve25519:{device}": account.curve25519_key.to_base64(),
                f"ed25519:{device}": account.ed25519_key.to_base64(),
            },
        }
        signature = account.sign(canonicaljson.encode_canonical_json(keys)).to_base64()
        keys["signatures"] = {user_id: {f"ed25519:{device}": signature}}
        await device_user.request(
            "POST", "/_matrix/client/v3/keys/upload", json_body={"device_keys": keys}
        )


async def seen_by_staff(synapse, user_id: str) -> dict[str, Any]:
    async with await MatrixUser.register(synapse) as staff:
        return await staff.request(
            "POST", "/_matrix/client/v3/keys/query", json_body={"device_keys": {user_id: []}}
        )


def the_key(obj: dict[str, Any]) -> str:
    (public,) = obj["keys"].values()
    return public


def signed_by(obj: dict[str, Any], user_id: str, public: str) -> bool:
    """Checked apart from the bridge's code: libsodium over Synapse's canonical JSON."""
    signature = obj.get("signatures", {}).get(user_id, {}).get(f"ed25519:{public}")
    if signature is None:
        return False
    plain = {k: v for k, v in obj.items() if k not in ("signatures", "unsigned")}
    VerifyKey(decode_base64(public)).verify(
        canonicaljson.encode_canonical_json(plain), decode_base64(signature)
    )
    return True


async def test_another_user_sees_the_bots_keys_and_its_device_signed_by_them(
    synapse, bot, http, db
):
    session, _ = http
    hs = homeserver(synapse, bot, session)
    await upload_device_keys(hs)
    device = await device_id_of(hs)

    outcome = await cross_sign(hs, KvState(db, PREFIX), bot.user_id, device, hs_password(bot))

    assert outcome is Outcome.SIGNED
    answer = await seen_by_staff(synapse, bot.user_id)
    master = answer["master_keys"][bot.user_id]
    self_signing = answer["self_signing_keys"][bot.user_id]
    assert master["usage"] == ["master"] and self_signing["usage"] == ["self_signing"]
    assert signed_by(self_signing, bot.user_id, the_key(master))
    assert signed_by(answer["device_keys"][bot.user_id][device], bot.user_id, the_key(self_signing))
    # The private keys are in the bridge's database, not in a file.
    stored = SigningKeys.from_json(await db.read_tx(lambda tx: tx.kv_get(PREFIX + KEYS_KEY)))
    assert stored.public("master") == the_key(master)


async def test_a_second_start_uploads_nothing_new(synapse, bot, http, db):
    session, calls = http
    hs = homeserver(synapse, bot, session)
    await upload_device_keys(hs)
    device = await device_id_of(hs)
    state = KvState(db, PREFIX)
    await cross_sign(hs, state, bot.user_id, device, hs_password(bot))
    before = await seen_by_staff(synapse, bot.user_id)
    calls.seen.clear()

    outcome = await cross_sign(hs, state, bot.user_id, device, hs_password(bot))

    assert outcome is Outcome.ALREADY_DONE
    assert calls.uploads() == []
    after = await seen_by_staff(synapse, bot.user_id)
    assert after["master_keys"] == before["master_keys"]


async def test_a_new_device_of_the_bot_is_signed_with_the_same_keys(synapse, bot, http, db):
    session, calls = http
    state = KvState(db, PREFIX)
    first = homeserver(synapse, bot, session)
    await upload_device_keys(first)
    await cross_sign(first, state, bot.user_id, await device_id_of(first), hs_password(bot))
    master = the_key((await seen_by_staff(synapse, bot.user_id))["master_keys"][bot.user_id])
    second = homeserver(synapse, bot, session)  # logs in again: another device
    await upload_device_keys(second)
    device = await device_id_of(second)
    calls.seen.clear()

    outcome = await cross_sign(second, state, bot.user_id, device, hs_password(bot))

    assert outcome is Outcome.SIGNED
    assert calls.uploads() == ["/_matrix/client/v3/keys/signatures/upload"]
    answer = await seen_by_staff(synapse, bot.user_id)
    assert the_key(answer["master_keys"][bot.user_id]) == master
    self_signing = the_key(answer["self_signing_keys"][bot.user_id])
    assert signed_by(answer["device_keys"][bot.user_id][device], bot.user_id, self_signing)


async def test_a_device_without_keys_yet_is_signed_on_a_later_run(synapse, bot, http, db):
    session, _ = http
    state = KvState(db, PREFIX)
    hs = homeserver(synapse, bot, session)
    device = await device_id_of(hs)

    assert await cross_sign(hs, state, bot.user_id, device, None) is Outcome.NO_DEVICE_KEYS
    await upload_device_keys(hs)
    assert await cross_sign(hs, state, bot.user_id, device, None) is Outcome.SIGNED

    answer = await seen_by_staff(synapse, bot.user_id)
    self_signing = the_key(answer["self_signing_keys"][bot.user_id])
    assert signed_by(answer["device_keys"][bot.user_id][device], bot.user_id, self_signing)


async def test_a_first_setup_with_only_an_access_token_needs_no_password(synapse, bot, http, db):
    # Spec v1.11 (MSC3967): uploading the first cross-signing keys asks for no auth.
    session, _ = http
    hs = homeserver(synapse, bot, session, with_password=False)
    await upload_device_keys(hs)
    device = await device_id_of(hs)

    assert await cross_sign(hs, KvState(db, PREFIX), bot.user_id, device, None) is Outcome.SIGNED

    answer = await seen_by_staff(synapse, bot.user_id)
    self_signing = the_key(answer["self_signing_keys"][bot.user_id])
    assert signed_by(answer["device_keys"][bot.user_id][device], bot.user_id, self_signing)


async def test_replacing_the_keys_without_the_password_says_so_in_the_log(
    synapse, bot, http, db, tmp_path, caplog
):
    session, calls = http
    hs = homeserver(synapse, bot, session, with_password=False)
    await upload_device_keys(hs)
    device = await device_id_of(hs)
    await cross_sign(hs, KvState(db, PREFIX), bot.user_id, device, None)
    before = await seen_by_staff(synapse, bot.user_id)
    fresh = await open_db(tmp_path / "fresh.db")  # the bridge's database started anew
    calls.seen.clear()
    try:
        with caplog.at_level(logging.WARNING, logger="connectors.matrix_cross_signing"):
            outcome = await cross_sign(hs, KvState(fresh, PREFIX), bot.user_id, device, None)
    finally:
        await fresh.close()

    assert outcome is Outcome.NEEDS_PASSWORD
    assert "needs [matrix] password once" in caplog.text
    after = await seen_by_staff(synapse, bot.user_id)
    assert after["master_keys"] == before["master_keys"]
    # One refused try at the keys; the device keeps the signature it had.
    assert calls.uploads() == ["/_matrix/client/v3/keys/device_signing/upload"]
    self_signing = the_key(after["self_signing_keys"][bot.user_id])
    assert signed_by(after["device_keys"][bot.user_id][device], bot.user_id, self_signing)


async def test_a_wrong_password_is_named_in_the_log_and_the_old_keys_stay(
    synapse, bot, http, db, tmp_path, caplog
):
    session, _ = http
    hs = homeserver(synapse, bot, session)
    await upload_device_keys(hs)
    device = await device_id_of(hs)
    await cross_sign(hs, KvState(db, PREFIX), bot.user_id, device, hs_password(bot))
    before = await seen_by_staff(synapse, bot.user_id)
    fresh = await open_db(tmp_path / "fresh.db")
    try:
        with caplog.at_level(logging.WARNING, logger="connectors.matrix_cross_signing"):
            outcome = await cross_sign(
                hs, KvState(fresh, PREFIX), bot.user_id, device, SecretStr("not-the-password")
            )
    finally:
        await fresh.close()

    assert outcome is Outcome.NEEDS_PASSWORD
    assert "refused [matrix] password" in caplog.text
    after = await seen_by_staff(synapse, bot.user_id)
    assert after["master_keys"] == before["master_keys"]


async def test_with_the_password_new_keys_replace_the_old_ones(synapse, bot, http, db, tmp_path):
    session, _ = http
    hs = homeserver(synapse, bot, session)
    await upload_device_keys(hs)
    device = await device_id_of(hs)
    await cross_sign(hs, KvState(db, PREFIX), bot.user_id, device, hs_password(bot))
    old = the_key((await seen_by_staff(synapse, bot.user_id))["master_keys"][bot.user_id])
    fresh = await open_db(tmp_path / "fresh.db")
    try:
        state = KvState(fresh, PREFIX)
        outcome = await cross_sign(hs, state, bot.user_id, device, hs_password(bot))
        keys = SigningKeys.from_json(await fresh.read_tx(lambda tx: tx.kv_get(PREFIX + KEYS_KEY)))
    finally:
        await fresh.close()

    assert outcome is Outcome.SIGNED
    answer = await seen_by_staff(synapse, bot.user_id)
    assert the_key(answer["master_keys"][bot.user_id]) == keys.public("master") != old
    assert signed_by(
        answer["device_keys"][bot.user_id][device], bot.user_id, keys.public("self_signing")
    )


# -- the bridge: the surface cross-signs its device when it starts with encryption on ---------


class Memory:
    """A key-value store of another client of the same account."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    async def get(self, key: str) -> str | None:
        return self.values.get(key)

    async def put(self, key: str, value: str) -> None:
        self.values[key] = value


async def bridge_with_encryption(tmp_path: Path, synapse, bot: Bot, matrix: dict[str, Any]):
    staff = await MatrixUser.register(synapse)
    room = await staff.create_room("support", invite=[bot.user_id])
    world = await start_world(
        tmp_path,
        matrix={
            "homeserver": synapse.base_url,
            "user_id": bot.user_id,
            "room": room,
            "encryption": True,
            **matrix,
        },
    )
    return world, staff, room


def surface_of(world: World) -> Any:
    return next(s for s in world.bridge.app[SURFACES] if s.name == "matrix")


async def test_the_bridge_started_with_encryption_cross_signs_its_device(synapse, bot, tmp_path):
    world, staff, _ = await bridge_with_encryption(
        tmp_path, synapse, bot, {"password": bot.password}
    )
    try:
        # Logged in with the password: a device of its own, whose keys the bridge uploads.
        client = surface_of(world).client

        async def signed() -> bool:
            answer = await seen_by_staff(synapse, bot.user_id)
            self_signing = answer.get("self_signing_keys", {}).get(bot.user_id)
            device = answer["device_keys"][bot.user_id].get(client.device_id, {})
            return self_signing is not None and signed_by(
                device, bot.user_id, the_key(self_signing)
            )

        await eventually(signed, timeout=60, interval=0.5, message="the bot's device signed")
    finally:
        await stop_world(world)
        await staff.close()


async def test_without_the_password_the_bridge_says_why_and_keeps_running(
    synapse, bot, http, tmp_path, caplog
):
    # Another client of the account set up its cross-signing: replacing it needs the password.
    session, _ = http
    other = homeserver(synapse, bot, session)
    await upload_device_keys(other)
    await cross_sign(other, Memory(), bot.user_id, await device_id_of(other), hs_password(bot))
    caplog.set_level(logging.WARNING, logger="connectors.matrix_cross_signing")
    world, staff, room = await bridge_with_encryption(
        tmp_path, synapse, bot, {"access_token": bot.token}
    )
    try:
        await eventually(
            lambda: "needs [matrix] password once" in caplog.text,
            timeout=60,
            message="the log line about the password",
        )
        await world.says(6160002, "Hello?", first_name="Ben")
        card = await staff.wait_for_event(
            room, lambda e: e.get("sender") == bot.user_id and "Ben" in (body_of(e) or "")
        )
        assert card["room_id"] == room
    finally:
        await stop_world(world)
        await staff.close()
