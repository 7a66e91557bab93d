"""Which network addresses the service may fetch user URLs from.

A URL in a request is untrusted: left alone, it lets a caller make the server
talk to its own loopback, to the private network behind it or to the cloud
metadata endpoint (SSRF). The decision is taken on *resolved addresses*, never
on the spelling of the host, because ``0x7f.1``, ``2130706433``, ``[::ffff:7f00:1]``
and a DNS name with an A record of ``10.0.0.5`` all reach the same places.

The blocked ranges are an explicit table (with a user-readable reason each)
rather than only ``ipaddress``'s ``is_global``, whose answer has changed between
Python releases; ``is_global`` is kept as a final catch-all so that anything the
table misses fails closed. IPv6 forms that carry an IPv4 address (mapped,
translated, compatible, 6to4, NAT64) are judged by the address they carry.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from vlserve.errors import FetchRefusedError

__all__ = [
    "DEFAULT_MAX_FETCH_BYTES",
    "FetchPolicy",
    "IPAddress",
    "Resolver",
    "check_address",
    "check_addresses",
    "check_host",
    "literal_address",
    "system_resolver",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Resolves ``(host, port)`` to every address a connection could go to. Raises
#: ``OSError`` (e.g. ``socket.gaierror``) or returns ``[]`` when the name does not resolve.
Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]

DEFAULT_MAX_FETCH_BYTES = 20 * 1024 * 1024
_SCHEMES_WE_SPEAK = frozenset({"http", "https"})
_HOST_ENTRY = re.compile(r"^(\*\.)?[a-z0-9_-]+(\.[a-z0-9_-]+)*$")


@dataclass(frozen=True)
class FetchPolicy:
    """Limits and address rules for fetching user-supplied URLs.

    ``allow_hosts`` and ``deny_hosts`` take host names (``images.corp``), wildcard
    subdomains (``*.corp`` matches ``a.corp`` but not ``corp``), IP addresses and
    CIDR ranges (``10.20.0.0/16``). An allowed entry lifts the private-address
    refusal for what it matches; ``deny_hosts`` always wins. Cloud metadata
    addresses are only reachable when an IP/CIDR entry covers them, never through
    an allowed host name, so a DNS record cannot open them up.
    """

    allowed_schemes: tuple[str, ...] = ("http", "https")
    allow_hosts: tuple[str, ...] = ()
    deny_hosts: tuple[str, ...] = ()
    max_bytes: int = DEFAULT_MAX_FETCH_BYTES
    connect_timeout: float = 5.0
    total_timeout: float = 20.0
    max_redirects: int = 3
    allowed_ports: tuple[int, ...] | None = None
    # Slow servers: seconds to wait for the next bytes, the average rate a body must keep after its
    # first read_timeout seconds (0: none), and fetches to one host at once across the server.
    read_timeout: float = 10.0
    min_bytes_per_second: int = 16 * 1024
    max_per_host: int = 4
    _allow: _HostRules = field(init=False, repr=False, compare=False)
    _deny: _HostRules = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Settings may hand us lists; normalise to tuples so the object stays hashable.
        for name in ("allowed_schemes", "allow_hosts", "deny_hosts"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.allowed_ports is not None:
            object.__setattr__(self, "allowed_ports", tuple(self.allowed_ports))
        schemes = {s.lower() for s in self.allowed_schemes}
        if not schemes or not schemes <= _SCHEMES_WE_SPEAK:
            raise ValueError(f"allowed_schemes must be a non-empty subset of {sorted(_SCHEMES_WE_SPEAK)}")
        object.__setattr__(self, "allowed_schemes", tuple(sorted(schemes)))
        if self.max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        if self.connect_timeout <= 0 or self.total_timeout <= 0 or self.read_timeout <= 0:
            raise ValueError("timeouts must be positive")
        if self.min_bytes_per_second < 0 or self.max_per_host < 1:
            raise ValueError("min_bytes_per_second must be >= 0 and max_per_host >= 1")
        if self.max_redirects < 0:
            raise ValueError("max_redirects must be >= 0")
        object.__setattr__(self, "_allow", _HostRules.parse(self.allow_hosts))
        object.__setattr__(self, "_deny", _HostRules.parse(self.deny_hosts))


@dataclass(frozen=True)
class _HostRules:
    """Parsed allow/deny entries: exact names, ``*.`` suffixes and networks."""

    names: frozenset[str]
    suffixes: tuple[str, ...]
    networks: tuple[IPNetwork, ...]

    @classmethod
    def parse(cls, entries: Iterable[str]) -> _HostRules:
        names: set[str] = set()
        suffixes: list[str] = []
        networks: list[IPNetwork] = []
        for raw in entries:
            entry = raw.strip().lower().strip("[]")
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
                continue
            except ValueError:
                pass
            entry = entry.rstrip(".")
            if not _HOST_ENTRY.match(entry):
                raise ValueError(f"not a host name, IP address or CIDR range: {raw!r}")
            if entry.startswith("*."):
                suffixes.append(entry[1:])
            else:
                names.add(entry)
        return cls(frozenset(names), tuple(suffixes), tuple(networks))

    def matches_name(self, host: str) -> bool:
        name = _normalise_host(host)
        return name in self.names or any(name.endswith(s) for s in self.suffixes)

    def matches_ip(self, ip: IPAddress) -> bool:
        candidates = [ip]
        if (inner := _embedded_ipv4(ip)) is not None:
            candidates.append(inner)
        return any(c in net for c in candidates for net in self.networks if c.version == net.version)


@dataclass(frozen=True)
class _Block:
    network: IPNetwork
    reason: str
    # False for ranges that an allowed *host name* must not open (see FetchPolicy).
    name_may_allow: bool = True


def _block(cidr: str, reason: str, *, name_may_allow: bool = True) -> _Block:
    return _Block(ipaddress.ip_network(cidr), reason, name_may_allow)


# Most specific first: the first match gives the reason shown to the user.
_BLOCKS: tuple[_Block, ...] = (
    _block("169.254.169.254/32", "cloud metadata", name_may_allow=False),
    _block("100.100.100.200/32", "cloud metadata", name_may_allow=False),  # Alibaba Cloud
    _block("fd00:ec2::254/128", "cloud metadata", name_may_allow=False),  # AWS over IPv6
    _block("0.0.0.0/8", "unspecified", name_may_allow=False),  # 0.0.0.0 reaches the local host
    _block("10.0.0.0/8", "private network"),
    _block("100.64.0.0/10", "carrier-grade NAT"),
    _block("127.0.0.0/8", "loopback"),
    _block("169.254.0.0/16", "link-local"),
    _block("172.16.0.0/12", "private network"),
    _block("192.0.0.0/24", "reserved"),
    _block("192.0.2.0/24", "documentation"),
    _block("192.88.99.0/24", "reserved"),
    _block("192.168.0.0/16", "private network"),
    _block("198.18.0.0/15", "benchmarking"),
    _block("198.51.100.0/24", "documentation"),
    _block("203.0.113.0/24", "documentation"),
    _block("224.0.0.0/4", "multicast"),
    _block("240.0.0.0/4", "reserved"),  # includes the broadcast address
    _block("::/128", "unspecified", name_may_allow=False),
    _block("::1/128", "loopback"),
    _block("100::/64", "reserved"),  # discard-only
    _block("2001::/32", "tunnelling (Teredo)"),  # the carried IPv4 is obfuscated: refuse outright
    _block("2001:db8::/32", "documentation"),
    _block("64:ff9b:1::/48", "private network"),  # local-use NAT64
    _block("fc00::/7", "private network"),  # unique-local
    _block("fe80::/10", "link-local"),
    _block("fec0::/10", "reserved"),  # deprecated site-local
    _block("ff00::/8", "multicast"),
)

_NON_PUBLIC = _block("0.0.0.0/32", "non-public")  # the catch-all's verdict; its network is unused
_V4_MAPPED = ipaddress.ip_network("::ffff:0:0/96")
_V4_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")
_V4_COMPATIBLE = ipaddress.ip_network("::/96")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries and would be routed to, if any."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.sixtofour is not None:
        return ip.sixtofour
    low32 = ipaddress.IPv4Address(int(ip) & 0xFFFF_FFFF)
    if ip in _V4_MAPPED or ip in _V4_TRANSLATED or ip in _NAT64:
        return low32
    # ::a.b.c.d (deprecated "compatible" form); :: and ::1 are judged as themselves.
    if ip in _V4_COMPATIBLE and int(ip) > 1:
        return low32
    return None


def _classify(ip: IPAddress) -> _Block | None:
    """The blocked range ``ip`` falls in, or None for a public address."""
    for block in _BLOCKS:
        if ip.version == block.network.version and ip in block.network:
            return block
    inner = _embedded_ipv4(ip)
    if inner is not None:
        # The wrapper's own flags say nothing useful; only the carried address is routed to.
        return _classify(inner)
    if not ip.is_global:
        return _NON_PUBLIC
    return None


def _normalise_host(host: str) -> str:
    return host.strip().lower().strip("[]").rstrip(".")


def _display(host: str) -> str:
    return host if len(host) <= 100 else host[:97] + "..."


def check_host(host: str, policy: FetchPolicy) -> None:
    """Refuse ``host`` by name before it is even resolved, if ``deny_hosts`` lists it."""
    if policy._deny.matches_name(host):
        raise FetchRefusedError(
            f"The host '{_display(host)}' is blocked by this server's fetch policy.", host=host
        )


def check_address(ip: IPAddress, host: str, policy: FetchPolicy) -> None:
    """Raise FetchRefusedError unless ``host`` may be fetched from at address ``ip``.

    ``host`` is the name from the URL (or the address itself for IP literals); it
    is used for the allow/deny lists and the message, never to decide what ``ip`` is.
    """
    check_host(host, policy)
    if policy._deny.matches_ip(ip):
        raise FetchRefusedError(
            f"The host '{_display(host)}' is blocked by this server's fetch policy.", host=host
        )
    block = _classify(ip)
    if block is None or policy._allow.matches_ip(ip):
        return
    if block.name_may_allow and policy._allow.matches_name(host):
        return
    is_literal = _normalise_host(host) == _normalise_host(str(ip))
    subject = f"'{_display(host)}' is" if is_literal else f"The host '{_display(host)}' resolves to"
    raise FetchRefusedError(
        f"{subject} a {block.reason} address, which this server does not fetch from. "
        "Use a publicly reachable URL or send the data inline.",
        host=host,
        reason=block.reason,
    )


def check_addresses(addresses: Iterable[IPAddress], host: str, policy: FetchPolicy) -> None:
    """Check every resolved address; one forbidden address refuses the host.

    Judging all of them (not just the first) matters: with several A records the
    connection may go to any, and a name that mixes a public and an internal
    address is a classic way to slip past a check of only one.
    """
    for ip in addresses:
        check_address(ip, host, policy)


async def system_resolver(host: str, port: int) -> list[IPAddress]:
    """Resolve with the operating system (``getaddrinfo``), without blocking the event loop."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    seen: dict[IPAddress, None] = {}
    for _family, _type, _proto, _canon, sockaddr in infos:
        seen.setdefault(ipaddress.ip_address(sockaddr[0]), None)
    return list(seen)


def literal_address(host: str) -> IPAddress | None:
    """The address ``host`` spells in standard notation (``10.0.0.1``, ``::1``), else None.

    Odd spellings (``0x7f.1``, ``2130706433``) return None on purpose: they go to
    the resolver, which turns them into the address they really mean.
    """
    try:
        return ipaddress.ip_address(_normalise_host(host))
    except ValueError:
        return None
