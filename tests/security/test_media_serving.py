"""A file a customer (or anyone) sent, served at the bridge's media URLs, cannot run as a page
of the bridge's origin: it is a download, never sniffed, and barred from running anything."""

from __future__ import annotations

import aiohttp
import pytest

from bridge.app import MEDIA
from bridge.types import FileData, MediaKind
from tests.world import start_world, stop_world

PAGE = b"<html><script>fetch('/api/v1/contacts').then(r => r.text()).then(alert)</script></html>"


@pytest.fixture
async def world(tmp_path):
    w = await start_world(tmp_path)
    yield w
    await stop_world(w)


async def fetch(url: str) -> tuple[int, bytes, dict[str, str]]:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        return resp.status, await resp.read(), dict(resp.headers)


@pytest.mark.parametrize(
    ("name", "mime"),
    [("page.html", "text/html"), ("image.svg", "image/svg+xml"), ("photo.png", "image/png")],
)
async def test_a_stored_file_is_served_as_a_download_that_cannot_run(world, name, mime):
    file = FileData(kind=MediaKind.DOCUMENT, filename=name, data=PAGE, mime_type=mime)
    url = await world.bridge.app[MEDIA].publish(file)
    status, body, headers = await fetch(url)
    assert status == 200 and body == PAGE
    # The platforms that fetch the file still learn its type.
    assert headers["Content-Type"].startswith(mime)
    assert headers["Content-Disposition"].startswith("attachment;")
    assert name in headers["Content-Disposition"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "default-src 'none'" in headers["Content-Security-Policy"]
