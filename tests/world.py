"""A running bridge wired to fake Telegram and fake Slack, with helpers that act like users."""

from __future__ import annotations

import itertools
import os
import socket
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text

from tests.fakes.messenger import FakeMessenger
from tests.fakes.slack import FakeSlack, SlackMessage
from tests.fakes.telegram import FakeTelegram
from tests.fakes.twilio import FakeTwilio
from tests.fakes.whatsapp import FakeWhatsApp
from tests.harness import RunningBridge, eventually, make_settings, start_bridge

CHANNEL = "C0001"


# The bridge's port is chosen before it listens (its URL goes into its settings). A port the
# kernel hands out could meanwhile go to an outgoing connection or to another test process, so
# ports come from below the kernel's ephemeral range (32768 and up), a band per test process.
PORT_BAND = 2000
_ports = itertools.count()


def free_port() -> int:
    """A loopback port nobody listens on right now, in this test process's band."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    base = 12000 + PORT_BAND * (int(worker) % 10 if worker.isdigit() else 0)
    for _ in range(PORT_BAND):
        port = base + next(_ports) % PORT_BAND
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in this test process's band")


@dataclass
class World:
    """Fakes plus the bridge, and what customers and agents do."""

    tg: FakeTelegram
    slack: FakeSlack
    bridge: RunningBridge
    telegram_mode: str
    slack_mode: str
    wa: FakeWhatsApp | None = None
    fb: FakeMessenger | None = None
    sms: FakeTwilio | None = None

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

    def roots(self, channel: str = CHANNEL) -> list[SlackMessage]:
        """Thread roots (contact cards) in a support channel."""
        return self.slack.roots(channel)

    def root_for(self, chat_id: int | str, channel: str = CHANNEL) -> SlackMessage | None:
        """The newest thread root whose card names this chat (a WhatsApp number with its +)."""
        names = (f"`{chat_id}`", f"`+{chat_id}`")
        found = [m for m in self.roots(channel) if any(n in str(m.blocks) for n in names)]
        return found[-1] if found else None

    async def thread_of(
        self, chat_id: int | str, *, channel: str = CHANNEL, timeout: float = 10.0
    ) -> SlackMessage:
        """Wait for the customer's thread to be opened."""
        return await eventually(
            lambda: self.root_for(chat_id, channel),
            timeout=timeout,
            message=f"a thread for {chat_id} in {channel}",
        )

    def replies(self, root: SlackMessage) -> list[SlackMessage]:
        """Messages in a thread, oldest first."""
        return self.slack.replies(root.channel, root.ts)

    def texts(self, root: SlackMessage) -> list[str]:
        """The text of every message in a thread."""
        return [m.text for m in self.replies(root)]

    async def notices(self, root: SlackMessage, words: str, *, message: str) -> list[str]:
        """Wait for thread messages that contain `words`; their texts, oldest first."""
        found: list[str] = await eventually(
            lambda: [t for t in self.texts(root) if words in t], message=message
        )
        return found

    async def file_post(self, root: SlackMessage) -> SlackMessage:
        """Wait for the one message in a thread that carries files."""
        posts: list[SlackMessage] = await eventually(
            lambda: [m for m in self.replies(root) if m.files], message="the file post"
        )
        [post] = posts
        return post

    async def sql(self, query: str) -> list[tuple[Any, ...]]:
        """Rows from the bridge's database."""
        async with self.bridge.db.read() as conn:
            return [tuple(r) for r in await conn.execute(text(query))]


async def start_world(
    tmp_path,
    *,
    telegram_mode: str = "webhook",
    slack_mode: str = "http",
    whatsapp: FakeWhatsApp | None = None,
    messenger: FakeMessenger | None = None,
    sms: FakeTwilio | None = None,
    routes: list[dict[str, Any]] | None = None,
    matrix: dict[str, Any] | None = None,
    port: int | None = None,
    sections: dict[str, dict[str, Any]] | None = None,
    **bridge: Any,
) -> World:
    """Start the fakes and the bridge; the caller stops them with `stop_world`.

    Telegram and Slack are always there; pass (unstarted) fakes for the other messengers.
    """
    tg = FakeTelegram()
    slack = FakeSlack()
    others = [fake for fake in (whatsapp, messenger, sms) if fake is not None]
    for fake in (tg, slack, *others):
        await fake.start()
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    settings = make_settings(
        tmp_path,
        telegram=tg,
        slack=slack,
        telegram_mode=telegram_mode,
        slack_mode=slack_mode,
        public_url=url,
        whatsapp=whatsapp,
        messenger=messenger,
        twilio=sms,
        routes=routes,
        matrix=matrix,
        sections=sections,
        **bridge,
    )
    slack.events_url = f"{url}/slack/events"
    if whatsapp is not None:
        whatsapp.webhook_url = f"{url}/webhooks/whatsapp"
    if messenger is not None:
        messenger.webhook_url = f"{url}/webhooks/messenger"
    if sms is not None:
        sms.webhook_url = f"{url}/webhooks/sms"
        sms.status_url = f"{url}/webhooks/sms/status"
    running = await start_bridge(settings, port=port)
    if slack_mode == "socket":
        await eventually(lambda: slack.socket_connections > 0, message="socket mode connection")
    return World(tg, slack, running, telegram_mode, slack_mode, whatsapp, messenger, sms)


async def stop_world(world: World) -> None:
    """Stop the bridge, then the fakes."""
    await world.bridge.stop()
    for fake in (world.wa, world.fb, world.sms, world.slack, world.tg):
        if fake is not None:
            await fake.stop()
