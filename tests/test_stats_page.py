"""GET /stats: the login link /stats answers opens a self-contained HTML page with the figures;
no token is 401, a wrong or expired one 403; scripts may use `[stats] api_key` as a Bearer."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from html import unescape

import aiohttp
import pytest
from sqlalchemy import update

from bridge.app import PIPELINE
from bridge.config import load_settings
from bridge.errors import ConfigError
from storage.tables import broadcasts
from tests.commands_kit import ADMIN, MANAGER, command, services_of
from tests.stats_kit import SALE, traffic
from tests.world import start_world, stop_world

API_KEY = "k3y-for-scripts-0123456789abcdef"


@pytest.fixture
async def busy(tmp_path):
    """A bridge with traffic, a broadcast that was clicked, and an API key for scripts."""
    world = await start_world(tmp_path, sections={"stats": {"api_key": API_KEY}})
    await traffic(world)
    yield world
    await stop_world(world)


async def login_link(world, line: str = "stats", *, user: str = MANAGER) -> str:
    """The link /stats answers in Slack (only the caller sees it)."""
    reply = await command(world, line, user=user)
    assert reply.ok, reply.text
    [(_, value)] = reply.fields
    return value.split()[0]


async def get(url: str, headers: dict[str, str] | None = None):
    """(status, headers, body) of a GET."""
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers or {}) as resp:
        return resp.status, resp.headers, await resp.text()


def visible(page: str) -> str:
    """The page's text as a reader sees it: tags dropped, entities decoded, spaces joined."""
    text = re.sub(r"<style>.*?</style>|<title>.*?</title>", " ", page, flags=re.S)
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", text)).split())


async def test_the_login_link_opens_the_page_with_the_figures(busy):
    status, headers, page = await get(await login_link(busy))
    assert status == 200, page
    assert headers["Content-Type"].startswith("text/html")
    assert headers["Cache-Control"] == "no-store"
    assert headers["Referrer-Policy"] == "no-referrer"
    text = visible(page)
    assert "Statistics The last 14 days:" in text
    # Cards: Anna's and Ben's JOIN-NEWS and Anna's question; the join confirmations and the
    # agent's answer; the two newsletters; three contacts, all active.
    assert "3 messages in" in text
    assert "3 messages out in conversations" in text
    assert "2 broadcast messages sent" in text
    assert "2 contacts active in the last 30 days, of 2" in text
    assert "telegram 3 3 2" in text  # the platform's row: in, out, broadcast messages
    assert "telegram 2 2" in text  # contacts: active, all
    assert "Members per channel news 2" in text
    [(number,)] = await busy.sql("select id from broadcasts")
    # The funnel: queued 2, sent 2, delivered 0, read 0, failed 0, skipped 0, replied 0,
    # 1 click by 1 recipient: a click rate of 50 %.
    assert f"#{number}" in text and "2 2 0 0 0 0 0 1 1 50%" in text
    [(code,)] = await busy.sql("select code from short_links")
    assert f"/s/{code} {SALE} #{number} 1 1 1" in text
    assert page.count("<svg") >= 3  # messages per day, channel sizes, the broadcast's funnel


async def test_the_page_is_self_contained(busy):
    _, headers, page = await get(await login_link(busy))
    assert "<script" not in page.lower()
    assert "<link" not in page.lower() and "@import" not in page and "url(" not in page
    assert not re.search(r"""(?:src|href|xlink:href)\s*=\s*["']?\s*(?:https?:)?//""", page, re.I)
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    # The period links keep the login token and stay on this page.
    assert re.search(r'href="\?token=[0-9]+\.[0-9a-f]+&amp;days=30"', page)


async def test_text_from_the_database_is_escaped(busy):
    name = '<img src=x onerror="alert(1)">'

    def write(tx):
        tx.subscriptions.create_channel(name, ADMIN, datetime.now(UTC))

    await services_of(busy).write(write)
    _, _, page = await get(await login_link(busy))
    assert "<img" not in page
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in page
    assert SALE.replace("&", "&amp;") in page and SALE not in page


# Markup that would close the element or the attribute it is put into, and run a script.
HOSTILE = ("<script>alert(1)</script>", '"</script><script>alert(2)</script>')


