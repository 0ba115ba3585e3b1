"""Finding 14 (file hosts): the bot token goes only to Slack's own file host.

A file shared in a thread is downloaded with the bot token before it goes to the customer.
The file object's `url_private` comes from the event, and for an external file (a Google Drive
document shared in Slack) it names another host: the token must never be sent there. The
bridge refuses the file, the agent is told in the thread, and the "attacker" server standing in
for the foreign host never sees an Authorization header.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

from aiohttp import web

from tests.commands_kit import AGENT
from tests.fakes.slack import SlackMessage
from tests.harness import eventually

CORPUS = Path(__file__).parent.parent / "corpus" / "slack"
CUSTOMER = 4040002


class Attacker:
    """A loopback server that records every request and the Authorization header it carried."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str | None]] = []
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._any)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    async def _any(self, request: web.Request) -> web.Response:
        self.seen.append((request.path, request.headers.get("Authorization")))
        return web.Response(body=b"%PDF-1.4 looks fine", content_type="application/pdf")


def external_file(url: str) -> dict:
    """Slack's documented file object of an external (Google Drive) file, pointed at `url`."""
    sample = json.loads((CORPUS / "file_external_gdrive.json").read_text())
    obj = copy.deepcopy(sample)
    obj["url_private"] = url
    obj.pop("url_private_download", None)
    return obj


async def share(world, root, files: list[dict], text: str = "Here is the contract") -> SlackMessage:
    """An agent shares `files` in the thread: the message event Slack sends for it."""
    slack = world.slack
    message = SlackMessage(
        channel=root.channel,
        ts=slack._next_ts(),
        thread_ts=root.ts,
        text=text,
        user=AGENT,
        files=files,
    )
    slack.messages.append(message)
    await slack.deliver(slack.event_callback(slack._message_event(message)))
    return message


async def test_a_file_on_a_foreign_host_never_gets_the_bot_token(world):
    attacker = Attacker()
    await attacker.start()
    try:
        await world.says(CUSTOMER, "Please send the contract")
        root = await world.thread_of(CUSTOMER)
        url = f"http://127.0.0.1:{attacker.port}/files-pri/T0001-F0EXT/contract.pdf"
        message = await share(world, root, [external_file(url)])
        await eventually(lambda: "x" in message.reactions, message="the failure mark")
        [notice] = await world.notices(root, "not delivered", message="the agent is told")
        assert "Slack's file host" in notice
        assert attacker.seen == []
        assert not any(m.file_bytes for m in world.tg.messages_to(CUSTOMER))
    finally:
        await attacker.stop()


async def test_files_on_slacks_own_host_still_reach_the_customer(world):
    await world.says(CUSTOMER, "Please send the manual")
    root = await world.thread_of(CUSTOMER)
    await world.slack.agent_says(
        root.channel,
        root.ts,
        "",
        user=AGENT,
        files=[("manual.pdf", b"%PDF manual", "application/pdf")],
    )
    [sent] = await eventually(
        lambda: [m for m in world.tg.messages_to(CUSTOMER) if m.file_bytes], message="the file"
    )
    assert sent.file_bytes == b"%PDF manual"


def test_only_slacks_file_hosts_and_the_api_host_are_trusted_with_the_token():
    from connectors.slack_api import slack_file_host_allowed

    api = "https://slack.com/api/"
    allowed = [
        "https://files.slack.com/files-pri/T0001-F1/a.pdf",
        "https://slack.com/files-pri/T0001-F1/a.pdf",
        "https://FILES.slack.com./files-pri/T0001-F1/a.pdf",
    ]
    refused = [
        "http://files.slack.com/files-pri/T0001-F1/a.pdf",  # the token in clear text
        "https://files.slack.com:8443/files-pri/T0001-F1/a.pdf",
        "https://files.slack.com.evil.example/a.pdf",
        "https://evil.example/?files.slack.com",
        "https://files.slack.com@evil.example/a.pdf",
        "https://user@files.slack.com/a.pdf",
        "https://docs.google.com/document/d/1/edit",
        "https://hooks.slack.com/a.pdf",
        "https://127.0.0.1/a.pdf",
        "file:///etc/passwd",
        "",
    ]
    for url in allowed:
        assert slack_file_host_allowed(url, api), url
    for url in refused:
        assert not slack_file_host_allowed(url, api), url
    # Tests and proxies point the API elsewhere: its own origin is trusted, and only it.
    fake = "http://127.0.0.1:5000/api/"
    assert slack_file_host_allowed("http://127.0.0.1:5000/files-pri/T-F/a", fake)
    assert not slack_file_host_allowed("http://127.0.0.1:5001/files-pri/T-F/a", fake)
