"""The chat widget, GET /widget/<channel>: rendered by headless Chromium and read over HTTP."""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from html import unescape
from pathlib import Path
from urllib.parse import quote, urlsplit

import aiohttp
import PIL.Image
import pytest
import zxingcpp
from aiohttp import web

from bridge.config import load_settings
from bridge.errors import ConfigError
from tests.commands_kit import ADMIN, command, services_of
from tests.fakes.messenger import FakeMessenger
from tests.fakes.twilio import FakeTwilio
from tests.fakes.whatsapp import FakeWhatsApp
from tests.world import free_port, start_world, stop_world

# The links of the world's accounts carrying the join keyword JOIN_NEWS, in the bridge's order.
LINKS = [
    "https://t.me/test_bot?start=JOIN_NEWS",
    "https://wa.me/4915100000000?text=JOIN_NEWS",
    "https://m.me/3003?ref=JOIN_NEWS",
    "sms:+15005550006?body=JOIN_NEWS",
]
LABELS = ["Chat on Telegram", "Chat on WhatsApp", "Chat on Messenger", "Send an SMS"]
PNG = b"\x89PNG\r\n\x1a\n"


def chromium_executable() -> str:
    """Debian's Chromium; outside CI a missing one skips the test, in CI it fails it."""
    found = shutil.which("chromium") or shutil.which("/usr/bin/chromium")
    if found is None:
        why = "Chromium is not installed: `make chromium` installs Debian's chromium package"
        if "CI" not in os.environ:
            pytest.skip(why)
        pytest.fail(why)
    return found


@asynccontextmanager
async def chromium():
    """A headless Chromium driven by Playwright, started from the system's binary."""
    executable = chromium_executable()
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        why = "Playwright is not installed: pip install -e '.[dev]'"
        if "CI" not in os.environ:
            pytest.skip(why)
        pytest.fail(why)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable, headless=True)
        try:
            yield browser
        finally:
            await browser.close()


async def news_channel(world) -> None:
    reply = await command(world, "channel create news --join JOIN_NEWS", user=ADMIN)
    assert reply.ok, reply


@pytest.fixture
async def shop(tmp_path):
    """A bridge with one account of each messenger and the channel news (join JOIN_NEWS)."""
    w = await start_world(
        tmp_path, whatsapp=FakeWhatsApp(), messenger=FakeMessenger(), sms=FakeTwilio()
    )
    try:
        await news_channel(w)
        yield w
    finally:
        await stop_world(w)


@pytest.fixture
async def sites():
    """Two other websites on this machine, each embedding what `page` says in an iframe."""
    page: dict[str, str] = {}

    async def serve(request: web.Request) -> web.Response:
        return web.Response(text=page["html"], content_type="text/html")

    app = web.Application()
    app.router.add_get("/", serve)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    ports = [free_port(), free_port()]
    for port in ports:
        await web.TCPSite(runner, "127.0.0.1", port).start()
    # Reached as localhost: another site than the bridge's 127.0.0.1, on the same machine (a
    # page on the internet may not frame one on the loopback address at all).
    yield page, [f"http://localhost:{port}" for port in ports]
    await runner.cleanup()


@pytest.fixture
async def framed(tmp_path, sites):
    """The shop with a text under the name, and only the first site allowed to frame it."""
    page, (allowed, other) = sites
    w = await start_world(
        tmp_path,
        whatsapp=FakeWhatsApp(),
        messenger=FakeMessenger(),
        sms=FakeTwilio(),
        sections={"widget": {"allowed_origins": [allowed], "text": "Offers every Friday."}},
    )
    try:
        await news_channel(w)
        yield w, page, allowed, other
    finally:
        await stop_world(w)


def decoded(png: bytes) -> list[str]:
    """What a QR reader sees in the image."""
    return [result.text for result in zxingcpp.read_barcodes(PIL.Image.open(io.BytesIO(png)))]


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def assert_screenshot(path: Path, width: int, height: int) -> None:
    data = path.read_bytes()
    assert data.startswith(PNG)
    with PIL.Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size == (width, height)


