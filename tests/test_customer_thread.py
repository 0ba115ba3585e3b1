"""Every Telegram customer gets their own Slack thread, with a contact card kept up to date."""

from __future__ import annotations

import pytest

from tests.conftest import ALL_MODES
from tests.harness import eventually

pytestmark = pytest.mark.parametrize("world", ALL_MODES, indirect=True, ids=lambda p: "+".join(p))


async def test_each_customer_gets_their_own_thread_with_a_contact_card(world):
    await world.says(
        111, "Hi, my order is late", first_name="Ann", last_name="Lee", username="annlee"
    )
    await world.says(222, "Hello?", first_name="Bob")
    ann = await world.thread_of(111)
    bob = await world.thread_of(222)
    assert ann.ts != bob.ts
    card = str(ann.blocks)
    assert "Ann Lee" in card and "@annlee" in card and "telegram" in card and "open" in card
    assert await eventually(lambda: world.texts(ann) == ["Hi, my order is late"])
    assert await eventually(lambda: world.texts(bob) == ["Hello?"])


async def test_customer_messages_appear_under_the_customers_name_in_order(world):
    for n in range(5):
        await world.says(333, f"message {n}", first_name="Cleo")
    root = await world.thread_of(333)
    await eventually(lambda: len("\n".join(world.texts(root)).split("\n")) == 5)
    assert "\n".join(world.texts(root)).split("\n") == [f"message {n}" for n in range(5)]
    assert {m.username for m in world.replies(root)} == {"Cleo"}


async def test_contact_card_is_updated_in_place_when_the_count_changes(world):
    await world.says(444, "first", first_name="Dee")
    root = await world.thread_of(444)
    await world.says(444, "second", first_name="Dee")
    await eventually(
        lambda: "*Messages*\\n2" in str(world.slack.find(root.channel, root.ts).blocks)
    )
    assert len([m for m in world.roots() if "`444`" in str(m.blocks)]) == 1
