"""Traffic for the statistics tests, made the way users make it: through the fakes."""

from __future__ import annotations

import aiohttp

from tests.commands_kit import AGENT, MANAGER, command
from tests.harness import eventually

ANNA, BEN = 8810001, 8810002
CLEO = "4917612345678"
SALE = "https://shop.example.org/sale?from=news&x=1"


async def traffic(world) -> int:
    """Anna and Ben join `news` on Telegram, Anna asks and an agent answers, Cleo writes on
    WhatsApp (when the world has it), a broadcast with a link reaches both subscribers and
    Anna clicks her link; returns the broadcast's number once it is done."""
    world.slack.add_user(MANAGER, "Max Manager", "max")
    world.slack.add_user(AGENT, "Alex Agent", "alex")
    assert (await command(world, f"user role {MANAGER} manager")).ok
    assert (await command(world, "channel create news --join JOIN-NEWS")).ok
    for chat, name in ((ANNA, "Anna"), (BEN, "Ben")):
        await world.says(chat, "JOIN-NEWS", first_name=name)
    await eventually(
        lambda: world.tg.messages_to(ANNA) and world.tg.messages_to(BEN), message="join replies"
    )
    await world.says(ANNA, "Where is my parcel?", first_name="Anna")
    root = await world.thread_of(ANNA)
    await world.slack.agent_says(root.channel, root.ts, "It arrives tomorrow.")
    await eventually(
        lambda: any("tomorrow" in (m.text or "") for m in world.tg.messages_to(ANNA)),
        message="the agent's answer",
    )
    if world.wa is not None:
        assert await world.wa.customer_says(CLEO, "Hallo!") == 200
        await world.thread_of(CLEO)

    created = await command(world, f'broadcast new news "Sale: {SALE} now!"', user=MANAGER)
    assert created.ok, created.text
    number = int(created.title.split("#")[1].split()[0])
    assert (await command(world, f"broadcast confirm {number}", user=MANAGER)).ok

    def newsletter(chat: int) -> str | None:
        found = [m.text for m in world.tg.messages_to(chat) if m.text and "Sale" in m.text]
        return found[0] if found else None

    await eventually(lambda: newsletter(ANNA) and newsletter(BEN), message="newsletters")
    anna_link = newsletter(ANNA).split()[1]
    async with aiohttp.ClientSession() as http:
        async with http.get(anna_link, allow_redirects=False) as response:
            assert response.status == 302
    await eventually(
        lambda: world.sql("select count(*) from link_clicks where contact_id is not null"),
        message="the click",
    )

    async def finished():
        return await world.sql(f"select 1 from broadcasts where id = {number} and state = 'done'")

    await eventually(finished, timeout=20, message="the broadcast's end")
    return number