def contrast(foreground: str, background: str) -> float:
    """WCAG contrast ratio of two computed CSS colours (`rgb(r, g, b)`)."""

    def luminance(css: str) -> float:
        r, g, b = (int(v) / 255 for v in re.findall(r"\d+", css)[:3])
        linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in (r, g, b)]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    high, low = sorted((luminance(foreground), luminance(background)), reverse=True)
    return (high + 0.05) / (low + 0.05)


async def open_widget(browser, url: str, width: int, height: int):
    """A page with the widget loaded, and every request and console error it caused."""
    page = await browser.new_page(viewport={"width": width, "height": height})
    requests: list[str] = []
    errors: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    response = await page.goto(url)
    assert response is not None and response.status == 200
    return page, requests, errors


async def boxes(page) -> list[dict[str, float]]:
    return [await button.bounding_box() for button in await page.locator("a.button").all()]


async def test_widget_renders_with_a_button_and_a_qr_code_per_account(shop, tmp_path):
    url = f"{shop.bridge.url}/widget/news"
    async with chromium() as browser:
        page, requests, errors = await open_widget(browser, url, 1024, 640)
        assert await page.title() == "news: chat with us"
        assert await page.get_attribute("html", "lang") == "en"
        assert await page.locator("h1").inner_text() == "news"

        buttons = page.locator("a.button")
        assert await buttons.count() == 4
        assert [await b.get_attribute("href") for b in await buttons.all()] == LINKS
        texts = [await b.inner_text() for b in await buttons.all()]
        assert [t.splitlines()[0] for t in texts] == LABELS
        assert [await b.get_attribute("target") for b in await buttons.all()] == ["_blank"] * 4

        # Each QR code is drawn by the browser and reads, at the size shown, as its button's link.
        images = await page.locator("img.qr").all()
        assert len(images) == 4
        for image, link in zip(images, LINKS, strict=True):
            src = await image.get_attribute("src")
            assert src is not None and src.startswith("data:image/png;base64,")
            assert decoded(base64.b64decode(src.partition(",")[2])) == [link]
            assert await image.evaluate("img => img.complete && img.naturalWidth > 0")
            assert decoded(await image.screenshot()) == [link]
            assert (await image.get_attribute("alt") or "").startswith("QR code: ")
        assert await page.locator("kbd").inner_text() == "JOIN_NEWS"

        # Nothing was fetched from another origin, and the policy blocked nothing the page uses.
        assert requests and {origin(r) for r in requests if not r.startswith("data:")} == {
            origin(shop.bridge.url)
        }
        assert not errors, errors

        # A wide frame shows the buttons side by side.
        wide = await boxes(page)
        assert len({round(b["y"]) for b in wide}) == 1
        assert [b["x"] for b in wide] == sorted(b["x"] for b in wide)

        # Readable: white on each button's colour at 4.5:1 or better; focus is visible.
        for button in await buttons.all():
            colours = await button.evaluate(
                "a => [getComputedStyle(a).color, getComputedStyle(a).backgroundColor]"
            )
            assert contrast(*colours) >= 4.5, colours
        await page.keyboard.press("Tab")
        focused = await page.evaluate(
            "() => [document.activeElement.getAttribute('href'),"
            " getComputedStyle(document.activeElement).outlineStyle]"
        )
        assert focused == [LINKS[0], "solid"]

        shot = tmp_path / "widget-wide.png"
        await page.screenshot(path=str(shot))
        assert_screenshot(shot, 1024, 640)


async def test_widget_stacks_the_buttons_on_a_phone(shop, tmp_path):
    async with chromium() as browser:
        page, _, errors = await open_widget(browser, f"{shop.bridge.url}/widget/news", 375, 667)
        narrow = await boxes(page)
        assert len(narrow) == 4
        assert len({round(b["x"]) for b in narrow}) == 1
        ys = [b["y"] for b in narrow]
        assert ys == sorted(ys) and len(set(ys)) == 4
        for above, below in zip(narrow, narrow[1:], strict=False):
            assert above["y"] + above["height"] <= below["y"]
        # Nothing sticks out sideways.
        assert await page.evaluate("() => document.documentElement.scrollWidth") <= 375
        assert not errors, errors
        shot = tmp_path / "widget-phone.png"
        await page.screenshot(path=str(shot))
        assert_screenshot(shot, 375, 667)


