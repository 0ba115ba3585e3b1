"""What a customer formats shows formatted in the Matrix thread, against a real Synapse:
Telegram's entities and WhatsApp's own markers become HTML, an edit keeps them, and nothing
else a customer types becomes markup."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fakes.whatsapp import FakeWhatsApp
from tests.matrix_user import MatrixUser, body_of, relation_of
from tests.synapse import Synapse
from tests.test_matrix_surface import synced
from tests.world import World, start_world, stop_world

ANN = 7270001
WA_ID = "4915112345678"


@pytest.fixture
async def mx(tmp_path, synapse: Synapse):
    bot = await MatrixUser.register(synapse, prefix="bridge", displayname="Support Bridge")
    staff = await MatrixUser.register(synapse, displayname="Maria Staff")
    room = await staff.create_room("support", invite=[bot.user_id])
    world = await start_world(
        tmp_path,
        whatsapp=FakeWhatsApp(),
        matrix={
            "homeserver": synapse.base_url,
            "user_id": bot.user_id,
            "access_token": bot.access_token,
            "room": room,
        },
    )
    await synced(world)
    yield world, staff, room
    await stop_world(world)
    await staff.close()
    await bot.close()


async def mirrored(mx: tuple[World, MatrixUser, str], words: str) -> dict[str, Any]:
    """The thread event whose plain body holds `words`."""
    _, staff, room = mx

    def shows(event: dict[str, Any]) -> bool:
        return relation_of(event).get("rel_type") == "m.thread" and words in (body_of(event) or "")

    return await staff.wait_for_event(room, shows, timeout=20)


async def test_a_telegram_customers_bold_and_quote_show_as_html(mx):
    world, _, _ = mx
    await world.customer(world.tg.sample_update("entities_formatting", ANN, first_name="Ann"))
    event = await mirrored(mx, "Quoted line")
    content = event["content"]
    assert content["body"] == (
        "Ann: Bold italic underline strike spoiler code\nprint('hi')\n> Quoted line"
    )
    assert content["formatted_body"] == (
        "<b>Ann</b>: <b>Bold</b> <i>italic</i> underline <s>strike</s> spoiler <code>code</code>"
        "<pre>print('hi')</pre><blockquote>Quoted line</blockquote>"
    )


async def test_a_whatsapp_customers_markers_show_as_html_and_their_tags_stay_text(mx):
    world, _, _ = mx
    assert await world.wa.customer_says(WA_ID, "*Urgent*: my <b>order</b> _4711_", name="Bo") == 200
    event = await mirrored(mx, "Urgent")
    assert event["content"]["formatted_body"] == (
        "<b>Bo</b>: <b>Urgent</b>: my &lt;b&gt;order&lt;/b&gt; <i>4711</i>"
    )
    assert event["content"]["body"] == "Bo: Urgent: my <b>order</b> 4711"


async def test_an_edit_keeps_its_formatting(mx):
    world, staff, room = mx
    update = await world.says(ANN, "Order 1234, not 4321")
    await mirrored(mx, "Order 1234")
    message_id = update["message"]["message_id"]
    await world.customer(world.tg.sample_update("edited_bold", ANN, message_id=message_id))

    def replaces(event: dict[str, Any]) -> bool:
        return relation_of(event).get("rel_type") == "m.replace"

    edit = await staff.wait_for_event(room, replaces, timeout=20)
    new = edit["content"]["m.new_content"]
    assert new["formatted_body"] == "<b>Ann</b>: Order <b>4321</b>, not <i>1234</i> (edited)"
    assert new["body"] == "Ann: Order 4321, not 1234 (edited)"
