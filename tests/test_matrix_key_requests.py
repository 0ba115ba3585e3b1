"""Key requests in an encrypted Matrix room: a staff device that missed a room key of the bot
asks for it and gets it; a device of someone who is not staff gets nothing."""

from __future__ import annotations

import logging

from tests import matrix_e2e_kit
from tests.harness import eventually
from tests.matrix_e2e_kit import ANNA, E2eWorld
from tests.matrix_e2e_user import E2eStaff

e2e = matrix_e2e_kit.e2e  # the fixture


async def _second_device(e2e: E2eWorld, synapse, tmp_path) -> tuple[E2eStaff, str]:
    """Maria's second device, logged in after the bot posted a card it cannot read."""
    await e2e.world.says(ANNA, "Where is my parcel?", first_name="Anna")
    card = (await e2e.card(e2e.maria))["event_id"]
    laptop = await e2e.maria.another_device(synapse, tmp_path / "maria-laptop")
    await eventually(lambda: card in laptop.megolm or None, message="the card, encrypted")
    assert laptop.read(card) is None
    return laptop, card


async def test_a_staff_device_that_missed_a_key_asks_and_reads_the_bots_post(
    e2e, synapse, tmp_path
):
    laptop, card = await _second_device(e2e, synapse, tmp_path)
    try:
        await laptop.ask_key(card, e2e.bot.user_id)
        clear = await eventually(lambda: laptop.read(card), message="the forwarded key")
        assert f"telegram id {ANNA}" in clear["content"]["body"]
    finally:
        await laptop.close()


async def test_a_device_of_a_server_that_is_not_staff_gets_no_key(e2e, synapse, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="connectors.matrix_keyshare")
    laptop, card = await _second_device(e2e, synapse, tmp_path)
    # As if Maria's homeserver were not among the staff servers (the test has one server).
    e2e.surface()._crypto._share.staff_servers = frozenset({"staff.example.org"})
    try:
        await laptop.ask_key(card, e2e.bot.user_id)
        await eventually(
            lambda: "not staff" in caplog.text or None, message="the request turned down"
        )
        # Nothing was sent for it: after a sync of the device begun since, still sealed.
        mark = laptop.syncs
        await eventually(lambda: laptop.syncs >= mark + 2 or None, message="a sync")
        assert laptop.read(card) is None
    finally:
        await laptop.close()