async def test_widget_in_an_iframe_of_an_allowed_site_only(framed, tmp_path):
    world, site, allowed, other = framed
    # The snippet of the README, as the business pastes it.
    site["html"] = (
        f'<!doctype html><html><body><h1>Shop</h1><iframe src="{world.bridge.url}/widget/news'
        '?lang=de" title="Chat" style="border:0;width:100%;height:480px" loading="lazy">'
        "</iframe></body></html>"
    )
    async with chromium() as browser:
        page = await browser.new_page(viewport={"width": 900, "height": 640})
        await page.goto(f"{allowed}/")
        frame = page.frame_locator("iframe")
        await frame.locator("a.button").first.wait_for(timeout=10_000)
        assert await frame.locator("a.button").count() == 4
        assert await frame.locator("html").get_attribute("lang") == "de"
        assert (await frame.locator("a.button").first.inner_text()).startswith(
            "Auf Telegram schreiben"
        )
        assert await frame.locator("p.text").inner_text() == "Offers every Friday."
        shot = tmp_path / "widget-framed.png"
        await page.screenshot(path=str(shot))
        assert_screenshot(shot, 900, 640)

        # Another site may not show it: the browser refuses to render it in that site's frame.
        refused: list[str] = []
        page.on("console", lambda message: refused.append(message.text))
        await page.goto(f"{other}/")
        await page.wait_for_timeout(500)
        [child] = page.main_frame.child_frames
        assert await child.locator("a.button").count() == 0
        assert any("frame-ancestors" in text for text in refused), refused


# -- plain HTTP ---------------------------------------------------------------------------------


async def get(world, path: str, **headers: str) -> tuple[int, dict[str, str], str]:
    async with aiohttp.ClientSession() as http:
        async with http.get(world.bridge.url + path, headers=headers) as response:
            return response.status, dict(response.headers), await response.text()


async def test_headers_let_any_site_frame_the_page_and_forbid_outside_loads(shop):
    status, headers, body = await get(shop, "/widget/news")
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    policy = headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy
    assert "img-src data:" in policy
    assert "'unsafe-inline'" not in policy and "script-src" not in policy
    assert "frame-ancestors" not in policy
    assert "X-Frame-Options" not in headers
    assert headers["Cache-Control"] == "public, max-age=300"
    assert "Accept-Language" in headers["Vary"]
    assert "<script" not in body
    # Images are inline; links lead out only where a customer clicks.
    assert all(src.startswith("data:") for src in re.findall(r'src="([^"]*)"', body))
    assert [h for h in re.findall(r'href="([^"]*)"', body) if h != "data:,"] == LINKS


async def test_allowed_origins_become_frame_ancestors(framed):
    world, _, allowed, _ = framed
    _, headers, _ = await get(world, "/widget/news")
    assert headers["Content-Security-Policy"].endswith(f"; frame-ancestors {allowed}")


async def test_unknown_channel_or_one_without_a_join_keyword_is_a_plain_404(shop):
    reply = await command(shop, "channel create quiet", user=ADMIN)
    assert reply.ok
    for path in ("/widget/nosuch", "/widget/quiet", "/widget/" + "x" * 200):
        status, headers, body = await get(shop, path)
        assert status == 404, path
        assert headers["Content-Type"].startswith("text/html")
        assert headers["Cache-Control"] == "no-store"
        assert "No channel of this name can be joined here." in body
        assert "Content-Security-Policy" in headers
    status, _, body = await get(shop, "/widget/NEWS")  # names are case-insensitive
    assert status == 200


async def test_a_keyword_no_account_can_carry_is_a_404_that_says_so(world):
    def write(tx):
        created = tx.subscriptions.create_channel("spaced", "UADMIN", datetime.now(UTC))
        tx.subscriptions.update_channel(created.id, join_keyword="JOIN ME")

    await services_of(world).write(write)
    # Only Telegram is configured, and its start payload takes no spaces.
    status, headers, body = await get(world, "/widget/spaced")
    assert status == 404 and headers["Cache-Control"] == "no-store"
    assert "No messenger account can carry this channel&#x27;s join keyword yet." in body


