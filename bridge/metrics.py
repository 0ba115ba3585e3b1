"""Operational metrics for Prometheus, kept with `prometheus-client` (the page that serves them,
`GET /metrics`, is `bridge.web.metrics`).

One `Metrics` object per app owns a `CollectorRegistry` (injected, or its own: several bridges
may run in one process, so nothing is registered globally) and hands the counting to whatever
counts: the pipeline counts the customer messages it stores and what the platforms answer to
each send, a middleware times the platforms' webhook requests. Those are prometheus_client
counters and a histogram. `DispatcherFigures`, a collector, reads the outbox dispatcher's own
counters (rows finished, rate limits obeyed) when the page is scraped; `ScrapeFigures` carries
what the page reads from the database at each scrape (the outbox backlog, one GROUP BY).

With `[bridge] dispatch = "process"` the sends happen in the dispatcher process. It writes its
counters, cumulative, as one JSON line a second to a pipe the web process reads (`report_to`,
`follow`). The web process adds what each report grew by to its own counters, so that the
totals of a dispatcher process that ended stay, and every counter only grows while the web
process runs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from storage.monitoring import Backlog

log = logging.getLogger(__name__)

Labels = tuple[str, ...]
Counts = dict[str, dict[Labels, float]]

# The environment variable that tells the dispatcher process which inherited file descriptor
# leads to the web process.
REPORT_FD = "BRIDGE_METRICS_FD"
REPORT_EVERY = 1.0
# PIPE_BUF on Linux: a write to a pipe of at most this many bytes is whole or does not happen.
REPORT_MAX = 4096
# The text format the page always spoke, whatever a scraper's Accept asks for.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
# Webhooks should be answered in milliseconds; Slack gives up after 3 s, Meta after about 20.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True, slots=True)
class Family:
    """A metric's name, help text and label names."""

    name: str
    help: str
    labels: tuple[str, ...] = ()


MESSAGES_IN = Family(
    "bridge_messages_in_total",
    "Customer messages stored, per platform (a platform's retry of a message is not counted).",
    ("platform",),
)
MESSAGES_OUT = Family(
    "bridge_messages_out_total",
    "Messages a customer platform accepted (replies, automatic answers, broadcasts, SMS"
    " forwards), per platform.",
    ("platform",),
)
RATE_LIMITED = Family(
    "bridge_rate_limited_total",
    "Sends a customer platform refused with a rate limit (HTTP 429 or its throughput error),"
    " per platform.",
    ("platform",),
)
DELIVERY_FAILURES = Family(
    "bridge_delivery_failures_total",
    "Messages not delivered, per platform: refused for good when sent (stage=send), or reported"
    " failed by the platform afterwards (stage=report).",
    ("platform", "stage"),
)
OUTBOX_DONE = Family(
    "bridge_outbox_done_total",
    "Outbox rows the dispatcher finished (carried out, or failed for good), per stream.",
    ("stream",),
)
OUTBOX_RATE_LIMITED = Family(
    "bridge_outbox_rate_limited_total",
    "Rate limits (HTTP 429 and the like) the dispatcher obeyed, from customer platforms and"
    " staff surfaces alike.",
)
WEBHOOK_SECONDS = Family(
    "bridge_webhook_duration_seconds",
    "Time to answer a platform's webhook request, per platform, route and status class.",
    ("platform", "route", "status"),
)
OUTBOX_PENDING = Family(
    "bridge_outbox_pending", "Pending outbox rows, per kind and stream.", ("kind", "bulk")
)
OUTBOX_OLDEST = Family(
    "bridge_outbox_oldest_pending_age_seconds",
    "Age of the oldest pending outbox row; 0 when none is pending.",
)
DATABASE_UP = Family(
    "bridge_database_up", "1 when the database answered this scrape's query, else 0."
)
REPORT_AGE = Family(
    "bridge_dispatcher_report_age_seconds",
    "Seconds since the dispatcher process last reported its counters (dispatch = process).",
)
# Counted where they happen, in prometheus_client counters.
COUNTED = (MESSAGES_IN, MESSAGES_OUT, RATE_LIMITED, DELIVERY_FAILURES)
# Read from the dispatcher at scrape time (DispatcherFigures).
OUTBOX = (OUTBOX_DONE, OUTBOX_RATE_LIMITED)
COUNTERS = (*COUNTED, *OUTBOX)
_BY_NAME = {family.name: family for family in COUNTERS}