async def test_hostile_names_and_texts_stay_text(busy):
    def write(tx):
        for name in HOSTILE:
            tx.subscriptions.create_channel(name, ADMIN, datetime.now(UTC))
        tx.conn.execute(update(broadcasts).values(created_by=HOSTILE[0], text=HOSTILE[1]))

    await services_of(busy).write(write)
    _, _, page = await get(await login_link(busy))
    assert "<script" not in page.lower() and "</script" not in page.lower()
    # Each one is still there to read: in the channel chart and in the broadcast's row (its text
    # also in a title attribute, where a quote must not end the attribute).
    shown = unescape(page)
    for hostile in HOSTILE:
        assert hostile in shown
    assert re.search(r'<span title="[^"<>]*alert\(2\)[^"<>]*">', page)
    assert "Members per channel" in visible(page) and HOSTILE[0] in visible(page)


async def test_the_number_of_days_comes_with_the_link(busy):
    status, _, page = await get(await login_link(busy, "stats 30"))
    assert status == 200
    assert "The last 30 days:" in visible(page)
    link = await login_link(busy)
    for days in ("400", "0", "²", "x"):
        status, _, page = await get(f"{link}&days={days}")
        assert status == 400 and "days must be a number from 1 to 365" in visible(page)


async def test_without_a_token_the_page_asks_for_the_login_link(busy):
    status, headers, page = await get(f"{busy.bridge.url}/stats")
    assert status == 401
    assert headers["WWW-Authenticate"] == 'Bearer realm="stats"'
    assert "This page needs a login link: type /stats in Slack" in visible(page)
    assert "messages in" not in page


@pytest.mark.parametrize(
    "tamper",
    [
        lambda token: token[:-1] + ("0" if token[-1] != "0" else "1"),  # another signature
        lambda token: str(int(token.split(".")[0]) + 86400) + "." + token.split(".")[1],
        lambda token: "not-a-token",
        lambda token: token.split(".")[0] + ".ünïcode",
        lambda token: "",
    ],
    ids=["signature", "extended", "garbage", "non-ascii", "empty"],
)
async def test_a_changed_token_is_refused(busy, tamper):
    link = await login_link(busy)
    base, _, token = link.partition("?token=")
    status, _, page = await get(f"{base}?token={tamper(token)}")
    assert status == 403
    assert "This login link is not valid. Type /stats again for a fresh one." in visible(page)
    assert "messages in" not in page


async def test_the_login_link_stops_working_after_an_hour(busy):
    link = await login_link(busy)
    assert (await get(link))[0] == 200
    later = datetime.now(UTC) + timedelta(minutes=61)
    busy.bridge.app[PIPELINE].clock = lambda: later
    status, _, page = await get(link)
    assert status == 403
    assert "This login link has expired. Type /stats again for a fresh one." in visible(page)
    fresh = await login_link(busy)
    assert (await get(fresh))[0] == 200


async def test_a_script_may_use_the_api_key(busy):
    status, _, page = await get(
        f"{busy.bridge.url}/stats?days=7", headers={"Authorization": f"Bearer {API_KEY}"}
    )
    assert status == 200 and "The last 7 days:" in visible(page)
    assert "token=" not in page  # the period links carry no token for a Bearer client
    status, _, page = await get(
        f"{busy.bridge.url}/stats", headers={"Authorization": "Bearer wrong-key-wrong-key-wrong"}
    )
    assert status == 403 and "This API key is not valid." in visible(page)


async def test_without_an_api_key_no_bearer_is_accepted(tmp_path):
    world = await start_world(tmp_path)
    try:
        status, _, page = await get(
            f"{world.bridge.url}/stats", headers={"Authorization": f"Bearer {API_KEY}"}
        )
        assert status == 403
        assert "No API key is set up for this page ([stats] api_key)." in visible(page)
    finally:
        await stop_world(world)


async def test_a_link_preview_gets_no_figures(busy):
    status, _, page = await get(
        await login_link(busy),
        headers={"User-Agent": "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)"},
    )
    assert status == 200
    assert "open the link in a browser" in visible(page) and "messages in" not in page


def test_a_short_api_key_stops_the_start(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_settings(None, env={"BRIDGE_STATS__API_KEY": "short"})
    assert "stats.api_key" in str(caught.value)
    assert "at least 24 characters" in str(caught.value)
    assert "short" not in str(caught.value)  # the value itself is never repeated
