"""Strangers cannot blow up the bridge's memory with big forged webhook bodies.

The bridge runs as a process of its own; forged requests with bodies far over what any
platform sends arrive at once on every webhook, and the process's peak resident memory must
stay close to where it was.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from bridge.bodies import UNSIGNED_READS, UNSIGNED_READS_MAX
from tests.api_kit import make_key
from tests.fakes.slack import FakeSlack
from tests.fakes.telegram import FakeTelegram
from tests.fakes.whatsapp import FakeWhatsApp
from tests.harness import eventually
from tests.process_kit import Bridge
from tests.world import CHANNEL, free_port, start_world, stop_world

MIB = 1024 * 1024
BIG = 24 * MIB
CHUNK = b"x" * (64 * 1024)
# What the bridge may grow by while it turns the whole flood away (before: over 400 MB).
ALLOWED_GROWTH = 100 * MIB


def config(tmp_path: Path, tg: FakeTelegram, slack: FakeSlack, port: int) -> Path:
    path = tmp_path / "bridge.toml"
    path.write_text(
        f"""
[bridge]
database = "sqlite+aiosqlite:///{tmp_path / "bridge.db"}"
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"
log_level = "ERROR"

[telegram]
token = "{tg.token}"
api_base = "{tg.base_url}"
mode = "webhook"
webhook_secret = "body-limits-secret-0123"

[slack]
bot_token = "{slack.bot_token}"
signing_secret = "{slack.signing_secret}"
channel = "{CHANNEL}"
api_base = "{slack.base_url}"

[whatsapp]
phone_number_id = "1001"
access_token = "wa-token"
app_secret = "whatsapp-app-secret-0123"
verify_token = "whatsapp-verify-token-0123"
api_base = "http://127.0.0.1:9"