class DispatcherCounters(Protocol):
    """The outbox dispatcher's public counters."""

    sent: int
    sent_bulk: int
    rate_limited: int


class DispatcherFigures:
    """A collector of the outbox counters: the dispatchers' own, read at scrape time."""

    def __init__(self) -> None:
        self._dispatchers: list[DispatcherCounters] = []
        # What dispatcher processes reported, added up over their lives.
        self._reported: Counts = {family.name: {} for family in OUTBOX}

    def watch(self, dispatcher: DispatcherCounters) -> None:
        """Read this dispatcher's counters whenever the figures are collected."""
        self._dispatchers.append(dispatcher)

    def add_reported(self, name: str, labels: Labels, amount: float) -> None:
        """A dispatcher process's counter grew by `amount`."""
        values = self._reported[name]
        values[labels] = values.get(labels, 0.0) + amount

    def counts(self) -> Counts:
        """The outbox counters now, by family name and labels."""
        out = {name: dict(values) for name, values in self._reported.items()}
        done, limited = out[OUTBOX_DONE.name], out[OUTBOX_RATE_LIMITED.name]
        for d in self._dispatchers:
            for stream, value in (("conversation", d.sent - d.sent_bulk), ("bulk", d.sent_bulk)):
                done[(stream,)] = done.get((stream,), 0.0) + value
            limited[()] = limited.get((), 0.0) + d.rate_limited
        return out

    def describe(self) -> Iterable[Metric]:
        """The families this collector yields (the registry refuses a second of a name)."""
        return [CounterMetricFamily(f.name, f.help, labels=f.labels) for f in OUTBOX]

    def collect(self) -> Iterable[Metric]:
        """The outbox counters as Prometheus counter families."""
        counts = self.counts()
        for family in OUTBOX:
            metric = CounterMetricFamily(family.name, family.help, labels=family.labels)
            for labels, value in counts[family.name].items():
                metric.add_metric(labels, value)
            yield metric


class ScrapeFigures:
    """A collector of one scrape's gauges: what the database answered, the reports' age."""

    # The registry collects synchronously and the database is read asynchronously, so the
    # page reads first and hands the answer to this collector for the one scrape.

    def __init__(self, backlog: Sequence[Backlog] | None, now: float, reported: float | None):
        self._backlog = backlog
        self._now = now
        self._reported = reported

    def collect(self) -> Iterable[Metric]:
        """The outbox backlog (None: the database did not answer) and the report age."""
        up = 0.0 if self._backlog is None else 1.0
        yield GaugeMetricFamily(DATABASE_UP.name, DATABASE_UP.help, value=up)
        if self._backlog is not None:
            if self._backlog:
                pending = GaugeMetricFamily(
                    OUTBOX_PENDING.name, OUTBOX_PENDING.help, labels=OUTBOX_PENDING.labels
                )
                for row in self._backlog:
                    pending.add_metric((row.kind, str(row.bulk).lower()), row.pending)
                yield pending
            oldest = min((row.oldest_created_at for row in self._backlog), default=None)
            age = 0.0 if oldest is None else max(0.0, self._now - oldest)
            yield GaugeMetricFamily(OUTBOX_OLDEST.name, OUTBOX_OLDEST.help, value=age)
        if self._reported is not None:
            age = max(0.0, self._now - self._reported)
            yield GaugeMetricFamily(REPORT_AGE.name, REPORT_AGE.help, value=age)


class _Page:
    """The families of a page: the registry's, then the scrape's, as the page always had them."""

    def __init__(self, *collectors: Collector) -> None:
        self._collectors = collectors

    def collect(self) -> Iterator[Metric]:
        for collector in self._collectors:
            for family in collector.collect():
                # The 0.0.4 text format has no creation times: prometheus_client would show
                # them as extra `…_created` gauges, series this page never had.
                family.samples = [s for s in family.samples if not s.name.endswith("_created")]
                if family.samples:  # a family with nothing to show is left out
                    yield family


