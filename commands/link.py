"""`/link`: click-to-chat links of every configured account, and QR codes of them to print."""

from __future__ import annotations

from dataclasses import dataclass

from qrcode.exceptions import DataOverflowError  # type: ignore[import-untyped]

from bridge.config_sections import PLATFORMS
from bridge.protocols import Connector
from bridge.services import channels
from bridge.services.click_to_chat import payload_problem, qr_png
from bridge.services.templates import PLATFORM_NAMES
from bridge.staffio import Reply
from bridge.types import TELEGRAM, FileData, MediaKind
from commands.base import CommandError, Context, Role, command
from commands.runner import command_help

link = command("link", "Click-to-chat links and QR codes for each account", default="")


@dataclass(frozen=True, slots=True)
class Payload:
    """What a link carries, and the channel it joins, if it is a channel's join keyword."""

    text: str
    channel: str | None = None


@link.sub(
    "",
    usage="[platform] [payload…]",
    summary="click-to-chat links of every account (a channel or keyword as payload joins it)",
    example="/link telegram JOIN_NEWS",
    role=Role.AGENT,
)
async def _links(ctx: Context, args: list[str]) -> Reply:
    if args == ["help"]:
        return command_help(link)
    platform = args[0].lower() if args and args[0].lower() in PLATFORMS else None
    payload = await _payload(ctx, args[1:] if platform else args)
    connectors = [c for c in ctx.services.connectors if platform in (None, c.platform)]
    if not connectors:
        raise CommandError(_none_configured(platform))
    lines: list[str] = []
    for connector in connectors:
        label = (
            f"*{PLATFORM_NAMES.get(connector.platform, connector.platform)}* `{connector.account}`"
        )
        try:
            found = _link_of(ctx, connector, payload)
        except CommandError as exc:
            if len(connectors) == 1:
                raise
            why = str(exc)
            lines.append(f"{label}: no link; {why[:1].lower()}{why[1:]}")
            continue
        lines.append(f"{label}: {found}")
    title = "Click-to-chat links"
    if payload is not None:
        title += f" with {payload.text}"
        if payload.channel:
            title += f" (joins channel {payload.channel})"
    lines.append("`/link qr <platform> [account] [payload…]` makes a QR code of one to print.")
    return Reply(title=title, lines=tuple(lines))


@link.sub(
    "qr",
    usage="<platform> [account] [payload…]",
    summary="a QR code (PNG) of an account's click-to-chat link, posted for everyone to print",
    example="/link qr whatsapp Hello, I would like to order",
    role=Role.AGENT,
)
async def _qr(ctx: Context, args: list[str]) -> Reply:
    ctx.need(args, 1)
    platform = args[0].lower()
    if platform not in PLATFORMS:
        raise ctx.usage(f"not a platform: {args[0]}; choose one of {', '.join(PLATFORMS)}")
    accounts = [c for c in ctx.services.connectors if c.platform == platform]
    if not accounts:
        raise CommandError(_none_configured(platform))
    rest = args[1:]
    connector = accounts[0]
    if rest:
        named = [c for c in accounts if c.account == rest[0]]
        if named:
            connector, rest = named[0], rest[1:]
    payload = await _payload(ctx, rest)
    url = _link_of(ctx, connector, payload)
    try:
        png = qr_png(url)
    except DataOverflowError:
        raise ctx.usage("the link is too long for a QR code; use a shorter payload") from None
    shown = PLATFORM_NAMES.get(platform, platform)
    line = f"Scan to chat with {shown} `{connector.account}`"
    if payload is not None:
        line += f", payload {payload.text}"
        if payload.channel:
            line += f" (joins channel {payload.channel})"
    return Reply(
        title=url,
        lines=(line + ".",),
        file=FileData(
            kind=MediaKind.IMAGE, filename=f"qr-{platform}.png", mime_type="image/png", data=png
        ),
        public=True,
    )


async def _payload(ctx: Context, words: list[str]) -> Payload | None:
    """The payload typed: a channel's name stands for its join keyword."""
    if not words:
        return None
    text = " ".join(words).strip()
    channel = await channels.channel_by_name(ctx.services, text)
    if channel is not None:
        if not channel.join_keyword:
            raise CommandError(
                f"Channel {channel.name} has no join keyword yet; give it one with /channel"
            )
        return Payload(channel.join_keyword, channel.name)
    joined = await channels.channel_joined_by(ctx.services, text)
    return Payload(text, joined.name if joined else None)


def _link_of(ctx: Context, connector: Connector, payload: Payload | None) -> str:
    """The account's link carrying the payload; a UsageError says why there is none."""
    text = payload.text if payload else None
    if text is not None:
        _check(ctx, connector.platform, text)
    try:
        found = connector.chat_link(text)
    except ValueError as exc:
        raise ctx.usage(str(exc)) from None
    if found is None:
        if connector.platform == TELEGRAM:
            raise CommandError(
                "The Telegram bot's username is not known yet (it is learned at start)"
            )
        raise CommandError(
            f"{PLATFORM_NAMES.get(connector.platform, connector.platform)} account"
            f" {connector.account} has no public address configured (its number or page name)"
        )
    return found


def _check(ctx: Context, platform: str, text: str) -> None:
    """Refuse payloads the platform would not carry."""
    problem = payload_problem(platform, text)
    if problem is not None:
        raise ctx.usage(problem)


def _none_configured(platform: str | None) -> str:
    if platform is None:
        return "No messenger account is configured"
    return f"No {PLATFORM_NAMES.get(platform, platform)} account is configured"
