"""`/shorten`: short links of the bridge that count their clicks, and the list of them."""

from __future__ import annotations

from bridge.links import SHORT_PATH
from bridge.services import links
from bridge.staffio import Reply
from commands.base import Context, Role, command
from storage.shortlinks import LinkStats

shorten = command("shorten", "Short links that count their clicks", default="")

LIST_LIMIT = 20


@shorten.sub(
    "",
    usage="<url>",
    summary="a short link of the bridge to the URL; every click on it is counted",
    example="/shorten https://example.org/spring-sale",
    role=Role.AGENT,
)
async def _shorten(ctx: Context, args: list[str]) -> Reply:
    ctx.need(args, 1)
    if len(args) > 1:
        raise ctx.usage("give one link (a link has no spaces)")
    url = typed_url(args[0])
    short = await links.shorten(ctx.services, url, ctx.who)
    return Reply(
        title=short,
        lines=(
            f"Leads to {url}",
            "Every click is counted; `/shorten list` shows how often each link was clicked.",
        ),
    )


@shorten.sub(
    "list",
    summary="the newest short links with how often each was clicked",
    example="/shorten list",
    role=Role.AGENT,
)
async def _list(ctx: Context, args: list[str]) -> Reply:
    if args:
        raise ctx.usage(f"`/shorten list` takes nothing after it, and got {' '.join(args)}")
    found, total = await links.latest(ctx.services, LIST_LIMIT)
    if not found:
        return Reply(title="No short links yet", lines=("Make one with `/shorten <url>`.",))
    public_url = ctx.services.settings.bridge.public_url
    prefix = f"{public_url.rstrip('/')}{SHORT_PATH}/" if public_url else f"{SHORT_PATH}/"
    title = f"{total} short link{'' if total == 1 else 's'}"
    if total > len(found):
        title += f", the newest {len(found)}"
    return Reply(title=title, lines=tuple(_line(prefix, stats) for stats in found))


def typed_url(word: str) -> str:
    """The URL as typed; Slack sends links as `<https://…>` or `<https://…|label>`."""
    word = word.strip()
    if word.startswith("<") and word.endswith(">"):
        word = word[1:-1].split("|", 1)[0]
    return word


def _line(prefix: str, stats: LinkStats) -> str:
    link = stats.link
    clicks = f"{stats.clicks} click{'' if stats.clicks == 1 else 's'}"
    if stats.contacts:
        clicks += f" by {stats.contacts} contact{'' if stats.contacts == 1 else 's'}"
    where = f"broadcast {link.broadcast_id}, " if link.broadcast_id is not None else ""
    return (
        f"{prefix}{link.code} → {_short(link.url)}: *{clicks}*"
        f" ({where}{link.created_by}, {link.created_at:%Y-%m-%d})"
    )


def _short(url: str, limit: int = 80) -> str:
    return url if len(url) <= limit else url[: limit - 1] + "…"
