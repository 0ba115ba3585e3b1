"""Short links and statistics through the API: a link made with `/shorten`'s checks counts its
clicks, and `GET /stats` gives the figures `/stats` shows, as JSON."""

from __future__ import annotations

import aiohttp
import pytest

from tests.api_kit import Api, make_key
from tests.broadcast_kit import subscribers
from tests.commands_kit import AGENT, MANAGER, command
from tests.harness import eventually

ANNA = 6290001


@pytest.fixture
async def api(world):
    assert (await command(world, f"user role {MANAGER} manager")).ok
    return Api(world)


@pytest.fixture
async def keys(world):
    return {
        "agent": await make_key(world, "reader", "agent"),
        "manager": await make_key(world, "editor", "manager"),
    }


async def click(url: str, user_agent: str = "Mozilla/5.0") -> int:
    async with aiohttp.ClientSession() as http:
        async with http.get(url, allow_redirects=False, headers={"User-Agent": user_agent}) as r:
            return r.status


async def test_a_short_link_counts_its_clicks(world, api, keys):
    made = await api.post("/links", key=keys["agent"], body={"url": "https://example.org/sale"})
    assert made.status == 201, made.body
    link = made.body
    assert link["url"] == "https://example.org/sale" and link["clicks"] == 0
    assert link["short_url"] == f"{world.bridge.url}/s/{link['code']}"
    assert link["created_by"] == "reader (API)" and link["broadcast_id"] is None
    assert await click(link["short_url"]) == 302
    # Another visitor (one visitor's clicks on a link count once a minute).
    assert await click(link["short_url"], user_agent="Mozilla/5.0 (iPhone)") == 302
    assert await click(link["short_url"], "TelegramBot (like TwitterBot)") == 302  # a preview

    async def counted():
        shown = await api.get(f"/links/{link['id']}", key=keys["agent"])
        return shown.body["clicks"] == 2 and shown.body

    shown = await eventually(counted, message="two clicks")
    assert shown["last_click"] is not None and shown["clicked_by"] == 0
    listed = await command(world, "shorten list", user=AGENT)
    assert f"/s/{link['code']} → https://example.org/sale: *2 clicks*" in listed.lines[0]
    assert (await api.get("/links/999", key=keys["agent"])).status == 404
    assert (await api.get("/links")).status == 401


@pytest.mark.parametrize(
    "url",
    ["example.org/sale", "ftp://example.org/file", "https://exa mple.org", "https://", ""],
)
async def test_what_cannot_be_shortened_is_refused(world, api, keys, url):
    answer = await api.post("/links", key=keys["agent"], body={"url": url})
    assert answer.status == 422, answer.body
    assert answer.error["field"] == "url"
    assert await world.sql("select count(*) from short_links") == [(0,)]


async def test_links_come_in_pages_oldest_first(world, api, keys):
    urls = [f"https://example.org/{n}" for n in range(5)]
    for url in urls:
        assert (await api.post("/links", key=keys["agent"], body={"url": url})).status == 201
    path, seen = "/links?limit=2", []
    while path:
        page = await api.get(path, key=keys["agent"])
        seen += [link["url"] for link in page.body["items"]]
        path = page.body["next"] and page.body["next"].removeprefix("/api/v1")
    assert seen == urls


async def test_stats_are_the_figures_of_the_command(world, api, keys):
    assert (await command(world, "channel create news --join JOIN-NEWS")).ok
    chats = await subscribers(world, 2)
    await world.says(ANNA, "Hello", first_name="Anna")
    await world.thread_of(ANNA)
    made = await api.post("/links", key=keys["agent"], body={"url": "https://example.org/x"})
    assert await click(made.body["short_url"]) == 302
    await eventually(lambda: world.sql("select 1 from link_clicks"), message="the click stored")
    assert (await api.get("/stats", key=keys["agent"])).status == 403
    answer = await api.get("/stats?days=30", key=keys["manager"])
    assert answer.status == 200, answer.body
    stats = answer.body
    assert stats["days"] == 30
    [telegram] = stats["platforms"]
    assert telegram["platform"] == "telegram"
    assert telegram["inbound"] == len(chats) + 1 and telegram["contacts"] == len(chats) + 1
    assert telegram["active_contacts"] == len(chats) + 1
    assert sum(d["inbound"] for d in stats["daily"]) == len(chats) + 1
    assert stats["channels"] == [{"name": "news", "members": 2}]
    [link] = stats["links"]
    assert link["code"] == made.body["code"] and link["clicks"] == 1
    assert link["clicks_in_period"] == 1
    said = await command(world, "stats 30", user=MANAGER)
    assert f"*telegram*: {telegram['inbound']} in, {telegram['outbound']} out" in said.lines[0]
    default = await api.get("/stats", key=keys["manager"])
    assert default.body["days"] == 14
    for days in ("0", "366", "two", "1.5"):
        bad = await api.get(f"/stats?days={days}", key=keys["manager"])
        assert bad.status == 422 and bad.error["field"] == "days", days
    unknown = await api.get("/stats?weeks=2", key=keys["manager"])
    assert unknown.status == 422 and unknown.error["field"] == "weeks"


async def test_stats_follow_a_broadcast_stage_by_stage(world, api, keys):
    assert (await command(world, "channel create news --join JOIN-NEWS")).ok
    chats = await subscribers(world, 3)
    body = {"platforms": ["telegram"], "text": "Sale: https://shop.example.org/a"}
    created = await api.post("/broadcasts", key=keys["manager"], body=body)
    number = created.body["broadcast"]["id"]
    assert (await api.post(f"/broadcasts/{number}/confirm", key=keys["manager"])).status == 202

    async def sent():
        stats = (await api.get("/stats", key=keys["manager"])).body
        counted = stats["platforms"] and stats["platforms"][0]["broadcast"] == len(chats)
        return counted and stats["broadcasts"][0]["sent"] == len(chats) and stats

    stats = await eventually(sent, timeout=20, message="the broadcast's figures")
    [funnel] = stats["broadcasts"]
    assert funnel["id"] == number and funnel["queued"] == len(chats)
    assert funnel["click_rate"] == 0.0 and funnel["clicks"] == 0
    assert stats["platforms"][0]["broadcast"] == len(chats)
