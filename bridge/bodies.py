"""Request bodies from strangers: capped per route, refused on their headers first, and only a
few read at a time before their signature is known.

Every webhook is open to the internet, and most platforms sign the body itself (an HMAC over
the raw bytes), so a body must be read before it can be believed. A webhook route is therefore
wrapped by `guarded`, which, in this order:

1. refuses on what the headers already show (no signature header, a stale timestamp): 401;
2. refuses a declared `Content-Length` over the route's cap: 413, before a byte is read;
3. reads the body counting and cuts it at the cap (chunked bodies declare no length): 413;
4. for bodies that carry their own proof, reads at most `UNSIGNED_READS_MAX` of them at once
   in the process; the next one is answered 503 with Retry-After (every platform retries)
   instead of waiting in a queue that grows without bound, and cuts off (408) a body that
   takes longer than `UNSIGNED_READ_TIMEOUT_S` to arrive, so slow senders cannot hold the
   places.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

log = logging.getLogger(__name__)

MIB = 1024 * 1024
# What any platform's webhook carries is a few kilobytes (a message, a status, a slash
# command); media always comes by URL. 1 MiB is generous, and the default for every route.
WEBHOOK_BODY_MAX = MIB
# Bodies being read before their signature is checked, at once, in one process.
UNSIGNED_READS_MAX = 32
BUSY_RETRY_AFTER_S = 5
# A place at the gate is held at most this long: a sender trickling its body (slowloris) is
# cut off rather than keeping genuine webhooks out. A megabyte takes far less on any link.
UNSIGNED_READ_TIMEOUT_S = 10.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Screen = Callable[[web.Request], web.StreamResponse | None]
"""Looks at a request's headers only: the refusal to answer, or None to go on."""


class ReadGate:
    """Counts bodies read before their signature is checked; past the limit it refuses."""

    def __init__(self, limit: int = UNSIGNED_READS_MAX) -> None:
        self.limit = limit
        self.reading = 0

    def enter(self) -> bool:
        """Take a place when one is free; False when every place is taken."""
        if self.reading >= self.limit:
            return False
        self.reading += 1
        return True

    def leave(self) -> None:
        """Give the place back."""
        self.reading -= 1


UNSIGNED_READS = web.AppKey("unsigned_reads", ReadGate)


def plain(status: int, message: str) -> web.Response:
    """A short text answer, as the webhooks answer their refusals."""
    return web.Response(status=status, text=message)


def too_large(cap: int) -> web.Response:
    """413 for a body over `cap` bytes."""
    return plain(413, f"the body is larger than {cap} bytes")


def requires(*headers: str, status: int = 401) -> Screen:
    """A screen that refuses a request missing any of `headers` (the signature, say)."""

    def screen(request: web.Request) -> web.StreamResponse | None:
        for name in headers:
            if not request.headers.get(name):
                return plain(status, f"missing {name}")
        return None

    return screen


def capped_at(request: web.Request, cap: int) -> web.Request:
    """The request, its read() stopping with HTTPRequestEntityTooLarge past `cap` bytes (a
    chunked body declares no length). aiohttp stops at the request's client_max_size: where
    that is the cap already (the app's default), no copy of the request is made."""
    if request.client_max_size == cap:
        return request
    return request.clone(client_max_size=cap)


def guarded(
    handler: Handler,
    *,
    cap: int = WEBHOOK_BODY_MAX,
    screen: Screen | None = None,
    signed_body: bool = False,
) -> Handler:
    """`handler` behind the body rules above; `signed_body` when only the body proves the sender.

    With `signed_body` the body is read (within the cap, under the app's ReadGate) before the
    handler runs, and the handler's own `request.read()` returns it.
    """

    async def guard(request: web.Request) -> web.StreamResponse:
        if screen is not None and (refused := screen(request)) is not None:
            return refused
        if request.content_length is not None and request.content_length > cap:
            log.warning("%s: refused a body of %s bytes", request.path, request.content_length)
            return too_large(cap)
        capped = capped_at(request, cap)
        try:
            if signed_body and capped.body_exists:
                refused = await _read_gated(capped)
                if refused is not None:
                    return refused
            return await handler(capped)
        except web.HTTPRequestEntityTooLarge:
            log.warning("%s: refused a body over %s bytes", request.path, cap)
            return too_large(cap)

    return guard


async def _read_gated(request: web.Request) -> web.StreamResponse | None:
    gate = request.config_dict.get(UNSIGNED_READS)
    if gate is None:
        await request.read()
        return None
    if not gate.enter():
        log.warning("%s: %s unsigned bodies being read; answered 503", request.path, gate.limit)
        return web.Response(
            status=503,
            text="busy, try again shortly",
            headers={"Retry-After": str(BUSY_RETRY_AFTER_S)},
        )
    try:
        async with asyncio.timeout(UNSIGNED_READ_TIMEOUT_S):
            await request.read()
    except TimeoutError:
        log.warning(
            "%s: a body took over %ss to arrive; answered 408",
            request.path,
            UNSIGNED_READ_TIMEOUT_S,
        )
        # Answer, then hang up: aiohttp would otherwise linger on the connection to drain
        # the rest of the body, and the slow sender would keep its socket for longer still.
        response = plain(408, "the body took too long to arrive")
        response.force_close()
        await response.prepare(request)
        await response.write_eof()
        if request.protocol is not None:
            request.protocol.force_close()
        return response
    finally:
        gate.leave()
    return None
