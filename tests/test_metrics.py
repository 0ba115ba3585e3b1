"""GET /metrics: Prometheus text with messages in/out, 429s, failures, outbox backlog, webhook
latency; counted in the dispatcher process too when it runs apart."""

from __future__ import annotations

import json

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bridge.metrics import Metrics
from tests.fakes.slack import FakeSlack
from tests.fakes.telegram import FakeTelegram
from tests.harness import eventually
from tests.process_kit import Bridge
from tests.world import CHANNEL, free_port, start_world, stop_world

TOKEN = "metrics-token-0123456789"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text page (parsed by the reference parser)."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(page: str, name: str, **labels: str) -> float | None:
    """One sample's value, or None when the page does not have it."""
    return samples(page).get((name, tuple(sorted(labels.items()))))


async def scrape(url: str, token: str | None = None) -> tuple[int, str, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as http, http.get(f"{url}/metrics", headers=headers) as r:
        return r.status, r.headers.get("Content-Type", ""), await r.text()


# -- the text format -------------------------------------------------------------------------


def test_page_is_valid_exposition_text_with_escaped_labels_and_cumulative_buckets():
    metrics = Metrics(clock=lambda: 1000.0)
    metrics.declare(["telegram"])
    metrics.received("telegram", 3)
    metrics.sent('we"ird\\plat\nform')
    for seconds in (0.001, 0.02, 0.02, 3.0, 60.0):
        metrics.observe_webhook("telegram", "/webhooks/telegram", 200, seconds)
    metrics.observe_webhook("telegram", "/webhooks/telegram", 403, 0.001)
    page = metrics.render(metrics.gauges([]))
    assert value(page, "bridge_messages_in_total", platform="telegram") == 3
    assert value(page, "bridge_messages_out_total", platform='we"ird\\plat\nform') == 1
    assert value(page, "bridge_delivery_failures_total", platform="telegram", stage="send") == 0
    hist = {"platform": "telegram", "route": "/webhooks/telegram", "status": "2xx"}
    assert value(page, "bridge_webhook_duration_seconds_bucket", **hist, le="0.005") == 1
    assert value(page, "bridge_webhook_duration_seconds_bucket", **hist, le="0.025") == 3
    assert value(page, "bridge_webhook_duration_seconds_bucket", **hist, le="5.0") == 4
    assert value(page, "bridge_webhook_duration_seconds_bucket", **hist, le="+Inf") == 5
    assert value(page, "bridge_webhook_duration_seconds_count", **hist) == 5
    assert value(page, "bridge_webhook_duration_seconds_count", **{**hist, "status": "4xx"}) == 1
    assert value(page, "bridge_outbox_oldest_pending_age_seconds") == 0
    assert value(page, "bridge_database_up") == 1


def test_reports_of_the_dispatcher_process_add_up_and_survive_its_restart():
    metrics = Metrics()
    metrics.received("telegram", 2)
    line = json.dumps(
        {
            "counters": {
                "bridge_messages_out_total": [[["telegram"], 5]],
                "bridge_outbox_done_total": [[["conversation"], 7]],
                "bridge_unknown_total": [[[], 1]],  # ignored
                "bridge_rate_limited_total": [[["a", "b"], 1]],  # wrong labels: ignored
            }
        }
    ).encode()
    metrics.take_report(line)
    metrics.take_report(b"not json\n")  # ignored, the last good report stays
    page = metrics.render()
    assert value(page, "bridge_messages_out_total", platform="telegram") == 5
    assert value(page, "bridge_outbox_done_total", stream="conversation") == 7
    assert "bridge_unknown_total" not in page
    # The process ends; a new one starts counting from zero: the totals carry on.
    metrics.child_ended()
    metrics.take_report(b'{"counters": {"bridge_messages_out_total": [[["telegram"], 1]]}}\n')
    page = metrics.render()
    assert value(page, "bridge_messages_out_total", platform="telegram") == 6
    assert value(page, "bridge_messages_in_total", platform="telegram") == 2


# -- a running bridge ------------------------------------------------------------------------


@pytest.fixture
async def world_with_token(tmp_path):
    w = await start_world(tmp_path, sections={"metrics": {"token": TOKEN}})
    yield w
    await stop_world(w)


async def test_metrics_count_a_conversation_and_time_the_webhooks(world_with_token):
    world = world_with_token
    await world.says(111, "Hello")
    root = await world.thread_of(111)
    await world.slack.agent_says(root.channel, root.ts, "Hi, how can we help?")
    await eventually(lambda: world.tg.messages_to(111), message="the reply on Telegram")
    await eventually(lambda: world.bridge.dispatcher.sent >= 3, message="the outbox rows done")

    status, content_type, page = await scrape(world.bridge.url, TOKEN)
    assert status == 200
    assert content_type.startswith("text/plain; version=0.0.4")
    assert value(page, "bridge_messages_in_total", platform="telegram") == 1
    assert value(page, "bridge_messages_out_total", platform="telegram") == 1
    assert value(page, "bridge_rate_limited_total", platform="telegram") == 0
    assert (value(page, "bridge_outbox_done_total", stream="conversation") or 0) >= 3
    assert value(page, "bridge_outbox_rate_limited_total") == 0
    assert value(page, "bridge_database_up") == 1
    tg = {"platform": "telegram", "route": "/webhooks/telegram", "status": "2xx"}
    assert value(page, "bridge_webhook_duration_seconds_count", **tg) == 1
    slack = {"platform": "slack", "route": "/slack/events", "status": "2xx"}
    assert (value(page, "bridge_webhook_duration_seconds_count", **slack) or 0) >= 1
    # Only webhook routes are timed, labelled by their route, never by a request's path.
    assert "/metrics" not in page and "/healthz" not in page


async def test_metrics_need_the_token_when_one_is_set(world_with_token):
    url = world_with_token.bridge.url
    status, _, _ = await scrape(url)
    assert status == 401
    status, _, body = await scrape(url, "wrong-token-0123456789")
    assert status == 403 and "bridge_" not in body
    status, _, _ = await scrape(url, TOKEN)
    assert status == 200


async def test_a_forged_webhook_is_timed_under_its_status_class(world):
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{world.bridge.url}/webhooks/telegram", json={}) as r:
            assert r.status == 401  # no secret token header
        async with http.get(f"{world.bridge.url}/webhooks/telegram/../../x") as r:
            assert r.status == 404
    _, _, page = await scrape(world.bridge.url)
    tg = {"platform": "telegram", "route": "/webhooks/telegram", "status": "4xx"}
    assert value(page, "bridge_webhook_duration_seconds_count", **tg) == 1
    assert "/x" not in page


async def test_429s_and_failures_are_counted_per_platform(world):
    await world.says(111, "Hello")
    root = await world.thread_of(111)
    world.tg.fail_next("sendMessage", 429, "Too Many Requests: retry after 1", retry_after=1)
    await world.slack.agent_says(root.channel, root.ts, "First answer")
    await eventually(lambda: world.tg.messages_to(111), timeout=15, message="the retried reply")
    world.tg.block(111)
    await world.slack.agent_says(root.channel, root.ts, "Are you still there?")
    await eventually(
        lambda: any("not delivered" in t for t in world.texts(root)), message="the failure"
    )
    _, _, page = await scrape(world.bridge.url)
    assert value(page, "bridge_rate_limited_total", platform="telegram") == 1
    assert (value(page, "bridge_outbox_rate_limited_total") or 0) >= 1
    assert value(page, "bridge_messages_out_total", platform="telegram") == 1
    failed = {"platform": "telegram", "stage": "send"}
    assert value(page, "bridge_delivery_failures_total", **failed) == 1


async def test_the_outbox_backlog_is_read_at_scrape_time(world):
    # Slack refuses posts for a while: the mirror waits in the outbox.
    world.slack.fail_next("chat.postMessage", "internal_error", times=100)
    await world.says(111, "Hello")
    await eventually(lambda: world.slack.count("chat.postMessage") >= 1, message="a refused post")
    _, _, page = await scrape(world.bridge.url)
    pending = {
        labels: v for (name, labels), v in samples(page).items() if name == "bridge_outbox_pending"
    }
    assert sum(pending.values()) >= 1
    assert (("bulk", "false"), ("kind", "staff.open")) in pending
    assert value(page, "bridge_outbox_oldest_pending_age_seconds") is not None


# -- the dispatcher in a process of its own ----------------------------------------------------


def _process_config(tmp_path, tg: FakeTelegram, slack: FakeSlack, port: int):
    path = tmp_path / "bridge.toml"
    path.write_text(
        f"""
[bridge]
database = "sqlite+aiosqlite:///{tmp_path / 'bridge.db'}"
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"
card_refresh_s = 0.2
log_level = "WARNING"
dispatch = "process"

[telegram]
token = "{tg.token}"
api_base = "{tg.base_url}"
mode = "webhook"
webhook_secret = "metrics-secret-0123456789"

[slack]
bot_token = "{slack.bot_token}"
signing_secret = "{slack.signing_secret}"
channel = "{CHANNEL}"
api_base = "{slack.base_url}"
rate_per_channel = 50
burst_per_channel = 50
rate_updates = 50
rate_reactions = 50
"""
    )
    return path


async def test_counters_of_the_dispatcher_process_show_in_the_web_process(tmp_path):
    async with FakeTelegram() as tg, FakeSlack() as slack:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        slack.events_url = f"{url}/slack/events"
        bridge = Bridge(_process_config(tmp_path, tg, slack, port), port, tmp_path / "log")
        await bridge.start()
        try:
            assert await tg.deliver(tg.text_update(111, "Hello")) == 200
            root = await eventually(lambda: slack.roots(CHANNEL), timeout=20, message="thread")
            await slack.agent_says(CHANNEL, root[0].ts, "Hi there")
            await eventually(lambda: tg.messages_to(111), timeout=20, message="the reply")

            async def reported() -> str | None:
                _, _, page = await scrape(url)
                out = value(page, "bridge_messages_out_total", platform="telegram")
                return page if out == 1 else None

            page = await eventually(reported, timeout=10, message="the child's counters")
            assert value(page, "bridge_messages_in_total", platform="telegram") == 1
            assert (value(page, "bridge_outbox_done_total", stream="conversation") or 0) >= 3
            assert (value(page, "bridge_dispatcher_report_age_seconds") or 99) < 5
        finally:
            await bridge.terminate()
