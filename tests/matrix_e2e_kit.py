"""An encrypted Matrix room for tests: the bridge with `[matrix] encryption = true` and two
staff members whose clients encrypt (the `e2e` fixture).

A test module takes the fixture with `e2e = matrix_e2e_kit.e2e` and imports the rest by name.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import pytest

from bridge.app import SURFACES
from tests.matrix_e2e_user import E2eStaff
from tests.matrix_user import MatrixUser
from tests.synapse import Synapse
from tests.test_matrix_surface import synced
from tests.world import World, start_world, stop_world

ANNA = 6160101
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8


@dataclass
class E2eWorld:
    """The bridge (encryption on) and two encrypting staff clients in an encrypted room."""

    world: World
    maria: E2eStaff
    ben: E2eStaff
    bot: MatrixUser
    room: str

    def surface(self):
        return next(s for s in self.world.bridge.app[SURFACES] if s.name == "matrix")

    async def card(self, staff: E2eStaff, chat_id: int = ANNA) -> dict:
        """The contact card as the staff client decrypted it."""
        return await staff.wait_for(
            lambda e: e.get("sender") == self.bot.user_id
            and f"telegram id {chat_id}" in e["content"].get("body", "")
        )

    async def in_thread(self, staff: E2eStaff, root: str, words: str) -> dict:
        """A decrypted event in the thread whose body has these words."""

        def match(event: dict) -> bool:
            relation = event["content"].get("m.relates_to") or {}
            return relation.get("event_id") == root and words in event["content"].get("body", "")

        return await staff.wait_for(match)


@pytest.fixture(params=["sqlite"])
async def e2e(request, tmp_path, synapse: Synapse):
    """Parametrized (indirectly): "sqlite", "postgresql", or "password" (the bot logs in
    with a password and a pickle_key instead of an access token)."""
    password = secrets.token_hex(8)
    bot = await MatrixUser.register(
        synapse, prefix="bridge", displayname="Support Bridge", password=password
    )
    maria = await E2eStaff.login(synapse, tmp_path / "maria", "maria")
    ben = await E2eStaff.login(synapse, tmp_path / "ben", "ben")
    room = await maria.create_encrypted_room(invite=[bot.user_id, ben.user_id])
    await ben.join(room)
    login: dict[str, str] = {"access_token": bot.access_token}
    if request.param == "password":
        login = {"password": password, "pickle_key": "a passphrase of the test"}
    extra = {}
    if request.param == "postgresql":
        cluster = request.getfixturevalue("pg_cluster")
        extra["database"] = str(cluster.create_database(f"e2e{secrets.token_hex(3)}"))
    world = await start_world(
        tmp_path / "bridge",
        matrix={
            "homeserver": synapse.base_url,
            "user_id": bot.user_id,
            "room": room,
            "encryption": True,
            **login,
        },
        **extra,
    )
    await synced(world)
    ew = E2eWorld(world, maria, ben, bot, room)
    yield ew
    await stop_world(ew.world)
    await maria.close()
    await ben.close()
    await bot.close()