[sms]
account_sid = "AC0123"
auth_token = "twilio-auth-token-0123456789"
from_number = "+15005550006"
api_base = "http://127.0.0.1:9"
"""
    )
    return path


def peak_rss(pid: int) -> int:
    """The most resident memory the process has used so far (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc")


async def endless(size: int) -> AsyncIterator[bytes]:
    """`size` bytes of body without holding them (sent chunked unless a length is given)."""
    sent = 0
    while sent < size:
        yield CHUNK
        sent += len(CHUNK)


async def forge(
    http: aiohttp.ClientSession,
    url: str,
    headers: dict[str, str],
    *,
    declared: bool,
    size: int = BIG,
) -> int:
    """POST a big body: with a Content-Length when `declared`, else chunked; the status."""
    if declared:
        headers = {**headers, "Content-Length": str(size)}
    try:
        async with http.post(url, data=endless(size), headers=headers) as resp:
            return resp.status
    except (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError):
        return 0  # the bridge hung up on the rest of the body


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")
async def test_forged_big_bodies_are_refused_without_reading_them(tmp_path):
    async with FakeTelegram() as tg, FakeSlack() as slack:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        bridge = Bridge(config(tmp_path, tg, slack, port), port, tmp_path / "bridge.log")
        await bridge.start()
        try:
            assert bridge.proc is not None
            before = peak_rss(bridge.proc.pid)
            now = str(int(time.time()))
            signed_slack = {"X-Slack-Request-Timestamp": now, "X-Slack-Signature": "v0=00"}
            stale_slack = {"X-Slack-Request-Timestamp": "1000", "X-Slack-Signature": "v0=00"}
            wa = {"X-Hub-Signature-256": "sha256=00", "Content-Type": "application/json"}
            sms = {
                "X-Twilio-Signature": "AAAA",
                "Content-Type": "application/x-www-form-urlencoded",
            }
            attacks = [
                # (path, headers, declared length, the answers that refuse it)
                ("/webhooks/whatsapp", {}, True, {401}),
                ("/webhooks/whatsapp", wa, True, {413}),
                ("/webhooks/whatsapp", wa, False, {413, 0}),
                ("/slack/events", stale_slack, True, {401}),
                ("/slack/events", signed_slack, True, {413}),
                ("/slack/events", signed_slack, False, {413, 0}),
                ("/webhooks/sms", sms, True, {413}),
                ("/webhooks/sms", sms, False, {413, 0}),
                ("/webhooks/telegram", {}, False, {401}),
            ] * 2
            timeout = aiohttp.ClientTimeout(total=120)
            async with aiohttp.ClientSession(timeout=timeout) as http:
                answers = await asyncio.gather(
                    *(
                        forge(http, base + path, headers, declared=declared)
                        for path, headers, declared, _ in attacks
                    )
                )
                for (path, _, declared, allowed), answer in zip(attacks, answers, strict=True):
                    assert answer in allowed, (path, declared, answer)
                # The bridge still serves.
                async with http.get(base + "/healthz") as resp:
                    assert resp.status == 200
            grown = peak_rss(bridge.proc.pid) - before
            assert grown < ALLOWED_GROWTH, f"peak memory grew by {grown // MIB} MiB"
        finally:
            await bridge.terminate()


async def test_unsigned_bodies_beyond_the_limit_are_turned_away_not_queued(tmp_path):
    world = await start_world(tmp_path, whatsapp=FakeWhatsApp())
    try:
        gate = world.bridge.app[UNSIGNED_READS]
        url = world.bridge.url + "/webhooks/whatsapp"
        headers = {"X-Hub-Signature-256": "sha256=00", "Content-Type": "application/json"}
        release = asyncio.Event()

        async def slow() -> AsyncIterator[bytes]:
            yield b'{"object": '
            await release.wait()
            yield b'"whatsapp_business_account"}'

        async def post(body: object) -> tuple[int, str | None]:
            async with http.post(url, data=body, headers=headers) as resp:
                return resp.status, resp.headers.get("Retry-After")

        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as http:
            holding = [asyncio.create_task(post(slow())) for _ in range(UNSIGNED_READS_MAX)]
            await eventually(lambda: gate.reading == UNSIGNED_READS_MAX, message="full gate")
            status, retry_after = await post(b"{}")
            assert status == 503 and retry_after is not None and int(retry_after) > 0
            release.set()
            # The slow ones were read to the end and refused for their forged signature.
            assert {status for status, _ in await asyncio.gather(*holding)} == {403}
            assert (await post(b"{}"))[0] == 403
    finally:
        await stop_world(world)


async def test_a_body_trickled_too_slowly_is_cut_off_and_frees_its_place(tmp_path, monkeypatch):
    # A slowloris sender must not hold a place at the gate for ever; the limit is lowered
    # here so that the test need not wait the real one out.
    monkeypatch.setattr("bridge.bodies.UNSIGNED_READ_TIMEOUT_S", 0.3)
    world = await start_world(tmp_path, whatsapp=FakeWhatsApp())
    try:
        gate = world.bridge.app[UNSIGNED_READS]
        url = world.bridge.url + "/webhooks/whatsapp"
        headers = {"X-Hub-Signature-256": "sha256=00", "Content-Type": "application/json"}
        never = asyncio.Event()

        async def trickle() -> AsyncIterator[bytes]:
            yield b'{"object": '
            await never.wait()
            yield b"}"

        # Without the cut-off the bridge would wait for the body for ever: give up then.
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            async with http.post(url, data=trickle(), headers=headers) as resp:
                status = resp.status
            never.set()
            assert status == 408
            assert gate.reading == 0
            async with http.post(url, data=b"{}", headers=headers) as resp:
                assert resp.status == 403  # read, and refused for its forged signature
    finally:
        never.set()
        await stop_world(world)


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
async def test_the_api_refuses_a_body_past_its_cap(world, declared):
    key = await make_key(world, role="manager")
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    async with aiohttp.ClientSession() as http:
        status = await forge(
            http, world.bridge.url + "/api/v1/templates", headers, declared=declared, size=2 * MIB
        )
    assert status in ({413} if declared else {413, 0})
