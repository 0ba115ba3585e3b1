"""The outbound guard: every request the bridge makes on someone's behalf goes through it.

Rules fire web forwards and ask bots (`post:`, `bot:`), keep files (`answer-file:`), fetch the
media URLs a bot answers with, and outgoing webhooks POST events: each URL was chosen by a
manager, an API key or a bot, not by the admin. Without a guard they reach what the bridge's
host reaches (loopback services, the cloud's metadata at 169.254.169.254, the office network).

The guard refuses a destination whose address is loopback, link-local, private, shared
(100.64.0.0/10), unspecified, multicast, reserved or otherwise not public, whether written
as a name, in any IPv4 notation (`0`, `2130706433`, `0x7f.1`, `0177.0.0.1`) or as IPv6 that
carries such an IPv4 address (`::ffff:127.0.0.1`, NAT64 `64:ff9b::a9fe:a9fe`, 6to4
`2002:7f00:1::`), and the bridge's own listening address. Names are checked where the
connection is made (a resolver of our own filters what DNS answers), so a name that answered
a public address when the rule was saved and a private one later (DNS rebinding) is refused
too. Redirects are followed only for downloads, each hop checked again. `[security]
allow_private` lets an admin name internal bots that may be reached.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import socket
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from bridge.errors import AddressRefused, TooLarge

log = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# A bot answers like a person would: 64 KB is far more than any answer it may send.
BOT_ANSWER_CAP = 64 * 1024
# Files are capped at what the messengers accept (WhatsApp documents: 100 MB; images and
# Telegram bot uploads far less): 16 MB keeps every messenger able to send them.
FILE_CAP = 16 * 1024 * 1024
# Downloads follow at most this many redirects, each one checked like the first URL.
MAX_REDIRECTS = 5
# At save time a name is looked up to refuse it early; DNS slower than this is not waited for.
SAVE_RESOLVE_TIMEOUT_S = 5.0

_SHARED = ipaddress.IPv4Network("100.64.0.0/10")
# IANA's special-purpose registries (RFC 6890 and later), whatever this Python's ipaddress
# knows of them: protocol assignments, documentation, benchmarking, discard.
_SPECIAL: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "240.0.0.0/4",
        "100::/64",
        "2001::/23",
        "2001:db8::/32",
    )
)
_NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))
_SIX_TO_FOUR = ipaddress.IPv6Network("2002::/16")
_TEREDO = ipaddress.IPv6Network("2001::/32")
_NUMERIC_HOST = re.compile(
    r"^(?:0x[0-9a-f]*|[0-9]+)(?:\.(?:0x[0-9a-f]*|[0-9]+))*\.?$", re.IGNORECASE
)
_NUMERIC_PART = re.compile(r"^(?:0[xX][0-9a-fA-F]*|[0-9]+)$")
_REDIRECTS = (301, 302, 303, 307, 308)


# -- addresses ----------------------------------------------------------------------------


def _kind(address: IPAddress) -> str | None:
    """Which refused range an address is in ("a loopback address"), or None if public."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            inner = _kind(embedded)
            return f"{inner} ({embedded} inside it)" if inner else None
        if address in _TEREDO:
            return "a Teredo tunnel address"
    checks: tuple[tuple[bool, str], ...] = (
        (address.is_unspecified, "the unspecified address"),
        (address.is_loopback, "a loopback address"),
        (address.is_link_local, "a link-local address"),
        (address.is_multicast, "a multicast address"),
        (isinstance(address, ipaddress.IPv4Address) and address in _SHARED, "a shared address"),
        (address.is_reserved, "a reserved address"),
        (
            isinstance(address, ipaddress.IPv6Address) and address.is_site_local,
            "a site-local address",
        ),
        (address.is_private, "a private address"),
        (
            any(address.version == n.version and address in n for n in _SPECIAL),
            "a special-purpose address",
        ),
        (not address.is_global, "not a public address"),
    )
    return next((words for hit, words in checks if hit), None)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (mapped, compatible, NAT64, 6to4)."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if any(address in net for net in _NAT64):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if int(address) >> 32 == 0 and int(address) > 1:  # IPv4-compatible ::a.b.c.d (deprecated)
        return ipaddress.IPv4Address(int(address))
    return None


def refusal(address: IPAddress) -> str | None:
    """Why the guard refuses this address ("127.0.0.1 is a loopback address"), or None."""
    kind = _kind(address)
    return f"{address} is {kind}" if kind else None


def _loose_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """An IPv4 address as inet_aton reads it: 1 to 4 parts, each decimal, 0-octal or 0x-hex."""
    parts = host.split(".")
    if not 1 <= len(parts) <= 4 or not all(_NUMERIC_PART.match(p) for p in parts):
        return None
    try:
        values = [
            int(p, 16)
            if p[:2].lower() == "0x"
            else int(p, 8)
            if len(p) > 1 and p[0] == "0"
            else int(p)
            for p in (q if q.lower() != "0x" else "0x0" for q in parts)
        ]
    except ValueError:
        return None
    *head, last = values
    if any(v > 255 for v in head) or last >= 1 << (8 * (5 - len(values))):
        return None
    number = 0
    for v in head:
        number = number << 8 | v
    number = number << (8 * (5 - len(values))) | last
    return ipaddress.IPv4Address(number)