class Metrics:
    """The counters and webhook timings of one app, on its own Prometheus registry."""

    def __init__(
        self, registry: CollectorRegistry | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._clock = clock
        self._counters = {
            family.name: Counter(family.name, family.help, family.labels, registry=self.registry)
            for family in COUNTED
        }
        self.dispatchers = DispatcherFigures()
        self.registry.register(self.dispatchers)
        self._webhooks = Histogram(
            WEBHOOK_SECONDS.name,
            WEBHOOK_SECONDS.help,
            WEBHOOK_SECONDS.labels,
            buckets=BUCKETS,
            registry=self.registry,
        )
        # Canonical route path (never a raw request path) → (platform, route label).
        self._routes: dict[str, tuple[str, str]] = {}
        # The running dispatcher process's latest figures, to count what each report adds.
        self._child: Counts = {}
        self._child_seen: float | None = None
        self._report_too_big = False

    # -- counting -------------------------------------------------------------------------

    def declare(self, platforms: Iterable[str]) -> None:
        """Show the configured platforms' counters at 0 before anything happens."""
        for platform in platforms:
            for family in (MESSAGES_IN, MESSAGES_OUT, RATE_LIMITED):
                self._counters[family.name].labels(platform)
            for stage in ("send", "report"):
                self._counters[DELIVERY_FAILURES.name].labels(platform, stage)

    def received(self, platform: str, count: int = 1) -> None:
        """Customer messages were stored."""
        self._counters[MESSAGES_IN.name].labels(platform).inc(count)

    def sent(self, platform: str) -> None:
        """A platform accepted a message."""
        self._counters[MESSAGES_OUT.name].labels(platform).inc()

    def rate_limited(self, platform: str) -> None:
        """A platform refused a send with a rate limit."""
        self._counters[RATE_LIMITED.name].labels(platform).inc()

    def delivery_failed(self, platform: str, stage: Literal["send", "report"]) -> None:
        """A message was refused for good when sent, or reported failed afterwards."""
        self._counters[DELIVERY_FAILURES.name].labels(platform, stage).inc()

    def watch_dispatcher(self, dispatcher: DispatcherCounters) -> None:
        """Read this dispatcher's counters whenever the counters are read."""
        self.dispatchers.watch(dispatcher)

    def counters(self) -> Counts:
        """This process's counters, its dispatcher's included (what a report carries)."""
        out: Counts = {}
        for family in self.registry.collect():
            name = f"{family.name}_total"
            if family.type != "counter" or name not in _BY_NAME:
                continue
            labels = _BY_NAME[name].labels
            out[name] = {
                tuple(sample.labels[label] for label in labels): sample.value
                for sample in family.samples
                if sample.name == name
            }
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
        self._webhooks.labels(platform, route, f"{status // 100}xx").observe(seconds)

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
        # Reports are cumulative: count what each figure grew by since the last one.
        for name, values in report.items():
            last = self._child.setdefault(name, {})
            for labels, value in values.items():
                grown = value - last.get(labels, 0.0)
                last[labels] = value
                if grown > 0:
                    self._add(name, labels, grown)
        self._child_seen = self._clock()

    def child_ended(self) -> None:
        """The dispatcher process ended: its figures stay counted; a new one starts at 0."""
        self._child = {}

    def _add(self, name: str, labels: Labels, amount: float) -> None:
        counter = self._counters.get(name)
        if counter is None:
            self.dispatchers.add_reported(name, labels, amount)
        else:
            counter.labels(*labels).inc(amount)

    # -- rendering ------------------------------------------------------------------------

    def gauges(self, backlog: Sequence[Backlog] | None) -> ScrapeFigures:
        """The gauges of a scrape: the outbox backlog (None: the database did not answer)."""
        return ScrapeFigures(backlog, self._clock(), self._child_seen)

    def render(self, gauges: Collector | None = None) -> str:
        """Everything in Prometheus' text exposition format (version 0.0.4)."""
        page = _Page(self.registry) if gauges is None else _Page(self.registry, gauges)
        return generate_latest(page).decode()


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
