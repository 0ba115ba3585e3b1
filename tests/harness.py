"""Run the real bridge application in-process against the fake platforms."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import shutil
import sqlite3
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from bridge.app import DATABASE, DISPATCHER, build_app
from bridge.config import Settings
from storage import Database

# A database this test process migrated once; every test's fresh SQLite database starts as a
# copy of it. Migrating costs some 0.2 s of CPU, a copy almost nothing, and the bridge's own
# migrate at start still runs (and finds nothing to do). The migrations have tests of their own.
_TEMPLATE: list[Path] = []


def migrated_database(path: Path) -> None:
    """Put an empty database at the newest schema at `path`, unless a file is there already."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    if not _TEMPLATE:
        folder = Path(tempfile.mkdtemp(prefix="bridge-schema-"))
        atexit.register(shutil.rmtree, folder, True)
        template = folder / "bridge.db"

        async def migrate() -> None:
            db = Database(f"sqlite+aiosqlite:///{template}")
            await db.migrate()
            await db.close()

        # Its own thread and event loop: the caller may be inside a running loop.
        worker = threading.Thread(target=asyncio.run, args=(migrate(),))
        worker.start()
        worker.join()
        _TEMPLATE.append(template)
    with (
        contextlib.closing(sqlite3.connect(_TEMPLATE[0])) as source,
        contextlib.closing(sqlite3.connect(path)) as copy,
    ):
        source.backup(copy)


@dataclass
class RunningBridge:
    """A started bridge: its app, runner and base URL."""

    app: web.Application
    runner: web.AppRunner
    url: str
    settings: Settings

    @property
    def db(self):
        return self.app[DATABASE]

    @property
    def dispatcher(self):
        return self.app[DISPATCHER]

    async def stop(self) -> None:
        await self.runner.cleanup()


def make_settings(
    tmp_path,
    *,
    telegram=None,
    slack=None,
    database: str | None = None,
    slack_mode: str = "http",
    telegram_mode: str = "webhook",
    public_url: str | None = None,
    whatsapp=None,
    messenger=None,
    twilio=None,
    routes: list[dict[str, Any]] | None = None,
    matrix: dict[str, Any] | None = None,
    sections: dict[str, dict[str, Any]] | None = None,
    **bridge: Any,
) -> Settings:
    """Settings that point every connector at its fake."""
    if database is None:
        migrated_database(Path(tmp_path) / "bridge.db")
    data: dict[str, Any] = {
        "bridge": {
            "database": database or f"sqlite+aiosqlite:///{tmp_path / 'bridge.db'}",
            "listen": "127.0.0.1:8080",
            "card_refresh_s": 0.2,
            "admins": ["UADMIN"],
            **bridge,
        }
    }
    if public_url:
        data["bridge"]["public_url"] = public_url
    if telegram is not None:
        data["telegram"] = {
            "token": telegram.token,
            "api_base": telegram.base_url,
            "mode": telegram_mode,
            "webhook_secret": "tg-secret_1-long-enough",
            "poll_timeout": 1,
            "rate_per_chat": 100,
            "rate_global": 1000,
        }
    if slack is not None:
        data["slack"] = {
            "bot_token": slack.bot_token,
            "signing_secret": slack.signing_secret,
            "channel": "C0001",
            "api_base": slack.base_url,
            "rate_per_channel": 200,
            "burst_per_channel": 50,
            "rate_updates": 100,
            "rate_reactions": 100,
        }
        if slack_mode == "socket":
            data["slack"]["app_token"] = slack.app_token
    if whatsapp is not None:
        data["whatsapp"] = {
            "accounts": [
                {
                    "phone_number_id": pnid,
                    "access_token": whatsapp.access_token,
                    "app_secret": whatsapp.app_secret,
                    "verify_token": whatsapp.verify_token,
                    "business_account_id": whatsapp.waba_id,
                    "number": f"+4915100000{index:03d}",
                    "api_base": whatsapp.base_url,
                    "rate": 1000,
                    "rate_pair": 100,
                    "burst_pair": 100,
                }
                for index, pnid in enumerate(whatsapp.phone_number_ids)
            ]
        }
    if messenger is not None:
        data["messenger"] = {
            "accounts": [
                {
                    "page_id": page,
                    "page_token": messenger.page_token,
                    "app_secret": messenger.app_secret,
                    "verify_token": messenger.verify_token,
                    "api_base": messenger.base_url,
                }
                for page in messenger.page_ids
            ]
        }
    if twilio is not None:
        data["sms"] = {
            "accounts": [
                {
                    "account_sid": twilio.account_sid,
                    "auth_token": twilio.auth_token,
                    "from_number": number,
                    "api_base": twilio.base_url,
                    "rate": 100,
                    "burst": 10,
                }
                for number in twilio.numbers
            ]
        }
    if matrix is not None:
        data["matrix"] = {"sync_timeout_s": 2, "rate": 200, "burst": 50, **matrix}
    if routes:
        data["routes"] = routes
    for name, values in (sections or {}).items():
        data[name] = {**data.get(name, {}), **values}
    settings = Settings.model_validate(data)
    settings.check()
    return settings


async def start_bridge(settings: Settings, *, port: int = 0) -> RunningBridge:
    """Build and start the bridge on a free loopback port."""
    app = await build_app(settings)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    host, bound = runner.addresses[0][:2]
    return RunningBridge(app, runner, f"http://{host}:{bound}", settings)


async def eventually(
    check: Callable[[], Any] | Callable[[], Awaitable[Any]],
    *,
    timeout: float = 10.0,
    interval: float = 0.05,
    message: str = "condition",
) -> Any:
    """Poll until `check` returns something truthy; fail with `message` after `timeout`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message} (last: {last!r})")
