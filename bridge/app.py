"""The aiohttp application: routes, lifecycle, and the one shared ClientSession."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Sequence

import aiohttp
from aiohttp import web
from jinja2 import Environment

import commands.all  # noqa: F401  (records every command)
from bridge.api import PREFIX as API_PREFIX
from bridge.api import Api, build_api
from bridge.bodies import UNSIGNED_READS, WEBHOOK_BODY_MAX, ReadGate
from bridge.config import Settings
from bridge.leader import Leadership
from bridge.links import ShortLinks
from bridge.metrics import REPORT_FD, Metrics
from bridge.outbox import Dispatcher, Leases, worker_name
from bridge.pipeline import Pipeline
from bridge.protocols import Connector, StaffSurface
from bridge.ratelimit import RateLimiter
from bridge.registry import Registry
from bridge.retention import PayloadRetention
from bridge.services import Services
from bridge.staffio import Reply, Request
from bridge.state import KvState
from bridge.web import templating
from bridge.web.media import MediaStore
from bridge.web.metrics import MetricsPage
from bridge.web.stats_page import StatsPage
from bridge.web.widget import Widget
from commands.runner import run as run_request
from connectors.all import SHIPPED
from storage import Database, Writer

log = logging.getLogger(__name__)

SETTINGS = web.AppKey("settings", Settings)
DATABASE = web.AppKey("database", Database)
WRITER = web.AppKey("writer", Writer)
PIPELINE = web.AppKey("pipeline", Pipeline)
DISPATCHER = web.AppKey("dispatcher", Dispatcher)
HTTP = web.AppKey("http", aiohttp.ClientSession)
MEDIA = web.AppKey("media", MediaStore)
LINKS = web.AppKey("short_links", ShortLinks)
RETENTION = web.AppKey("retention", PayloadRetention)
CHILD = web.AppKey("dispatcher_command", list[str])
CONNECTORS = web.AppKey("connectors", list[Connector])
SURFACES = web.AppKey("surfaces", list[StaffSurface])
API = web.AppKey("api", Api)
METRICS = web.AppKey("metrics", Metrics)
TEMPLATES = web.AppKey("templates", Environment)


def _http_session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=60, sock_connect=10),
        connector=aiohttp.TCPConnector(limit=256, limit_per_host=128),
    )


def _assemble(
    settings: Settings,
    http: aiohttp.ClientSession,
    *,
    poll_interval: float = 1.0,
    shipped: Registry = SHIPPED,
) -> tuple[
    Database,
    Writer,
    Pipeline,
    list[Connector],
    list[StaffSurface],
    Dispatcher,
    MediaStore,
    ShortLinks,
]:
    """Build every part from the registries; nothing is started."""
    db = Database(settings.bridge.database, shared=settings.bridge.dispatch == "process")
    writer = Writer(db, window_ms=settings.bridge.commit_window_ms)
    pipeline = Pipeline(settings, db, writer, http=http)
    media = MediaStore(db, settings.bridge.public_url)
    links = ShortLinks(
        db, settings.bridge.public_url, writer=writer, clock=lambda: pipeline.clock()
    )
    services = Services(settings, db, writer, pipeline)

    async def run_command(request: Request) -> Reply:
        return await run_request(request, services)

    connectors_: list[Connector] = []
    for part in shipped.connectors.values():
        connectors_.extend(part.build(settings, http, pipeline.on_inbound, media))
    surfaces: list[StaffSurface] = []
    for name, surface_part in shipped.surfaces.items():
        state = KvState(db, f"surface.{name}.")
        surfaces.extend(surface_part.build(settings, http, pipeline.on_staff, run_command, state))
    for connector in connectors_:
        pipeline.add_connector(connector)
    for surface in surfaces:
        pipeline.add_surface(surface)
    for publisher_part in shipped.publishers.values():
        for publisher in publisher_part.build(settings, http):
            pipeline.add_publisher(publisher)
    # On PostgreSQL any number of processes may share the outbox: each leases what it sends.
    leases = Leases(worker_name()) if db.dialect == "postgresql" else None
    dispatcher = Dispatcher(
        db,
        writer,
        pipeline.handlers(),
        RateLimiter(pipeline.rate_limits()),
        poll_interval=poll_interval,
        leases=leases,
    )
    writer.set_on_commit(dispatcher.notify)
    return db, writer, pipeline, connectors_, surfaces, dispatcher, media, links


async def build_app(
    settings: Settings, *, dispatcher_command: Sequence[str] = ()
) -> web.Application:
    """Build the application; everything starts in its cleanup context, in order.

    With `[bridge] dispatch = "process"`, `dispatcher_command` starts the child that sends.
    """
    # Routes that take bodies cap them further (bridge.bodies); nothing takes more by default.
    app = web.Application(client_max_size=WEBHOOK_BODY_MAX)
    app[UNSIGNED_READS] = ReadGate()
    http = _http_session()
    db, writer, pipeline, connectors_, surfaces, dispatcher, media, links = _assemble(
        settings, http
    )
    app.add_routes(media.routes())
    app.add_routes(links.routes())
    # One environment for the pages' templates: each compiles once, for the app's life.
    templates = templating.environment()
    # Late-bound: the pipeline's clock may be replaced after the app is built.
    app.add_routes(StatsPage(db, settings, templates, clock=lambda: pipeline.clock()).routes())
    app.add_routes(Widget(db, settings.widget, connectors_, templates).routes())
    metrics = pipeline.metrics
    metrics.watch_dispatcher(dispatcher)
    metrics.declare(dict.fromkeys(c.platform for c in connectors_))
    app.middlewares.append(metrics.middleware())
    app.add_routes(MetricsPage(metrics, db, settings.metrics.token).routes())
    for connector in connectors_:
        metrics.watch_webhooks(connector.platform, app.add_routes(connector.routes()))
    for surface in surfaces:
        metrics.watch_webhooks(surface.name, app.add_routes(surface.routes()))
    if settings.bridge.dispatch == "process":
        if not dispatcher_command:
            msg = 'dispatch = "process" needs the command that starts the dispatcher process'
            raise ValueError(msg)
        app[CHILD] = list(dispatcher_command)

    app[SETTINGS] = settings
    app[DATABASE] = db
    app[WRITER] = writer
    app[PIPELINE] = pipeline
    app[DISPATCHER] = dispatcher
    app[HTTP] = http
    app[MEDIA] = media
    app[LINKS] = links
    app[RETENTION] = PayloadRetention(db, settings.outbox.keep_payload_days)
    app[CONNECTORS] = connectors_
    app[SURFACES] = surfaces
    app[METRICS] = metrics
    app[TEMPLATES] = templates
    app.router.add_get("/healthz", healthz)
    api, api_app = build_api(Services(settings, db, writer, pipeline))
    app[API] = api
    app.add_subapp(API_PREFIX, api_app)
    app.cleanup_ctx.append(_lifecycle)
    return app


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    db, writer, dispatcher = app[DATABASE], app[WRITER], app[DISPATCHER]
    started: list[Connector | StaffSurface] = []
    supervisor: asyncio.Task[None] | None = None
    leadership: Leadership | None = None
    try:
        await db.migrate()
        await writer.start()
        # Surfaces first: customer messages that arrive at once have somewhere to go.
        parts: list[Connector | StaffSurface] = [*app[SURFACES], *app[CONNECTORS]]
        for part in parts:
            await part.start()
            started.append(part)

        async def lead() -> None:
            for part in parts:
                await part.start_loop()

        async def follow() -> None:
            for part in reversed(parts):
                try:
                    await part.stop_loop()
                except Exception:
                    log.exception("stopping the loop of %s failed", part)

        if db.dialect == "postgresql":
            # Several processes may serve this bridge: the loops run in one of them.
            leadership = Leadership(app[SETTINGS].bridge.database, lead, follow)
            await leadership.start()
        else:
            await lead()
        if CHILD in app:
            supervisor = asyncio.create_task(
                _supervise(app[CHILD], app[METRICS]), name="dispatcher-process"
            )
        else:
            await dispatcher.start()
        # In every process: emptying a payload twice is harmless.
        await app[RETENTION].start()
        for connector in app[CONNECTORS]:
            link = connector.chat_link()
            if link:
                log.info("click-to-chat for %s:%s: %s", connector.platform, connector.account, link)
        log.info(
            "bridge running: connectors %s, surfaces %s",
            [f"{c.platform}:{c.account}" for c in app[CONNECTORS]] or "none",
            [s.name for s in app[SURFACES]] or "none",
        )
        yield
    finally:
        if supervisor is not None:
            supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await supervisor
        if leadership is not None:
            await leadership.stop()
        await app[RETENTION].stop()
        await dispatcher.stop()
        for part in reversed(started):
            try:
                await part.stop()
            except Exception:
                log.exception("stopping %s failed", part)
        await writer.stop()
        await app[HTTP].close()
        await app[PIPELINE].outbound.close()
        await db.close()


async def _supervise(command: list[str], metrics: Metrics) -> None:
    """Keep the dispatcher process running; stop it when the bridge stops."""
    delay = 1.0
    while True:
        # The child reports its counters through a pipe of its own (see bridge.metrics).
        read_fd, write_fd = os.pipe()
        env = {**os.environ, "BRIDGE_PARENT_PID": str(os.getpid()), REPORT_FD: str(write_fd)}
        try:
            child = await asyncio.create_subprocess_exec(*command, env=env, pass_fds=(write_fd,))
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        reports = asyncio.create_task(metrics.follow(read_fd), name="dispatcher-metrics")
        log.info("dispatcher process %s started", child.pid)
        try:
            code = await child.wait()
        except asyncio.CancelledError:
            if child.returncode is None:
                child.terminate()
                try:
                    await asyncio.wait_for(child.wait(), 10)
                except TimeoutError:
                    child.kill()
                    await child.wait()
            raise
        finally:
            # The pipe closes with the child; the counters of its last report stay counted.
            try:
                await asyncio.wait_for(asyncio.shield(reports), 5)
            except TimeoutError:
                pass
            except Exception:
                log.warning("reading the dispatcher process's metrics failed", exc_info=True)
            finally:
                reports.cancel()
        log.error("dispatcher process exited with %s; restarting in %.0fs", code, delay)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 30.0)


def _die_with_parent() -> None:
    """Linux: let the kernel kill this process when its parent dies (kill -9 included)."""
    parent = os.environ.get("BRIDGE_PARENT_PID")
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if parent and os.getppid() != int(parent):
        os._exit(1)  # the parent is already gone


async def run_dispatcher(settings: Settings) -> None:
    """The dispatcher process: send what the outbox holds until told to stop."""
    _die_with_parent()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    http = _http_session()
    # Rows come from the webhook process, which cannot notify this one: look often.
    db, writer, pipeline, _, _, dispatcher, _, _ = _assemble(settings, http, poll_interval=0.02)
    pipeline.metrics.watch_dispatcher(dispatcher)
    fd = os.environ.get(REPORT_FD)
    reports = None
    if fd is not None and fd.isdigit():
        reports = asyncio.create_task(pipeline.metrics.report_to(int(fd)), name="metrics-report")
    await writer.start()
    await dispatcher.start()
    try:
        await stop.wait()
    finally:
        await dispatcher.stop()
        if reports is not None:
            reports.cancel()  # it writes the final figures as it ends
            with contextlib.suppress(asyncio.CancelledError):
                await reports
        await writer.stop()
        await http.close()
        await pipeline.outbound.close()
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
        # Anyone who reaches the listener may ask, and done rows pile up: only pending ones.
        pending = await app[DATABASE].read_tx(lambda tx: tx.outbox_pending())
        body["outbox"] = {"pending": pending}
    return web.json_response(body, status=200 if ok else 503)
