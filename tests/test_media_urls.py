"""Files the bridge serves at signed, expiring URLs (how Twilio fetches MMS media)."""

from __future__ import annotations

import time

import aiohttp
import pytest
from aiohttp import web

from bridge.types import FileData, MediaKind
from bridge.web.media import MediaStore
from storage import Database
from tests.world import free_port

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))


@pytest.fixture
async def served(database: Database):
    """A MediaStore behind a real HTTP listener; yields (store, base URL)."""
    base = f"http://127.0.0.1:{free_port()}"
    store = MediaStore(database, base)
    app = web.Application()
    app.add_routes(store.routes())
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", int(base.rpartition(":")[2])).start()
    yield store, base
    await runner.cleanup()


def png(name: str = "photo.png") -> FileData:
    return FileData(kind=MediaKind.IMAGE, filename=name, data=PNG, mime_type="image/png")


async def get(url: str) -> tuple[int, bytes, str]:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        return resp.status, await resp.read(), resp.headers.get("Content-Type", "")


async def test_published_file_is_served_with_its_type(served):
    store, base = served
    url = await store.publish(png("Quittung März.png"))
    assert url.startswith(f"{base}/media/")
    status, body, content_type = await get(url)
    assert (status, body, content_type) == (200, PNG, "image/png")


async def test_tampered_signature_is_refused(served):
    store, _ = served
    url = await store.publish(png())
    parts = url.split("/")
    parts[-2] = ("0" if parts[-2][0] != "0" else "1") + parts[-2][1:]
    status, body, _ = await get("/".join(parts))
    assert status == 403 and body != PNG


async def test_extended_expiry_is_refused(served):
    store, _ = served
    url = await store.publish(png())
    parts = url.split("/")
    parts[-3] = str(int(parts[-3]) + 86400)
    status, _, _ = await get("/".join(parts))
    assert status == 403


async def test_expired_link_answers_gone(served, monkeypatch):
    store, _ = served
    url = await store.publish(png(), ttl=60)
    real = time.time
    monkeypatch.setattr("bridge.web.media.time.time", lambda: real() + 120)
    status, _, _ = await get(url)
    assert status == 410


async def test_url_published_by_another_process_is_served(served, database):
    store, base = served
    await store.publish(png("first.png"))  # the serving side has made its key already
    # The dispatcher process publishes with its own store over the same database.
    dispatcher_side = MediaStore(database, base)
    url = await dispatcher_side.publish(png("second.png"))
    status, body, _ = await get(url)
    assert (status, body) == (200, PNG)
