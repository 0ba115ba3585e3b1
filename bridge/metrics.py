"""Operational metrics in Prometheus' text format, served at `GET /metrics`.

One `Metrics` object per process holds the counters, and the app hands it to whatever counts:
the pipeline counts the customer messages it stores and what the platforms answer to each send,
a middleware times the platforms' webhook requests, and the outbox dispatcher's own counters
(rows finished, rate limits obeyed) are read when the page is rendered. The outbox backlog is
read from the database at scrape time, with one GROUP BY.

With `[bridge] dispatch = "process"` the sends happen in the dispatcher process. It writes its
counters, cumulative, as one JSON line a second to a pipe the web process reads (`report_to`,
`follow`). The web process shows them added to its own, and keeps the totals of a dispatcher
process that ended, so that every counter only grows while the web process runs.
"""

from __future__ import annotations

import asyncio
import bisect
import hmac
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from pydantic import SecretStr

from storage import Database
from storage.monitoring import Backlog, outbox_backlog

log = logging.getLogger(__name__)

Labels = tuple[str, ...]
Counts = dict[str, dict[Labels, float]]

# The environment variable that tells the dispatcher process which inherited file descriptor
# leads to the web process.
REPORT_FD = "BRIDGE_METRICS_FD"
REPORT_EVERY = 1.0
# PIPE_BUF on Linux: a write to a pipe of at most this many bytes is whole or does not happen.
REPORT_MAX = 4096
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Webhooks should be answered in milliseconds; Slack gives up after 3 s, Meta after about 20.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True, slots=True)
class Family:
    """A metric's name, type, help text and label names."""

    name: str
    kind: Literal["counter", "gauge", "histogram"]
    help: str
    labels: tuple[str, ...] = ()


MESSAGES_IN = Family(
    "bridge_messages_in_total",
    "counter",
    "Customer messages stored, per platform (a platform's retry of a message is not counted).",
    ("platform",),
)
MESSAGES_OUT = Family(
    "bridge_messages_out_total",
    "counter",
    "Messages a customer platform accepted (replies, automatic answers, broadcasts, SMS"
    " forwards), per platform.",
    ("platform",),
)
RATE_LIMITED = Family(
    "bridge_rate_limited_total",
    "counter",
    "Sends a customer platform refused with a rate limit (HTTP 429 or its throughput error),"
    " per platform.",
    ("platform",),
)
DELIVERY_FAILURES = Family(
    "bridge_delivery_failures_total",
    "counter",
    "Messages not delivered, per platform: refused for good when sent (stage=send), or reported"
    " failed by the platform afterwards (stage=report).",
    ("platform", "stage"),
)
OUTBOX_DONE = Family(
    "bridge_outbox_done_total",
    "counter",
    "Outbox rows the dispatcher finished (carried out, or failed for good), per stream.",
    ("stream",),
)
OUTBOX_RATE_LIMITED = Family(
    "bridge_outbox_rate_limited_total",
    "counter",
    "Rate limits (HTTP 429 and the like) the dispatcher obeyed, from customer platforms and"
    " staff surfaces alike.",
)
WEBHOOK_SECONDS = Family(
    "bridge_webhook_duration_seconds",
    "histogram",
    "Time to answer a platform's webhook request, per platform, route and status class.",
    ("platform", "route", "status"),
)
OUTBOX_PENDING = Family(
    "bridge_outbox_pending", "gauge", "Pending outbox rows, per kind and stream.", ("kind", "bulk")
)
OUTBOX_OLDEST = Family(
    "bridge_outbox_oldest_pending_age_seconds",
    "gauge",
    "Age of the oldest pending outbox row; 0 when none is pending.",
)
DATABASE_UP = Family(
    "bridge_database_up", "gauge", "1 when the database answered this scrape's query, else 0."
)
REPORT_AGE = Family(
    "bridge_dispatcher_report_age_seconds",
    "gauge",
    "Seconds since the dispatcher process last reported its counters (dispatch = process).",
)
COUNTERS = (
    MESSAGES_IN,
    MESSAGES_OUT,
    RATE_LIMITED,
    DELIVERY_FAILURES,
    OUTBOX_DONE,
    OUTBOX_RATE_LIMITED,
)
_BY_NAME = {family.name: family for family in COUNTERS}