def host_address(host: str) -> IPAddress | None:
    """The address a URL's host stands for when it is written as one (in any notation)."""
    bare = host.strip("[]").rstrip(".").lower()
    bare = bare.split("%", 1)[0]  # an IPv6 zone index names the interface, not the address
    try:
        return ipaddress.ip_address(bare)
    except ValueError:
        return _loose_ipv4(bare)


# -- the allow-list -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AllowList:
    """Internal destinations an admin allows: addresses, networks, hosts, host:port pairs."""

    networks: tuple[IPNetwork, ...] = ()
    hosts: frozenset[str] = frozenset()
    pairs: frozenset[tuple[str, int]] = frozenset()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> AllowList:
        """From `["10.1.2.3", "10.8.0.0/16", "bots.internal", "bots.internal:8443"]`."""
        networks: list[IPNetwork] = []
        hosts: set[str] = set()
        pairs: set[tuple[str, int]] = set()
        for raw in entries:
            entry = raw.strip().lower()
            if not entry:
                raise ValueError("an empty entry")
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
                continue
            except ValueError:
                pass
            found = re.fullmatch(r"(\[[0-9a-f:.]+\]|[a-z0-9._-]+):(\d{1,5})", entry)
            if found:
                port = int(found[2])
                if not 0 < port < 65536:
                    raise ValueError(f"{raw}: {port} is not a port")
                pairs.add((_canonical(found[1]), port))
            elif re.fullmatch(r"[a-z0-9._-]+", entry) and not _NUMERIC_HOST.match(entry):
                hosts.add(entry.rstrip("."))
            else:
                raise ValueError(f"{raw} is not an address, a network, a host or host:port")
        return cls(tuple(networks), frozenset(hosts), frozenset(pairs))

    def allows(self, host: str, address: IPAddress | None, port: int) -> bool:
        """Whether the admin allowed this host (or address) on this port."""
        name = _canonical(host)
        if name in self.hosts or (name, port) in self.pairs:
            return True
        if address is None:
            return False
        if (str(address), port) in self.pairs:
            return True
        return any(address.version == n.version and address in n for n in self.networks)


def _canonical(host: str) -> str:
    address = host_address(host)
    return str(address) if address is not None else host.strip("[]").rstrip(".").lower()


# -- the guard ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """A checked URL: what aiohttp will connect to."""

    url: URL
    host: str
    port: int
    address: IPAddress | None  # None: a name, checked where it is resolved


