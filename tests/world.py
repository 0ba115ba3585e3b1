"""A running bridge wired to fake Telegram and fake Slack, with helpers that act like users."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text

from tests.fakes.slack import FakeSlack, SlackMessage
from tests.fakes.telegram import FakeTelegram
from tests.harness import RunningBridge, eventually, make_settings, start_bridge

CHANNEL = "C0001"


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class World:
    """Fakes plus the bridge, and what customers and agents do."""

    tg: FakeTelegram
    slack: FakeSlack
    bridge: RunningBridge
    telegram_mode: str
    slack_mode: str

    async def customer(self, update: dict[str, Any]) -> None:
        """Telegram delivers a customer's update (webhook POST, or queued for getUpdates)."""
        if self.telegram_mode == "webhook":
            status = await self.tg.deliver(update)
            assert status == 200, f"webhook answered {status}"
        else:
            self.tg.push(update)

    async def says(self, chat_id: int, text: str, **kw: Any) -> dict[str, Any]:
        """A Telegram customer writes; returns the update."""
        update = self.tg.text_update(chat_id, text, **kw)
        await self.customer(update)
        return update

    def roots(self) -> list[SlackMessage]:
        """Thread roots (contact cards) in the support channel."""
        return self.slack.roots(CHANNEL)

    def root_for(self, chat_id: int) -> SlackMessage | None:
        """The newest thread root whose card names this Telegram chat."""
        found = [m for m in self.roots() if f"`{chat_id}`" in str(m.blocks)]
        return found[-1] if found else None

    async def thread_of(self, chat_id: int, *, timeout: float = 10.0) -> SlackMessage:
        """Wait for the customer's thread to be opened."""
        return await eventually(
            lambda: self.root_for(chat_id), timeout=timeout, message=f"a thread for {chat_id}"
        )

    def replies(self, root: SlackMessage) -> list[SlackMessage]:
        """Messages in a thread, oldest first."""
        return self.slack.replies(CHANNEL, root.ts)

    def texts(self, root: SlackMessage) -> list[str]:
        """The text of every message in a thread."""
        return [m.text for m in self.replies(root)]

    async def sql(self, query: str) -> list[tuple[Any, ...]]:
        """Rows from the bridge's database."""
        async with self.bridge.db.read() as conn:
            return [tuple(r) for r in await conn.execute(text(query))]


async def start_world(
    tmp_path, *, telegram_mode: str = "webhook", slack_mode: str = "http", **bridge: Any
) -> World:
    """Start both fakes and the bridge; the caller stops them with `stop_world`."""
    tg = FakeTelegram()
    slack = FakeSlack()
    await tg.start()
    await slack.start()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = make_settings(
        tmp_path,
        telegram=tg,
        slack=slack,
        telegram_mode=telegram_mode,
        slack_mode=slack_mode,
        public_url=url,
        **bridge,
    )
    slack.events_url = f"{url}/slack/events"
    running = await start_bridge(settings, port=port)
    if slack_mode == "socket":
        await eventually(lambda: slack.socket_connections > 0, message="socket mode connection")
    return World(tg, slack, running, telegram_mode, slack_mode)


async def stop_world(world: World) -> None:
    """Stop the bridge, then the fakes."""
    await world.bridge.stop()
    await world.slack.stop()
    await world.tg.stop()
