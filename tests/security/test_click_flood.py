"""Every GET of a short link wrote a click row: anyone could fill the database and inflate a
broadcast's click figures by reloading. A visitor (their own link's token, else their address
and user agent) counts once per link and minute; the redirect works every time."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import aiohttp

from bridge.app import PIPELINE
from tests.commands_kit import AGENT, command
from tests.test_short_links import clicks, contact_writes, service

ANNA = 7420991
SALE = "https://shop.example/sale"
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) Firefox/126.0"
PHONE_BROWSER = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) Safari/604.1"


async def get_many(url: str, times: int, user_agent: str) -> list[int]:
    """`times` GETs of one visitor, a few at once; the statuses."""
    async with aiohttp.ClientSession(headers={"User-Agent": user_agent}) as http:

        async def one() -> int:
            async with http.get(url, allow_redirects=False) as resp:
                return resp.status

        statuses: list[int] = []
        for start in range(0, times, 10):
            statuses += await asyncio.gather(*(one() for _ in range(min(10, times - start))))
        return statuses


async def shortened(world) -> str:
    reply = await command(world, f"shorten {SALE}", user=AGENT)
    assert reply.ok, reply.text
    return reply.title or ""


async def test_a_hundred_gets_by_one_visitor_within_a_minute_count_once(world):
    short = await shortened(world)

    assert await get_many(short, 100, BROWSER) == [302] * 100

    assert len(await clicks(world)) == 1


async def test_two_visitors_count_twice(world):
    short = await shortened(world)

    await get_many(short, 30, BROWSER)
    await get_many(short, 30, PHONE_BROWSER)

    assert len(await clicks(world)) == 2


async def test_a_recipients_own_link_counts_once_a_minute_whoever_reloads_it(world):
    anna = await contact_writes(world, ANNA, "Anna")
    short = await shortened(world)
    own = await service(world).recipient_url(short, anna)

    await get_many(own, 50, BROWSER)
    await get_many(own, 50, PHONE_BROWSER)
    assert [contact for _, contact in await clicks(world)] == [anna]

    pipeline = world.bridge.app[PIPELINE]
    later = pipeline.clock() + timedelta(seconds=61)
    pipeline.clock = lambda: later
    await get_many(own, 10, BROWSER)
    assert [contact for _, contact in await clicks(world)] == [anna, anna]
