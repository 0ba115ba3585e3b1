"""The outbound guard, property by property: an address in a refused range is refused in every
notation a URL parser or a resolver would read as that address (decimal, octal, hex, the
dotted partial forms, IPv6 that carries it, trailing dots, userinfo before it); a public
address passes."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.errors import AddressRefused
from bridge.security import AllowList, OutboundGuard, read_capped, refusal

REFUSED_V4 = [
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "224.0.0.0/4",
    "240.0.0.0/4",
]
REFUSED_V6 = ["::1/128", "::/128", "fe80::/10", "fc00::/7", "ff00::/8", "fec0::/10"]

GUARD = OutboundGuard()


def in_network(cidr: str) -> st.SearchStrategy[int]:
    net = ipaddress.ip_network(cidr)
    return st.integers(int(net.network_address), int(net.broadcast_address))


refused_v4 = st.one_of(*(in_network(c) for c in REFUSED_V4))
refused_v6 = st.one_of(*(in_network(c) for c in REFUSED_V6)).map(ipaddress.IPv6Address)


def _part(value: int, style: str) -> str:
    return {"dec": str(value), "oct": f"0{value:o}", "hex": f"0x{value:x}", "HEX": f"0X{value:X}"}[
        style
    ]


@st.composite
def ipv4_notation(draw: st.DrawFn, number: int) -> str:
    """`number` written as inet_aton reads it: 1 to 4 parts, each decimal, octal or hex."""
    octets = ipaddress.IPv4Address(number).packed
    parts = draw(st.integers(1, 4))
    head = list(octets[: parts - 1])
    last = int.from_bytes(octets[parts - 1 :], "big")
    styles = st.sampled_from(["dec", "oct", "hex", "HEX"])
    written = [_part(v, draw(styles)) for v in [*head, last]]
    return ".".join(written) + draw(st.sampled_from(["", "."]))


@st.composite
def ipv6_carrying(draw: st.DrawFn, number: int) -> str:
    """An IPv6 literal that stands for the IPv4 address `number`."""
    v4 = ipaddress.IPv4Address(number)
    hi, lo = number >> 16, number & 0xFFFF
    form = draw(st.sampled_from(["mapped", "mapped-hex", "nat64", "6to4", "compat"]))
    text = {
        "mapped": f"::ffff:{v4}",
        "mapped-hex": f"::ffff:{hi:x}:{lo:x}",
        "nat64": f"64:ff9b::{v4}",
        "6to4": f"2002:{hi:x}:{lo:x}::1",
        "compat": f"::{v4}",
    }[form]
    if form == "compat" and number <= 1:
        text = f"::ffff:{v4}"
    return f"[{text.upper() if draw(st.booleans()) else text}]"


def url_around(host: str, userinfo: str, port: str, path: str) -> str:
    return f"http://{userinfo}{host}{port}{path}"


userinfo = st.sampled_from(["", "user@", "public.example.com@", "a:b@", "8.8.8.8@"])
ports = st.sampled_from(["", ":80", ":8080", ":443", ":9000"])
paths = st.sampled_from(["/", "/admin", "/latest/meta-data/", "?x=1", "#frag"])


@settings(max_examples=400, deadline=None)
@given(data=st.data(), number=refused_v4, who=userinfo, port=ports, path=paths)
def test_refused_ipv4_is_refused_in_every_notation(data, number, who, port, path):
    host = data.draw(ipv4_notation(number))
    with pytest.raises(AddressRefused):
        GUARD.target(url_around(host, who, port, path))


@settings(max_examples=300, deadline=None)
@given(data=st.data(), number=refused_v4, who=userinfo, port=ports)
def test_ipv6_that_carries_a_refused_ipv4_is_refused(data, number, who, port):
    host = data.draw(ipv6_carrying(number))
    with pytest.raises(AddressRefused):
        GUARD.target(url_around(host, who, port, "/"))


@settings(max_examples=300, deadline=None)
@given(address=refused_v6, who=userinfo, port=ports)
def test_refused_ipv6_ranges_are_refused(address, who, port):
    for written in (address.compressed, address.exploded, address.compressed.upper()):
        with pytest.raises(AddressRefused):
            GUARD.target(url_around(f"[{written}]", who, port, "/"))


public_v4 = (
    st.integers(0, 2**32 - 1)
    .map(ipaddress.IPv4Address)
    .filter(lambda a: a.is_global and not a.is_multicast and not a.is_reserved)
)


@settings(max_examples=300, deadline=None)
@given(address=public_v4, who=userinfo, port=ports, path=paths)
def test_public_ipv4_passes(address, who, port, path):
    target = GUARD.target(url_around(str(address), who, port, path))
    assert target.address == address
    assert refusal(address) is None


@settings(max_examples=200, deadline=None)
@given(address=public_v4)
def test_public_ipv4_inside_ipv6_passes_as_mapped(address):
    assert GUARD.target(f"http://[::ffff:{address}]/").address is not None


def test_known_public_addresses_pass():
    for url in (
        "https://93.184.216.34/hook",
        "http://8.8.8.8:8080/",
        "https://[2606:2800:220:1:248:1893:25c8:1946]/",
        "https://crm.example.com/hook",  # a name: checked where it is resolved
    ):
        GUARD.target(url)


def test_refusals_name_the_rule_of_the_guard():
    said = {
        "http://127.0.0.1/": "127.0.0.1 is a loopback address",
        "http://0/": "0 stands for 0.0.0.0, the unspecified address",
        "http://2130706433/": "2130706433 stands for 127.0.0.1, a loopback address",
        "http://169.254.169.254/": "169.254.169.254 is a link-local address",
        "http://10.1.2.3/": "10.1.2.3 is a private address",
        "http://100.64.0.1/": "100.64.0.1 is a shared address",
        "http://224.0.0.1/": "224.0.0.1 is a multicast address",
        "http://240.0.0.1/": "240.0.0.1 is a reserved address",
        "http://public@127.0.0.1/": "127.0.0.1 is a loopback address",
        "http://127.0.0.1./": "127.0.0.1. stands for 127.0.0.1, a loopback address",
    }
    for url, words in said.items():
        with pytest.raises(AddressRefused) as refused:
            GUARD.target(url)
        assert refused.value.reason == words, url


def test_allow_list_lets_through_only_what_it_names():
    guard = OutboundGuard(
        AllowList.parse(["10.1.2.3", "10.8.0.0/16", "bots.internal:8443", "[::1]:9000"]),
        own=[("127.0.0.1", 8080)],
    )
    for url in (
        "http://10.1.2.3/",
        "http://10.1.2.3:9999/",
        "http://10.8.200.1/",
        "http://[::1]:9000/",
    ):
        guard.target(url)
    for url in ("http://10.1.2.4/", "http://10.9.0.1/", "http://[::1]:9001/"):
        with pytest.raises(AddressRefused):
            guard.target(url)
    ip = ipaddress.ip_address("10.0.0.5")
    assert guard.why_refused("bots.internal", ip, 8443) is None
    assert guard.why_refused("bots.internal", ip, 8444) == (
        "bots.internal resolves to 10.0.0.5, a private address"
    )
    # The bridge itself is never a destination, allow-list or not.
    own = OutboundGuard(AllowList.parse(["127.0.0.0/8"]), own=[("127.0.0.1", 8080)])
    with pytest.raises(AddressRefused, match="the bridge's own address"):
        own.target("http://127.0.0.1:8080/api/v1/rules")
    own.target("http://127.0.0.1:8081/")


@pytest.mark.parametrize("entry", ["", "10.0.0.1:99999", "bots internal", "http://x/"])
def test_allow_list_refuses_entries_it_cannot_read(entry):
    with pytest.raises(ValueError):
        AllowList.parse([entry])


class _Chunks:
    """A response body that arrives in small chunks, as a slow server sends it."""

    def __init__(self, data: bytes, size: int) -> None:
        self.content_length = None
        self.content = self
        self._data, self._size = data, size

    async def iter_chunked(self, n: int):
        for start in range(0, len(self._data), self._size):
            yield self._data[start : start + self._size]


@settings(max_examples=50, deadline=None)
@given(data=st.binary(min_size=0, max_size=5000), size=st.integers(1, 700))
async def test_read_capped_reads_every_chunk(data, size):
    assert await read_capped(_Chunks(data, size), 5000) == data  # type: ignore[arg-type]