class OutboundGuard:
    """Checks destinations and makes the requests; one per bridge process."""

    def __init__(
        self,
        allow: AllowList | None = None,
        own: Sequence[tuple[str, int]] = (),
        resolver: AbstractResolver | None = None,
    ) -> None:
        self.allow = allow or AllowList()
        self._own = {(_canonical(h), p) for h, p in own}
        self._resolver = resolver
        self._session: aiohttp.ClientSession | None = None

    @property
    def resolver(self) -> AbstractResolver:
        """What looks names up (the system's resolver unless one was given)."""
        if self._resolver is None:
            self._resolver = aiohttp.ThreadedResolver()  # needs the running loop: made late
        return self._resolver

    @resolver.setter
    def resolver(self, resolver: AbstractResolver) -> None:
        self._resolver = resolver

    def why_refused(self, host: str, address: IPAddress, port: int) -> str | None:
        """Why a connection to `address` (for `host`) on `port` is refused, or None."""
        if self._is_own(host, address, port):
            return f"{host}:{port} is the bridge's own address"
        if self.allow.allows(host, address, port):
            return None
        reason = refusal(address)
        if reason is None:
            return None
        written = host.strip("[]").lower()
        if written == str(address):
            return reason
        verb = "stands for" if host_address(host) == address else "resolves to"
        return f"{host} {verb} {reason.replace(' is ', ', ', 1)}"

    def _is_own(self, host: str, address: IPAddress, port: int) -> bool:
        for own_host, own_port in self._own:
            if port != own_port:
                continue
            own_address = host_address(own_host)
            if own_host == _canonical(host) or own_address == address:
                return True
            if own_address is not None and own_address.is_unspecified and address.is_loopback:
                return True  # listening on every interface: loopback reaches the bridge too
        return False

    def target(self, url: str) -> Target:
        """The URL's destination, refused at once if it is written as a refused address."""
        try:
            parsed = URL(url)
            host = parsed.raw_host
            port = parsed.port
        except (ValueError, TypeError):
            raise AddressRefused("bad_url", "the URL cannot be read") from None
        if parsed.scheme not in ("http", "https"):
            raise AddressRefused("bad_url", "only http:// and https:// URLs are fetched")
        if not host or port is None:
            raise AddressRefused("bad_url", "the URL names no host")
        address = host_address(host)
        if address is None and _NUMERIC_HOST.match(host):
            # Numbers that are no address: a resolver might still read them as one.
            raise AddressRefused("refused_address", f"{host} is not a valid address")
        if address is not None:
            reason = self.why_refused(host, address, port)
            if reason:
                raise AddressRefused("refused_address", reason)
        return Target(parsed, host, port, address)

    async def check(self, url: str) -> None:
        """Refuse a URL now (at save time): its address, or every address its name has."""
        target = self.target(url)
        if target.address is not None:
            return
        try:
            found = await asyncio.wait_for(
                self.resolver.resolve(target.host, target.port, socket.AF_UNSPEC),
                SAVE_RESOLVE_TIMEOUT_S,
            )
        except (OSError, TimeoutError):
            return  # unknown now: checked again when it is fetched
        for result in found:
            reason = self.why_refused(target.host, _address(result), target.port)
            if reason:
                raise AddressRefused("refused_address", reason)

    def session(self) -> aiohttp.ClientSession:
        """The session whose connections only reach addresses the guard allows."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    resolver=_GuardedResolver(self), limit=256, limit_per_host=32
                ),
                timeout=aiohttp.ClientTimeout(total=60, sock_connect=10),
                trust_env=False,  # a proxy from the environment would connect for us, unchecked
            )
        return self._session

    async def close(self) -> None:
        """Close the session (the resolver stays: it may be shared)."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    @asynccontextmanager
    async def request(
        self, method: str, url: str, *, redirects: int = 0, **options: Any
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """Make a request through the guard; follow up to `redirects` redirects, each checked.

        AddressRefused when the guard refuses the URL or a hop; a redirect past the limit is
        handed back as it came (the caller decides what a 3xx means).
        """
        current = url
        for hop in range(redirects + 1):
            self.target(current)
            response = await self.session().request(
                method, current, allow_redirects=False, **options
            )
            location = response.headers.get("Location")
            if response.status in _REDIRECTS and location and hop < redirects:
                response.release()
                current = urljoin(current, location)
                if response.status == 303 or (response.status in (301, 302) and method == "POST"):
                    method, options = "GET", {k: v for k, v in options.items() if k != "json"}
                continue
            try:
                yield response
            finally:
                response.release()
            return


class _GuardedResolver(AbstractResolver):
    """Resolves with the guard's resolver and keeps only the addresses the guard allows."""

    def __init__(self, guard: OutboundGuard) -> None:
        self._guard = guard

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._guard.resolver.resolve(host, port, family)
        kept: list[ResolveResult] = []
        reasons: list[str] = []
        for result in found:
            reason = self._guard.why_refused(host, _address(result), port)
            if reason:
                reasons.append(reason)
            else:
                kept.append(result)
        if not kept:
            if reasons:
                log.warning("outbound request refused: %s", reasons[0])
                raise AddressRefused("refused_address", reasons[0])
            raise OSError(f"{host} has no address")
        return kept

    async def close(self) -> None:
        return None


def _address(result: ResolveResult) -> IPAddress:
    return ipaddress.ip_address(str(result["host"]).split("%", 1)[0])


async def read_capped(response: aiohttp.ClientResponse, cap: int) -> bytes:
    """The whole body, read chunk after chunk; TooLarge as soon as it passes `cap` bytes."""
    declared = response.content_length
    if declared is not None and declared > cap:
        raise TooLarge("too_large", f"the answer is larger than {_size(cap)}")
    chunks: list[bytes] = []
    total = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        total += len(chunk)
        if total > cap:
            raise TooLarge("too_large", f"the answer is larger than {_size(cap)}")
        chunks.append(chunk)
    return b"".join(chunks)


def file_name(url: str) -> str:
    """The name a downloaded file is given: the last part of the URL's path."""
    return url.rstrip("/").rsplit("/", 1)[-1].split("?")[0] or "file"


def _size(n: int) -> str:
    return f"{n // (1024 * 1024)} MB" if n >= 1024 * 1024 else f"{n // 1024} KB"


def guard_from(allow_private: Iterable[str], listen: str, public_url: str | None) -> OutboundGuard:
    """The guard of a bridge: the admin's allow-list; its own listening and public address."""
    own: list[tuple[str, int]] = []
    host, _, port = listen.rpartition(":")
    if port.isdigit():
        own.append((host or "0.0.0.0", int(port)))  # noqa: S104  (a host left out means all)
    if public_url:
        try:
            public = URL(public_url)
            if public.raw_host and public.port:
                own.append((public.raw_host, public.port))
        except ValueError:
            pass
    return OutboundGuard(AllowList.parse(allow_private), own)
