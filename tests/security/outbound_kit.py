"""What the request-forgery tests attack and with what: an internal service on a loopback port
that must never be reached, a resolver the test controls, and a bridge whose allow-list names
only the fake bot's port."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from bridge.app import PIPELINE
from bridge.config import Settings
from tests.commands_kit import MANAGER, command
from tests.rules_kit import Endpoint
from tests.world import World, free_port, start_world, stop_world

SECRET = "internal-secret-7d1c"


@dataclass
class InternalService:
    """A service only the bridge's host can reach (an admin page, a metadata endpoint)."""

    port: int = field(default_factory=free_port)
    requests: list[str] = field(default_factory=list)
    runner: web.AppRunner | None = None

    async def _any(self, request: web.Request) -> web.Response:
        self.requests.append(f"{request.method} {request.path_qs}")
        return web.json_response(
            {"text": SECRET, "answer": SECRET, "media": []}, headers={"X-Secret": SECRET}
        )

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._any)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    def url(self, path: str = "/admin") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


class TestResolver(AbstractResolver):
    """DNS as the test says: `names[host]` is the address a name resolves to (now)."""

    __test__ = False

    def __init__(self, names: dict[str, str]) -> None:
        self.names = names
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        address = self.names.get(host.rstrip(".").lower())
        if address is None:
            raise OSError(f"{host}: no such name")
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        return [
            {
                "hostname": host,
                "host": address,
                "port": port,
                "family": family,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
        ]

    async def close(self) -> None:
        return None


async def start_guarded_world(
    tmp_path,
    bot: Endpoint,
    *,
    names: dict[str, str] | None = None,
    allow: Sequence[str] = (),
    **sections: Any,
) -> tuple[World, TestResolver]:
    """A bridge that may reach the fake bot (its host:port, and `bots.internal` on that port)
    and no other internal address; names resolve through a resolver the test controls."""
    entries = {"allow_private": [bot.allow, f"bots.internal:{bot.port}", *allow]}
    # Without the setting (a bridge before the guard) the attack runs all the same.
    guarded = "security" in Settings.model_fields
    world = await start_world(
        tmp_path, sections={**sections, **({"security": entries} if guarded else {})}
    )
    resolver = TestResolver(
        {"bots.internal": "127.0.0.1", "localhost": "127.0.0.1", **(names or {})}
    )
    outbound = getattr(world.bridge.app[PIPELINE], "outbound", None)
    if outbound is not None:
        outbound.resolver = resolver
    return world, resolver


@asynccontextmanager
async def guarded_rig(
    tmp_path, *, allow: Sequence[str] = ()
) -> AsyncIterator[tuple[World, InternalService, Endpoint, TestResolver]]:
    """An internal service that must stay out of reach, a fake bot the bridge may reach, the
    bridge itself (with a manager), and the resolver its guard looks names up with."""
    internal, bot = InternalService(), Endpoint()
    await internal.start()
    await bot.start()
    world, resolver = await start_guarded_world(tmp_path, bot, allow=allow)
    try:
        assert (await command(world, f"user role {MANAGER} manager")).ok
        yield world, internal, bot, resolver
    finally:
        await stop_world(world)
        await bot.stop()
        await internal.stop()
