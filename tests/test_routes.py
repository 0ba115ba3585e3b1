"""Several accounts per platform, each routed to its own Slack channel."""

from __future__ import annotations

import pytest

from tests.fakes.whatsapp import FakeWhatsApp
from tests.harness import eventually
from tests.world import CHANNEL, start_world, stop_world

SALES, SERVICE = "1001", "1002"


@pytest.fixture
async def world(tmp_path):
    w = await start_world(
        tmp_path,
        whatsapp=FakeWhatsApp(phone_number_ids=(SALES, SERVICE)),
        routes=[
            {"platform": "whatsapp", "account": SERVICE, "slack_channel": "C0SERVICE"},
            {"platform": "telegram", "slack_channel": "C0TELEGRAM"},
        ],
    )
    yield w
    await stop_world(w)


async def test_each_number_opens_threads_in_its_routed_channel(world):
    await world.wa.customer_says("4911111", "to sales", phone_number_id=SALES)
    await world.wa.customer_says("4922222", "to service", phone_number_id=SERVICE)
    sales = await world.thread_of("4911111", channel=CHANNEL)
    service = await world.thread_of("4922222", channel="C0SERVICE")
    assert world.root_for("4922222", CHANNEL) is None
    await eventually(lambda: world.texts(service), message="the mirror in the routed channel")
    assert world.texts(service) == ["to service"]
    assert SALES in str(sales.blocks) and SERVICE in str(service.blocks)


async def test_platform_wide_route_covers_telegram(world):
    await world.says(555, "hello from telegram")
    await world.thread_of(555, channel="C0TELEGRAM")


async def test_reply_goes_out_from_the_number_the_customer_wrote_to(world):
    await world.wa.customer_says("4922222", "which number is this?", phone_number_id=SERVICE)
    root = await world.thread_of("4922222", channel="C0SERVICE")
    await world.slack.agent_says(root.channel, root.ts, "the service line")
    [sent] = await eventually(lambda: world.wa.sent_to("4922222"), message="the reply")
    assert sent["_phone_number_id"] == SERVICE
    assert sent["text"]["body"] == "the service line"


async def test_same_customer_on_two_numbers_has_two_conversations(world):
    await world.wa.customer_says("4933333", "sales question", phone_number_id=SALES)
    await world.wa.customer_says("4933333", "service question", phone_number_id=SERVICE)
    await world.thread_of("4933333", channel=CHANNEL)
    await world.thread_of("4933333", channel="C0SERVICE")
    assert await world.sql("select account from contacts order by account") == [
        (SALES,),
        (SERVICE,),
    ]
