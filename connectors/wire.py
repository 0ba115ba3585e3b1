"""Wire helpers the customer-side connectors share: payload fields, text limits, HTTP answers.

Everything here is the same for every platform; what differs (limits, error codes, wording)
stays in the platform's module and is passed in.
"""

from __future__ import annotations

import json
import logging
import math
import secrets
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar, Protocol

import aiohttp
from aiohttp import web

from bridge.errors import PermanentError, Unreachable
from bridge.protocols import InboundSink
from bridge.types import AccountId, ChatId, ExternalMessageId, InboundEvent

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------- payload fields


def int_or_none(value: Any) -> int | None:
    """The value when it is an integer (a bool is not), else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def opt_str(obj: Mapping[str, Any], key: str) -> str | None:
    """`obj[key]` when it is a string, else None."""
    value = obj.get(key)
    return value if isinstance(value, str) else None


# One emoji, however composed (a family or a tagged flag), stays under 32 code points; a
# message carries a handful of reactions at most (Telegram: up to 3 for a user).
_EMOJI_MAX = 32
_REACTIONS_MAX = 16


def reaction_emoji(values: Iterable[str | None]) -> tuple[str, ...]:
    """A reaction's emoji as the bridge keeps them: empty ones dropped, each once, none
    longer than an emoji can be, a few at most (what the platform relays is not checked)."""
    kept = (v for v in values if v and len(v) <= _EMOJI_MAX)
    return tuple(dict.fromkeys(kept))[:_REACTIONS_MAX]


def json_object(raw: bytes) -> Mapping[str, Any] | None:
    """The JSON object `raw` holds; None when it is not JSON, not an object or nested too deep."""
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def storable(value: Any) -> bool:
    """Whether every text in a decoded JSON value is one UTF-8, and so a database, can hold.

    JSON's `\\ud800` escapes decode to lone surrogates, which no UTF-8 text carries: a body
    with one is malformed, however it was signed.
    """
    try:
        json.dumps(value, ensure_ascii=False).encode()
    except (ValueError, RecursionError):  # UnicodeEncodeError is a ValueError
        return False
    return True


def aware(moment: datetime) -> datetime:
    """The moment itself, taken as UTC when it carries no time zone."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def map_point(latitude: float, longitude: float) -> str | None:
    """A point as staff read it, "lat, lon" and a map link any browser opens; None off Earth."""
    try:
        if not (abs(float(latitude)) <= 90 and abs(float(longitude)) <= 180):  # NaN fails too
            return None
    except OverflowError:  # an integer too large for a float
        return None
    lat, lon = _degrees(latitude), _degrees(longitude)
    return f"{lat}, {lon} https://www.google.com/maps?q={lat},{lon}"


def _degrees(value: float) -> str:
    # Seven decimals are about a centimetre; `{:g}` would round to some ten metres.
    text = f"{value:.7f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def retry_after(headers: Mapping[str, str] | None) -> float | None:
    """The seconds a Retry-After header asks to wait; None when absent or not a usable number."""
    # Plain dicts of headers keep the server's spelling, so the name is compared case-blind.
    value = next((v for k, v in (headers or {}).items() if k.lower() == "retry-after"), None)
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # an HTTP date; each platform's default wait is close enough
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


# ---------------------------------------------------------------------- text limits


