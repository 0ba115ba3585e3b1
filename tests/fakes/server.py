"""What every fake platform does alike: serve on a free local port and call the bridge back.

A fake builds its aiohttp application in `app()`; `start()` serves it on 127.0.0.1 with a port
the OS picks (`root_url`) and opens the client session the fake's webhook calls go out on.
Fakes are async context managers too: `async with FakeTelegram() as fake: ...`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Self

import aiohttp
from aiohttp import web


class FakeServer:
    """A fake platform API on 127.0.0.1, with a client session for calling the bridge."""

    # Extra web.AppRunner options a fake needs (e.g. handler_cancellation).
    runner_options: ClassVar[Mapping[str, Any]] = {}

    def __init__(self) -> None:
        self._root: str | None = None
        self._runners: list[web.AppRunner] = []
        self._client: aiohttp.ClientSession | None = None

    def app(self) -> web.Application:
        """The fake's API as an aiohttp application."""
        raise NotImplementedError

    async def start(self) -> None:
        """Listen on 127.0.0.1 with a port the OS picks."""
        self._root = await self.listen(self.app())
        self._client = aiohttp.ClientSession()

    async def stop(self) -> None:
        """Shut the server down."""
        if self._client is not None:
            await self._client.close()
            self._client = None
        runners, self._runners = self._runners, []
        for runner in runners:
            await runner.cleanup()

    async def listen(self, app: web.Application) -> str:
        """Serve `app` on 127.0.0.1 with a port the OS picks until `stop`; return its root URL."""
        # A short shutdown_timeout: tests stop fakes often, and no request outlives its test.
        runner = web.AppRunner(app, shutdown_timeout=0.5, access_log=None, **self.runner_options)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        self._runners.append(runner)
        return f"http://127.0.0.1:{runner.addresses[0][1]}"

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def root_url(self) -> str:
        """`http://127.0.0.1:PORT`, without a trailing slash."""
        if self._root is None:
            msg = f"{type(self).__name__} is not started"
            raise RuntimeError(msg)
        return self._root

    def _session(self) -> aiohttp.ClientSession:
        """The client session the fake calls the bridge with."""
        if self._client is None:
            msg = f"{type(self).__name__} is not started"
            raise RuntimeError(msg)
        return self._client
