"""What rule tests talk to: a real SMTP server (aiosmtpd) and a local HTTP endpoint that
records forwards, answers like a chatbot and serves files."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from typing import Any

from aiohttp import web
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.world import free_port


@dataclass
class Mailbox:
    """An SMTP server on the test's loop; `mails` holds what it received."""

    port: int = 0
    mails: list[Message] = field(default_factory=list)
    recipients: list[list[str]] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)
    server: Any = None

    async def handle_RCPT(  # noqa: N802  (aiosmtpd's hook name)
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list
    ) -> str:
        if address in self.refuse:
            return "550 5.1.1 no such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        raw = envelope.content if isinstance(envelope.content, bytes) else b""
        self.mails.append(message_from_bytes(raw))
        self.recipients.append(list(envelope.rcpt_tos))
        return "250 Message accepted for delivery"

    async def start(self) -> None:
        import asyncio

        self.port = free_port()
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            lambda: SMTP(self, hostname="mail.test"), "127.0.0.1", self.port
        )

    async def stop(self) -> None:
        self.server.close()
        await self.server.wait_closed()

    def settings(self) -> dict[str, Any]:
        """The bridge's [mail] section for this server."""
        return {
            "host": "127.0.0.1",
            "port": self.port,
            "security": "none",
            "from_address": "bridge@example.org",
            "timeout_s": 5,
        }


@dataclass
class Endpoint:
    """A web service: records JSON posts; /bot answers like a chatbot; /files/<name> serves;
    /go/<name> redirects (GET and POST) to `redirects[name]`.

    Its port is chosen when it is made, so that a bridge started before it can allow-list it
    (`allow`)."""

    posts: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    raw_paths: list[str] = field(default_factory=list)
    gets: list[str] = field(default_factory=list)
    bot_answer: dict[str, Any] = field(default_factory=lambda: {"text": "Bot says hi"})
    status: int = 200
    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    redirects: dict[str, str] = field(default_factory=dict)
    runner: web.AppRunner | None = None
    port: int = field(default_factory=free_port)

    async def _post(self, request: web.Request) -> web.Response:
        if request.path.startswith("/go/"):
            raise web.HTTPTemporaryRedirect(self.redirects[request.path[4:]])
        self.raw_paths.append(request.raw_path)
        self.posts.append((request.path, json.loads(await request.read())))
        if self.status != 200:
            return web.json_response({"error": "nope"}, status=self.status)
        if request.path == "/bot":
            return web.json_response(self.bot_answer)
        return web.json_response({"ok": True})

    async def _file(self, request: web.Request) -> web.Response:
        self.gets.append(request.path)
        found = self.files.get(request.match_info["name"])
        if found is None:
            raise web.HTTPNotFound()
        data, mime = found
        return web.Response(body=data, content_type=mime)

    async def _go(self, request: web.Request) -> web.Response:
        self.gets.append(request.path)
        raise web.HTTPFound(self.redirects[request.match_info["name"]])

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._post)
        app.router.add_get("/files/{name}", self._file)
        app.router.add_get("/go/{name}", self._go)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    @property
    def allow(self) -> str:
        """Its entry in `[security] allow_private`: this host and port only."""
        return f"127.0.0.1:{self.port}"
