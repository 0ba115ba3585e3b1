"""With no settings file the bridge starts on SQLite, serves /healthz and says what is off."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from pathlib import Path

import aiohttp

from tests.harness import eventually
from tests.world import free_port

ROOT = Path(__file__).resolve().parent.parent


async def test_bridge_starts_with_no_settings_and_explains_what_is_off(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    env["BRIDGE_BRIDGE__LISTEN"] = f"127.0.0.1:{port}"
    log = tmp_path / "out.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(ROOT / "run.py"), cwd=tmp_path, env=env, stdout=out, stderr=out
        )
        try:
            async with aiohttp.ClientSession() as http:

                async def health():
                    with contextlib.suppress(aiohttp.ClientError):
                        async with http.get(f"http://127.0.0.1:{port}/healthz") as r:
                            return r.status, json.loads(await r.text())
                    return None

                status, body = await eventually(health, timeout=30, message="/healthz")
        finally:
            proc.terminate()
            await proc.wait()
    assert status == 200
    assert body["database"] is True and body["connectors"] == [] and body["surfaces"] == []
    assert (tmp_path / "var" / "bridge.db").exists()
    printed = log.read_text()
    assert "no settings file" in printed
    assert "telegram: off (set [telegram] token" in printed
    assert "slack: off" in printed
    for platform in ("whatsapp", "messenger", "sms"):
        assert f"{platform}: off (set [{platform}]" in printed