Gauge = tuple[Family, Labels, float]


class DispatcherCounters(Protocol):
    """The outbox dispatcher's public counters."""

    sent: int
    sent_bulk: int
    rate_limited: int


@dataclass(slots=True)
class _Histogram:
    # Observations per bucket (not cumulative); the last slot is above the largest bound.
    buckets: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    total: float = 0.0
    count: int = 0


class Metrics:
    """The counters and webhook timings of one process, and their Prometheus text."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._counts: Counts = {family.name: {} for family in COUNTERS}
        self._webhooks: dict[Labels, _Histogram] = {}
        # Canonical route path (never a raw request path) → (platform, route label).
        self._routes: dict[str, tuple[str, str]] = {}
        self._dispatchers: list[DispatcherCounters] = []
        # The dispatcher process: its latest report, and the totals of those that ended.
        self._child: Counts = {}
        self._child_ended: Counts = {}
        self._child_seen: float | None = None
        self._report_too_big = False

    # -- counting -------------------------------------------------------------------------

    def declare(self, platforms: Iterable[str]) -> None:
        """Show the configured platforms' counters at 0 before anything happens."""
        for platform in platforms:
            for family in (MESSAGES_IN, MESSAGES_OUT, RATE_LIMITED):
                self._add(family, (platform,), 0)
            for stage in ("send", "report"):
                self._add(DELIVERY_FAILURES, (platform, stage), 0)

    def received(self, platform: str, count: int = 1) -> None:
        """Customer messages were stored."""
        self._add(MESSAGES_IN, (platform,), count)

    def sent(self, platform: str) -> None:
        """A platform accepted a message."""
        self._add(MESSAGES_OUT, (platform,), 1)

    def rate_limited(self, platform: str) -> None:
        """A platform refused a send with a rate limit."""
        self._add(RATE_LIMITED, (platform,), 1)

    def delivery_failed(self, platform: str, stage: Literal["send", "report"]) -> None:
        """A message was refused for good when sent, or reported failed afterwards."""
        self._add(DELIVERY_FAILURES, (platform, stage), 1)

    def _add(self, family: Family, labels: Labels, amount: float) -> None:
        values = self._counts[family.name]
        values[labels] = values.get(labels, 0.0) + amount

    def watch_dispatcher(self, dispatcher: DispatcherCounters) -> None:
        """Read this dispatcher's counters whenever the counters are read."""
        self._dispatchers.append(dispatcher)

    def counters(self) -> Counts:
        """This process's counters, its dispatcher's included (what a report carries)."""
        out = {name: dict(values) for name, values in self._counts.items()}
        for d in self._dispatchers:
            done, limited = out[OUTBOX_DONE.name], out[OUTBOX_RATE_LIMITED.name]
            for stream, value in (("conversation", d.sent - d.sent_bulk), ("bulk", d.sent_bulk)):
                done[(stream,)] = done.get((stream,), 0.0) + value
            limited[()] = limited.get((), 0.0) + d.rate_limited
        return out

    # -- webhook timing -------------------------------------------------------------------

    def watch_webhooks(self, platform: str, routes: Iterable[web.AbstractRoute]) -> None:
        """Time the requests to these routes, labelled with the platform and the route."""
        for route in routes:
            resource = route.resource
            if resource is not None:
                self._routes[resource.canonical] = (platform, resource.canonical)

    def observe_webhook(self, platform: str, route: str, status: int, seconds: float) -> None:
        """One webhook request was answered with `status` after `seconds`."""
        labels = (platform, route, f"{status // 100}xx")
        histogram = self._webhooks.get(labels)
        if histogram is None:
            histogram = self._webhooks[labels] = _Histogram()
        histogram.buckets[bisect.bisect_left(BUCKETS, seconds)] += 1
        histogram.total += seconds
        histogram.count += 1

    def middleware(self) -> Middleware:
        """An aiohttp middleware that times the requests to the watched webhook routes."""
        routes = self._routes

        @web.middleware
        async def time_webhooks(request: web.Request, handler: Handler) -> web.StreamResponse:
            resource = request.match_info.route.resource
            watched = routes.get(resource.canonical) if resource is not None else None
            if watched is None:
                return await handler(request)
            start = time.perf_counter()
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                self.observe_webhook(*watched, exc.status, time.perf_counter() - start)
                raise
            except Exception:
                self.observe_webhook(*watched, 500, time.perf_counter() - start)
                raise
            self.observe_webhook(*watched, response.status, time.perf_counter() - start)
            return response

        return time_webhooks

    # -- the dispatcher process -----------------------------------------------------------

    async def report_to(self, fd: int, every: float = REPORT_EVERY) -> None:
        """In the dispatcher process: write the counters to the web process until cancelled."""
        try:
            os.set_blocking(fd, False)
        except OSError as exc:
            log.warning("metrics: cannot report to the web process: %s", exc)
            return
        try:
            while True:
                self._report(fd)
                await asyncio.sleep(every)
        finally:
            self._report(fd)  # the last figures, as the process stops
            os.close(fd)

    def _report(self, fd: int) -> None:
        counts = {
            name: [[list(labels), value] for labels, value in values.items()]
            for name, values in self.counters().items()
        }
        line = json.dumps({"counters": counts}, separators=(",", ":")).encode() + b"\n"
        if len(line) > REPORT_MAX:
            if not self._report_too_big:
                self._report_too_big = True
                log.warning("metrics report of %s bytes is too large to send", len(line))
            return
        try:
            os.write(fd, line)
        except BlockingIOError:
            pass  # the web process is behind; the next report carries the same totals
        except OSError as exc:
            log.debug("metrics report not sent: %s", exc)

    async def follow(self, fd: int) -> None:
        """In the web process: take the dispatcher process's reports until its pipe closes."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=4 * REPORT_MAX)
        pipe = os.fdopen(fd, "rb", buffering=0)
        try:
            transport, _ = await loop.connect_read_pipe(
                lambda: asyncio.StreamReaderProtocol(reader), pipe
            )
        except OSError as exc:
            # The dispatcher runs on regardless; only its figures are missing.
            log.warning("metrics: cannot read the dispatcher process's reports: %s", exc)
            pipe.close()
            return
        self._child_seen = self._clock()
        try:
            while line := await reader.readline():
                self.take_report(line)
        except ValueError:
            log.warning("metrics report from the dispatcher process is too long; ignoring it")
        finally:
            transport.close()
            self.child_ended()

    def take_report(self, line: bytes) -> None:
        """A report of the dispatcher process: its counters since it started."""
        try:
            data = json.loads(line)
            report = _parse_report(data["counters"])
        except (ValueError, KeyError, TypeError):
            log.warning("metrics report from the dispatcher process is malformed; ignoring it")
            return
        self._child = report
        self._child_seen = self._clock()

    def child_ended(self) -> None:
        """The dispatcher process ended: its last figures stay in the totals."""
        self._child_ended = _sum(self._child_ended, self._child)
        self._child = {}

    # -- rendering ------------------------------------------------------------------------

    def gauges(self, backlog: Sequence[Backlog] | None) -> list[Gauge]:
        """The gauges of a scrape: the outbox backlog (None: the database did not answer)."""
        now = self._clock()
        found: list[Gauge] = [(DATABASE_UP, (), 0.0 if backlog is None else 1.0)]
        if backlog is not None:
            for row in backlog:
                found.append((OUTBOX_PENDING, (row.kind, str(row.bulk).lower()), row.pending))
            oldest = min((row.oldest_created_at for row in backlog), default=None)
            found.append((OUTBOX_OLDEST, (), 0.0 if oldest is None else max(0.0, now - oldest)))
        if self._child_seen is not None:
            found.append((REPORT_AGE, (), max(0.0, now - self._child_seen)))
        return found

    def render(self, gauges: Sequence[Gauge] = ()) -> str:
        """Everything in Prometheus' text exposition format (version 0.0.4)."""
        totals = _sum(_sum(self.counters(), self._child_ended), self._child)
        lines: list[str] = []
        for family in COUNTERS:
            values = totals.get(family.name, {})
            if not values:
                continue
            lines.extend(_header(family))
            for labels, value in sorted(values.items()):
                lines.append(f"{family.name}{_labels(family.labels, labels)} {_number(value)}")
        if self._webhooks:
            lines.extend(_header(WEBHOOK_SECONDS))
            for labels, histogram in sorted(self._webhooks.items()):
                lines.extend(_histogram_lines(WEBHOOK_SECONDS, labels, histogram))
        done: set[str] = set()
        for family, _, _ in gauges:
            if family.name in done:
                continue
            done.add(family.name)
            lines.extend(_header(family))
            for other, labels, value in gauges:
                if other.name == family.name:
                    lines.append(f"{family.name}{_labels(family.labels, labels)} {_number(value)}")
        return "\n".join(lines) + "\n"


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
            backlog = await self._db.run_read(outbox_backlog)
        except Exception:
            log.warning("metrics: reading the outbox backlog failed", exc_info=True)
            backlog = None
        body = self._metrics.render(self._metrics.gauges(backlog))
        return web.Response(
            body=body.encode(), headers={"Content-Type": CONTENT_TYPE, "Cache-Control": "no-store"}
        )