def utf16_len(text: str) -> int:
    """The length of `text` in UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


def prefix_within(text: str, limit: int) -> int:
    """How many characters of `text` fit into `limit` UTF-16 code units."""
    units = 0
    for index, char in enumerate(text):
        units += 2 if ord(char) > 0xFFFF else 1
        if units > limit:
            return index
    return len(text)


def split_text(text: str, limit: int) -> list[str]:
    """Cut text into messages of at most `limit`, at line breaks, else spaces, else anywhere."""
    # Measured in UTF-16 code units, which are never fewer than characters: the parts fit
    # however a platform counts (Telegram and Twilio characters, others code units).
    chunks: list[str] = []
    rest = text
    while utf16_len(rest) > limit:
        fit = prefix_within(rest, limit)
        window = rest[:fit]
        cut = window.rfind("\n")
        if cut < fit // 2:
            cut = max(window.rfind(" "), window.rfind("\t"))
        if cut < fit // 2:
            chunk, rest = window, rest[fit:]
        else:
            chunk, rest = window[:cut], rest[cut + 1 :]
        if chunk.strip():
            chunks.append(chunk)
    # Every platform refuses a message that is empty or only white space.
    if rest.strip():
        chunks.append(rest)
    return chunks


# ---------------------------------------------------------------------- errors and answers


def unreachable(
    platform: str, what: str, exc: BaseException, *, detail: bool = False
) -> Unreachable:
    """The error for a call that got no answer; its text never holds a URL or a token."""
    # Raised `from None` by the callers: aiohttp errors may print the request URL, and URLs
    # hold Telegram's bot token or are capabilities (signed media URLs). The type name says
    # enough; `detail` adds a connection error's own words unless they hold a URL.
    text = str(exc) if detail and isinstance(exc, aiohttp.ClientConnectionError) else ""
    if "/bot" in text or "://" in text:
        text = ""
    return Unreachable(f"{platform} {what}: {type(exc).__name__} {text}".rstrip())


async def hand_over(
    sink: InboundSink, events: Sequence[InboundEvent], platform: str
) -> web.Response | None:
    """Give a webhook's events to the sink; None when stored, else the 500 to answer."""
    try:
        await sink(events)
    except Exception:
        # A non-2xx answer makes the platform deliver the webhook again later; the pipeline
        # de-duplicates on the external ids. The reference ties the answer to the log.
        ref = secrets.token_hex(3)
        what = (
            getattr(events[0], "external_id", type(events[0]).__name__)
            if len(events) == 1
            else f"{len(events)} events"
        )
        log.exception("%s webhook: storing %s failed (ref %s)", platform, what, ref)
        return web.Response(status=500, text=f"not stored (ref {ref})")
    return None


class FinalSends:
    """`edit` and `delete` for platforms that give a business no way to change a sent message."""

    # The platform as staff read its name in the refusal, e.g. "WhatsApp".
    display_name: ClassVar[str]

    async def edit(self, chat_id: ChatId, external_id: ExternalMessageId, text: str) -> None:
        """Refuse: the platform cannot edit a sent message."""
        reason = f"{self.display_name} does not let a business edit a sent message"
        raise PermanentError("unsupported", reason)

    async def delete(self, chat_id: ChatId, external_id: ExternalMessageId) -> None:
        """Refuse: the platform cannot delete a sent message."""
        reason = f"{self.display_name} does not let a business delete a sent message"
        raise PermanentError("unsupported", reason)


class Routes(Protocol):
    """A webhook endpoint that several connectors share."""

    def routes(self) -> Sequence[web.RouteDef]:
        """The endpoint's routes."""
        ...


class SharedWebhook:
    """`routes`, `start` and `stop` for connectors whose accounts share one webhook endpoint.

    The first connector carries the endpoint and serves its routes, the others none; nothing
    runs in the background, the webhook is set up in the platform's dashboard or console.
    """

    # Logged by `start`, with the account, e.g. "whatsapp number %s ready".
    ready_message: ClassVar[str]
    account: AccountId
    _webhook: Routes | None

    def routes(self) -> Sequence[web.RouteDef]:
        """The shared webhook's routes on the connector that carries it, else none."""
        return self._webhook.routes() if self._webhook is not None else []

    async def start(self) -> None:
        """Nothing to start: the webhook is set up on the platform's side."""
        logging.getLogger(type(self).__module__).info(self.ready_message, self.account)

    async def start_loop(self) -> None:
        """Nothing polls: webhooks can reach any process."""

    async def stop_loop(self) -> None:
        """Nothing polls."""

    async def stop(self) -> None:
        """Nothing runs in the background."""