async def test_german_labels_by_query_or_accept_language(shop):
    _, headers, body = await get(
        shop, "/widget/news", **{"Accept-Language": "fr, de;q=0.8, en;q=0.5"}
    )
    assert '<html lang="de">' in body and "Auf WhatsApp schreiben" in body
    assert headers["Content-Language"] == "de"
    _, _, body = await get(shop, "/widget/news?lang=en", **{"Accept-Language": "de-DE"})
    assert '<html lang="en">' in body and "Chat on WhatsApp" in body
    _, _, body = await get(shop, "/widget/news?lang=de")
    assert "SMS senden" in body
    _, _, body = await get(shop, "/widget/news", **{"Accept-Language": "en-GB;q=0.4, de;q=0"})
    assert '<html lang="en">' in body
    status, _, body = await get(shop, "/widget/nosuch?lang=de")
    assert status == 404 and "Chat-Widget nicht verfügbar" in body


async def test_keyword_and_text_are_escaped(tmp_path):
    text = '<script>alert("hi")</script> & more'
    world = await start_world(
        tmp_path, whatsapp=FakeWhatsApp(), sections={"widget": {"texts": {"deals": text}}}
    )
    try:
        keyword = 'SAVE <b>&"10"</b>'

        def write(tx):
            created = tx.subscriptions.create_channel("deals", "UADMIN", datetime.now(UTC))
            tx.subscriptions.update_channel(created.id, join_keyword=keyword)

        await services_of(world).write(write)
        status, _, body = await get(world, "/widget/deals")
        assert status == 200
        assert "<script" not in body and "<b>" not in body
        assert "&lt;script&gt;alert(&quot;hi&quot;)&lt;/script&gt; &amp; more" in body
        assert "<kbd>SAVE &lt;b&gt;&amp;&quot;10&quot;&lt;/b&gt;</kbd>" in body
        # Telegram's start payload cannot carry such a keyword: only WhatsApp gets a button.
        assert body.count('class="button ') == 1
        assert 'href="https://wa.me/4915100000000?text=SAVE%20%3Cb%3E%26%2210%22%3C%2Fb%3E"' in body
    finally:
        await stop_world(world)


@pytest.mark.parametrize(
    "name",
    ["<script>alert(1)</script>", '"</script><script>alert(1)//', "<img src=x onerror=alert(1)>"],
)
async def test_a_hostile_channel_name_stays_text(world, name):
    def write(tx):
        created = tx.subscriptions.create_channel(name, "UADMIN", datetime.now(UTC))
        tx.subscriptions.update_channel(created.id, join_keyword="JOIN_IT")

    await services_of(world).write(write)
    # Quoted whole, slashes too: the address names the channel in one path segment.
    status, _, body = await get(world, "/widget/" + quote(name, safe=""))
    assert status == 200, body
    assert "<script" not in body and "<img src=x" not in body
    assert body.count("<title>") == 1 and body.count("<h1>") == 1
    title = body.partition("<title>")[2].partition("</title>")[0]
    heading = body.partition("<h1>")[2].partition("</h1>")[0]
    assert unescape(title) == f"{name}: chat with us" and unescape(heading) == name
    assert "<" not in title + heading and ">" not in title + heading


def test_allowed_origins_from_the_environment_and_wrong_ones_named(tmp_path):
    env = {"BRIDGE_WIDGET__ALLOWED_ORIGINS": "https://www.example.com/, https://*.Example.org"}
    settings = load_settings(tmp_path / "missing.toml", env=env)
    assert settings.widget.allowed_origins == ("https://www.example.com", "https://*.example.org")
    for wrong in (
        "https://www.example.com/shop",
        "www.example.com",
        "https://a.example; script-src *",
    ):
        with pytest.raises(ConfigError, match="widget.allowed_origins") as caught:
            load_settings(tmp_path / "missing.toml", env={"BRIDGE_WIDGET__ALLOWED_ORIGINS": wrong})
        assert "BRIDGE_WIDGET__ALLOWED_ORIGINS" in str(caught.value)