def _parse_report(raw: Any) -> Counts:
    """A report's counters, keeping only known counters with the right labels."""
    if not isinstance(raw, Mapping):
        raise TypeError("counters must be an object")
    out: Counts = {}
    for name, entries in raw.items():
        family = _BY_NAME.get(name)
        if family is None or not isinstance(entries, list):
            continue
        values = out.setdefault(name, {})
        for labels, value in entries:
            if (
                isinstance(labels, list)
                and len(labels) == len(family.labels)
                and all(isinstance(label, str) for label in labels)
                and isinstance(value, int | float)
                and math.isfinite(value)
            ):
                values[tuple(labels)] = float(value)
    return out


def _sum(a: Counts, b: Counts) -> Counts:
    out = {name: dict(values) for name, values in a.items()}
    for name, values in b.items():
        into = out.setdefault(name, {})
        for labels, value in values.items():
            into[labels] = into.get(labels, 0.0) + value
    return out


def _header(family: Family) -> list[str]:
    return [f"# HELP {family.name} {family.help}", f"# TYPE {family.name} {family.kind}"]


def _histogram_lines(family: Family, labels: Labels, histogram: _Histogram) -> list[str]:
    lines = []
    cumulative = 0
    # Bounds written as floats ("5.0"), as Prometheus' own client libraries write them.
    bounds = [*(repr(float(bound)) for bound in BUCKETS), "+Inf"]
    for bound, count in zip(bounds, histogram.buckets, strict=True):
        cumulative += count
        text = _labels((*family.labels, "le"), (*labels, bound))
        lines.append(f"{family.name}_bucket{text} {cumulative}")
    text = _labels(family.labels, labels)
    lines.append(f"{family.name}_sum{text} {_number(histogram.total)}")
    lines.append(f"{family.name}_count{text} {histogram.count}")
    return lines


def _labels(names: Sequence[str], values: Sequence[str]) -> str:
    if not names:
        return ""
    pairs = ",".join(
        f'{name}="{_escape(value)}"' for name, value in zip(names, values, strict=True)
    )
    return "{" + pairs + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))
