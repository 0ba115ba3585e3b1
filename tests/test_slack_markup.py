"""What an agent writes in Slack reaches the customer as it was written, not in Slack's markup."""

from __future__ import annotations

from tests.harness import eventually

WRITTEN = (
    "Tracking & returns: https://track.example.com/?id=4711&lang=de or write to info@acme.example"
)
# What Slack sends for it (the message event's `text`): `&` escaped, every link in <…>.
AS_SLACK_SENDS = (
    "Tracking &amp; returns: <https://track.example.com/?id=4711&amp;lang=de>"
    " or write to <mailto:info@acme.example|info@acme.example>"
)


async def test_a_reply_with_a_link_and_an_address_reaches_the_customer_clean(world):
    await world.says(111, "Where is my parcel?")
    root = await world.thread_of(111)
    await world.slack.agent_says(root.channel, root.ts, WRITTEN)
    sent = [
        body["event"]["text"] for kind, body, *_ in world.slack.deliveries if kind == "events_api"
    ]
    assert sent[-1] == AS_SLACK_SENDS
    await eventually(lambda: world.tg.messages_to(111), message="a Telegram message")
    assert [m.text for m in world.tg.messages_to(111)] == [WRITTEN]
