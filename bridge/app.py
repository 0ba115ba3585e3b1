"""The aiohttp application: routes, lifecycle, and the one shared ClientSession."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

# The modules that ship with the bridge record their factories in `bridge.registry`.
import connectors.slack
import connectors.telegram
from bridge import registry
from bridge.config import Settings
from bridge.outbox import Dispatcher, RateLimiter
from bridge.pipeline import Pipeline
from bridge.protocols import Connector, StaffSurface
from storage import Database, Tx, Writer

log = logging.getLogger(__name__)

SETTINGS = web.AppKey("settings", Settings)
DATABASE = web.AppKey("database", Database)
WRITER = web.AppKey("writer", Writer)
PIPELINE = web.AppKey("pipeline", Pipeline)
DISPATCHER = web.AppKey("dispatcher", Dispatcher)
HTTP = web.AppKey("http", aiohttp.ClientSession)
CONNECTORS = web.AppKey("connectors", list[Connector])
SURFACES = web.AppKey("surfaces", list[StaffSurface])

SHIPPED = (connectors.slack, connectors.telegram)


async def build_app(settings: Settings) -> web.Application:
    """Build the application; everything starts in its cleanup context, in order."""
    app = web.Application(client_max_size=32 * 1024 * 1024)
    http = aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=60, sock_connect=10),
        connector=aiohttp.TCPConnector(limit=256, limit_per_host=128),
    )
    db = Database(settings.bridge.database)
    writer = Writer(db, window_ms=settings.bridge.commit_window_ms)
    pipeline = Pipeline(settings, db, writer)
    connectors_: list[Connector] = []
    for build in registry.CONNECTORS.values():
        connectors_.extend(build(settings, http, pipeline.on_inbound))
    surfaces: list[StaffSurface] = []
    for build_surface in registry.SURFACES.values():
        surfaces.extend(build_surface(settings, http, pipeline.on_staff))
    for connector in connectors_:
        pipeline.add_connector(connector)
        app.add_routes(connector.routes())
    for surface in surfaces:
        pipeline.add_surface(surface)
        app.add_routes(surface.routes())
    dispatcher = Dispatcher(db, writer, pipeline.handlers(), RateLimiter(pipeline.rate_limits()))
    writer.set_on_commit(dispatcher.notify)

    app[SETTINGS] = settings
    app[DATABASE] = db
    app[WRITER] = writer
    app[PIPELINE] = pipeline
    app[DISPATCHER] = dispatcher
    app[HTTP] = http
    app[CONNECTORS] = connectors_
    app[SURFACES] = surfaces
    app.router.add_get("/healthz", healthz)
    app.cleanup_ctx.append(_lifecycle)
    return app


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    db, writer, dispatcher = app[DATABASE], app[WRITER], app[DISPATCHER]
    started: list[Connector | StaffSurface] = []
    try:
        await db.migrate()
        await writer.start()
        # Surfaces first: customer messages that arrive at once have somewhere to go.
        parts: list[Connector | StaffSurface] = [*app[SURFACES], *app[CONNECTORS]]
        for part in parts:
            await part.start()
            started.append(part)
        await dispatcher.start()
        log.info(
            "bridge running: connectors %s, surfaces %s",
            [f"{c.platform}:{c.account}" for c in app[CONNECTORS]] or "none",
            [s.name for s in app[SURFACES]] or "none",
        )
        yield
    finally:
        await dispatcher.stop()
        for part in reversed(started):
            try:
                await part.stop()
            except Exception:
                log.exception("stopping %s failed", part)
        await writer.stop()
        await app[HTTP].close()
        await db.close()


async def healthz(request: web.Request) -> web.Response:
    """200 with a JSON summary when the database answers, 503 when it does not."""
    app = request.app
    ok = await app[DATABASE].ping()
    body: dict[str, object] = {
        "status": "ok" if ok else "database unavailable",
        "database": ok,
        "connectors": [f"{c.platform}:{c.account}" for c in app[CONNECTORS]],
        "surfaces": [s.name for s in app[SURFACES]],
    }
    if ok:
        body["outbox"] = await app[DATABASE].run_read(lambda conn: Tx(conn).outbox_counts())
    return web.json_response(body, status=200 if ok else 503)
