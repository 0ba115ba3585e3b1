"""`GET /metrics`: the bridge's counters (`bridge.metrics`) and the outbox backlog read from
the database at each scrape, in Prometheus' text format, behind an optional bearer token."""

from __future__ import annotations

import hmac
import logging

from aiohttp import web
from pydantic import SecretStr

from bridge.metrics import CONTENT_TYPE, Metrics
from storage import Database
from storage.monitoring import Backlog

log = logging.getLogger(__name__)


class MetricsPage:
    """GET /metrics: the counters, and the outbox backlog read from the database."""

    def __init__(self, metrics: Metrics, db: Database, token: SecretStr | None) -> None:
        self._metrics = metrics
        self._db = db
        self._token = token.get_secret_value().encode() if token is not None else None

    def routes(self) -> list[web.RouteDef]:
        """The metrics endpoint."""
        return [web.get("/metrics", self._serve)]

    async def _serve(self, request: web.Request) -> web.Response:
        if self._token is not None:
            scheme, _, given = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not given.strip():
                return web.Response(
                    status=401,
                    text="send Authorization: Bearer <[metrics] token>",
                    headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
                )
            if not hmac.compare_digest(given.strip().encode(), self._token):
                return web.Response(status=403, text="wrong token")
        backlog: list[Backlog] | None
        try:
            backlog = await self._db.read_tx(lambda tx: tx.monitoring.outbox_backlog())
        except Exception:
            log.warning("metrics: reading the outbox backlog failed", exc_info=True)
            backlog = None
        body = self._metrics.render(self._metrics.gauges(backlog))
        return web.Response(
            body=body.encode(), headers={"Content-Type": CONTENT_TYPE, "Cache-Control": "no-store"}
        )
