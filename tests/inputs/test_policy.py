"""Address policy: which resolved addresses a URL may reach."""

from __future__ import annotations

import asyncio
import ipaddress

import pytest

from vlserve.errors import FetchRefusedError
from vlserve.inputs import FetchPolicy, check_address, check_addresses, system_resolver

REFUSED = [
    ("10.0.0.1", "private network"),
    ("10.255.255.255", "private network"),
    ("172.16.0.1", "private network"),
    ("172.31.255.254", "private network"),
    ("192.168.1.1", "private network"),
    ("127.0.0.1", "loopback"),
    ("127.8.9.10", "loopback"),
    ("::1", "loopback"),
    ("169.254.169.254", "cloud metadata"),
    ("100.100.100.200", "cloud metadata"),
    ("fd00:ec2::254", "cloud metadata"),
    ("169.254.10.10", "link-local"),
    ("fe80::1", "link-local"),
    ("fc00::1", "private network"),
    ("fdff:ffff::1", "private network"),
    ("100.64.0.1", "carrier-grade NAT"),
    ("100.127.255.254", "carrier-grade NAT"),
    ("0.0.0.0", "unspecified"),
    ("::", "unspecified"),
    ("224.0.0.1", "multicast"),
    ("ff02::1", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "reserved"),
    ("198.18.0.1", "benchmarking"),
    ("192.0.2.1", "documentation"),
    ("2001:db8::1", "documentation"),
    # IPv6 spellings of forbidden IPv4 addresses are judged by what they carry.
    ("::ffff:10.0.0.1", "private network"),
    ("::ffff:127.0.0.1", "loopback"),
    ("::ffff:169.254.169.254", "cloud metadata"),
    ("::ffff:0:10.0.0.1", "private network"),  # IPv4-translated
    ("::10.0.0.1", "private network"),  # IPv4-compatible
    ("64:ff9b::7f00:1", "loopback"),  # NAT64 of 127.0.0.1
    ("64:ff9b::a00:1", "private network"),  # NAT64 of 10.0.0.1
    ("2002:a00:1::", "private network"),  # 6to4 of 10.0.0.1
    ("2002:a9fe:a9fe::1", "cloud metadata"),  # 6to4 of 169.254.169.254
    ("64:ff9b:1::1", "private network"),  # local-use NAT64
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "tunnelling (Teredo)"),
]

PUBLIC = [
    "93.184.216.34",
    "8.8.8.8",
    "1.1.1.1",
    "2606:4700::1111",
    "::ffff:93.184.216.34",
    "2002:5db8:d822::1",
]


@pytest.mark.parametrize(("address", "reason"), REFUSED)
def test_internal_addresses_are_refused(address: str, reason: str) -> None:
    with pytest.raises(FetchRefusedError) as info:
        check_address(ipaddress.ip_address(address), "evil.example", FetchPolicy())
    assert info.value.details["reason"] == reason
    assert info.value.code == 1008
    # The message says what kind of address it is, never which internal address it was.
    assert "resolves to a" in info.value.message
    assert address not in info.value.message


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are_allowed(address: str) -> None:
    check_address(ipaddress.ip_address(address), "example.com", FetchPolicy())


def test_ip_literal_message_names_the_address_the_user_typed() -> None:
    with pytest.raises(FetchRefusedError, match="'10.0.0.1' is a private network address"):
        check_address(ipaddress.ip_address("10.0.0.1"), "10.0.0.1", FetchPolicy())


def test_one_internal_record_among_public_ones_refuses_the_host() -> None:
    addresses = [ipaddress.ip_address("93.184.216.34"), ipaddress.ip_address("10.0.0.5")]
    with pytest.raises(FetchRefusedError):
        check_addresses(addresses, "mixed.example", FetchPolicy())


def test_allow_list_by_cidr_and_by_name() -> None:
    policy = FetchPolicy(allow_hosts=("10.20.0.0/16", "images.corp", "*.media.corp", "[::1]"))
    check_address(ipaddress.ip_address("10.20.3.4"), "anything.example", policy)
    check_address(ipaddress.ip_address("::ffff:10.20.3.4"), "anything.example", policy)
    check_address(ipaddress.ip_address("192.168.1.5"), "images.corp", policy)
    check_address(ipaddress.ip_address("192.168.1.5"), "IMAGES.corp.", policy)
    check_address(ipaddress.ip_address("192.168.1.5"), "a.media.corp", policy)
    check_address(ipaddress.ip_address("::1"), "::1", policy)
    with pytest.raises(FetchRefusedError):
        check_address(ipaddress.ip_address("192.168.1.5"), "media.corp", policy)  # "*." is subdomains only
    with pytest.raises(FetchRefusedError):
        check_address(ipaddress.ip_address("10.21.0.1"), "anything.example", policy)


def test_allowed_name_never_opens_metadata_or_unspecified_addresses() -> None:
    policy = FetchPolicy(allow_hosts=("images.corp",))
    for address in ("169.254.169.254", "fd00:ec2::254", "0.0.0.0"):
        with pytest.raises(FetchRefusedError):
            check_address(ipaddress.ip_address(address), "images.corp", policy)
    # ...but an explicit IP entry does: that is the operator's unambiguous choice.
    check_address(ipaddress.ip_address("169.254.169.254"), "x", FetchPolicy(allow_hosts=("169.254.169.254",)))


def test_deny_list_wins_over_allow_list_and_public_addresses() -> None:
    policy = FetchPolicy(
        allow_hosts=("127.0.0.0/8",), deny_hosts=("127.0.0.2", "ads.example", "*.tracker.example")
    )
    check_address(ipaddress.ip_address("127.0.0.1"), "127.0.0.1", policy)
    with pytest.raises(FetchRefusedError, match="blocked"):
        check_address(ipaddress.ip_address("127.0.0.2"), "127.0.0.2", policy)
    with pytest.raises(FetchRefusedError, match="blocked"):
        check_address(ipaddress.ip_address("93.184.216.34"), "ads.example", policy)
    with pytest.raises(FetchRefusedError, match="blocked"):
        check_address(ipaddress.ip_address("93.184.216.34"), "x.tracker.example", policy)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"allowed_schemes": ("ftp",)},
        {"allowed_schemes": ()},
        {"allow_hosts": ("not a host",)},
        {"deny_hosts": ("10.0.0.0/33",)},
        {"max_bytes": 0},
        {"total_timeout": 0},
        {"max_redirects": -1},
    ],
)
def test_invalid_policies_are_rejected_at_construction(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        FetchPolicy(**kwargs)  # type: ignore[arg-type]


def test_policy_accepts_lists_and_stays_hashable() -> None:
    policy = FetchPolicy(allow_hosts=["127.0.0.1"], allowed_schemes=["HTTPS"])  # type: ignore[arg-type]
    assert policy.allow_hosts == ("127.0.0.1",)
    assert policy.allowed_schemes == ("https",)
    assert hash(policy) == hash(FetchPolicy(allow_hosts=("127.0.0.1",), allowed_schemes=("https",)))


def test_system_resolver_returns_addresses() -> None:
    # Numeric hosts only: getaddrinfo answers them without sending a DNS query.
    assert asyncio.run(system_resolver("127.0.0.1", 80)) == [ipaddress.ip_address("127.0.0.1")]
    assert asyncio.run(system_resolver("::1", 80)) == [ipaddress.ip_address("::1")]
