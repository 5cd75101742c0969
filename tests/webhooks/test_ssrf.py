"""The SSRF guard on its face: hostile URLs in every spelling, refused with the right reason."""

from __future__ import annotations

import ipaddress
import logging

import pytest

from postwarden_admin_api.webhooks.ssrf import Guard, Reason, UrlRefused, parse_ipv4

R = Reason
HOSTILE = [
    # scheme and user information
    pytest.param("http://hooks.example.com/", R.SCHEME, id="plain-http"),
    pytest.param("ftp://hooks.example.com/", R.SCHEME, id="ftp"),
    pytest.param("file:///etc/passwd", R.SCHEME, id="file"),
    pytest.param("gopher://hooks.example.com:70/", R.SCHEME, id="gopher"),
    pytest.param("//hooks.example.com/", R.SCHEME, id="scheme-relative"),
    pytest.param("https://user:pw@hooks.example.com/", R.USERINFO, id="userinfo"),
    pytest.param("https://user@hooks.example.com/", R.USERINFO, id="user-only"),
    pytest.param("https://hooks.example.com:443@127.0.0.1/", R.USERINFO, id="userinfo-confusion"),
    pytest.param("https://evil.com%2f@127.0.0.1/", R.USERINFO, id="encoded-slash-userinfo"),
    pytest.param("https:///path", R.HOST_MISSING, id="no-host"),
    # no connection can be made to port 0: every delivery failed "connection refused"
    pytest.param("https://hooks.example.com:0/", R.HOST_INVALID, id="port-0"),
    pytest.param("https://hooks.example.com:00/", R.HOST_INVALID, id="port-00"),
    pytest.param("https://8.8.8.8:0/", R.HOST_INVALID, id="port-0-address"),
    pytest.param("https://hooks.example.com:65536/", R.HOST_INVALID, id="port-65536"),
    # reserved names
    pytest.param("https://localhost/", R.RESERVED_NAME, id="localhost"),
    pytest.param("https://LOCALHOST./", R.RESERVED_NAME, id="localhost-upper-dot"),
    pytest.param("https://ⓛocalhost/", R.RESERVED_NAME, id="localhost-idna-fold"),
    pytest.param("https://app.localhost/", R.RESERVED_NAME, id="sub-localhost"),
    pytest.param("https://printer.local/", R.RESERVED_NAME, id="mdns-local"),
    pytest.param("https://metadata.google.internal/", R.RESERVED_NAME, id="internal"),
    pytest.param("https://metadata/", R.RESERVED_NAME, id="single-label"),
    pytest.param("https://%6c%6fcalhost/", R.HOST_INVALID, id="percent-encoded-host"),
    # IPv4 loopback in every spelling
    pytest.param("https://127.0.0.1/", R.LOOPBACK, id="v4-loopback"),
    pytest.param("https://127.1/", R.LOOPBACK, id="v4-short"),
    pytest.param("https://127.0.1/", R.LOOPBACK, id="v4-short-3"),
    pytest.param("https://2130706433/", R.LOOPBACK, id="v4-decimal"),
    pytest.param("https://0x7f000001/", R.LOOPBACK, id="v4-hex"),
    pytest.param("https://0x7f.1/", R.LOOPBACK, id="v4-hex-short"),
    pytest.param("https://0177.0.0.1/", R.LOOPBACK, id="v4-octal"),
    pytest.param("https://017700000001/", R.LOOPBACK, id="v4-octal-whole"),
    pytest.param("https://0x7F.0x0.0.01/", R.LOOPBACK, id="v4-mixed"),
    pytest.param("https://１２７.0.0.1/", R.LOOPBACK, id="v4-fullwidth"),
    pytest.param("https://127.0.0.1./", R.LOOPBACK, id="v4-trailing-dot"),
    # the other IPv4 ranges
    pytest.param("https://0.0.0.0/", R.UNSPECIFIED, id="v4-unspecified"),
    pytest.param("https://0/", R.UNSPECIFIED, id="v4-zero"),
    pytest.param("https://10.1.2.3/", R.PRIVATE, id="rfc1918-10"),
    pytest.param("https://172.16.0.1/", R.PRIVATE, id="rfc1918-172"),
    pytest.param("https://192.168.1.1/", R.PRIVATE, id="rfc1918-192"),
    pytest.param("https://3232235777/", R.PRIVATE, id="rfc1918-decimal"),
    pytest.param("https://0xc0.0xa8.1.1/", R.PRIVATE, id="rfc1918-hex"),
    pytest.param("https://100.64.0.1/", R.CGNAT, id="cgnat"),
    pytest.param("https://169.254.169.254/", R.LINK_LOCAL, id="metadata-v4"),
    pytest.param("https://0xa9fea9fe/", R.LINK_LOCAL, id="metadata-v4-hex"),
    pytest.param("https://0251.0376.0251.0376/", R.LINK_LOCAL, id="metadata-v4-octal"),
    pytest.param("https://224.0.0.1/", R.MULTICAST, id="v4-multicast"),
    pytest.param("https://255.255.255.255/", R.RESERVED, id="v4-broadcast"),
    pytest.param("https://240.0.0.1/", R.RESERVED, id="v4-class-e"),
    pytest.param("https://192.0.2.10/", R.RESERVED, id="v4-documentation"),
    pytest.param("https://198.18.0.1/", R.RESERVED, id="v4-benchmark"),
    pytest.param("https://256.0.0.1/", R.HOST_INVALID, id="v4-octet-overflow"),
    pytest.param("https://1.2.3.4.5/", R.HOST_INVALID, id="v4-five-parts"),
    pytest.param("https://08.0.0.1/", R.HOST_INVALID, id="v4-bad-octal"),
    # IPv6
    pytest.param("https://[::1]/", R.LOOPBACK, id="v6-loopback"),
    pytest.param("https://[0:0:0:0:0:0:0:1]/", R.LOOPBACK, id="v6-loopback-long"),
    pytest.param("https://[::]/", R.UNSPECIFIED, id="v6-unspecified"),
    pytest.param("https://[fc00::1]/", R.UNIQUE_LOCAL, id="v6-ula"),
    pytest.param("https://[fd00:ec2::254]/", R.UNIQUE_LOCAL, id="metadata-v6"),
    pytest.param("https://[fe80::1]/", R.LINK_LOCAL, id="v6-link-local"),
    pytest.param("https://[fe80::1%25eth0]/", R.LINK_LOCAL, id="v6-link-local-zone"),
    # aiohttp hands the system "25eth0" as the zone: every delivery failed to connect
    pytest.param("https://[2606:4700::1%25eth0]/", R.HOST_INVALID, id="v6-zone"),
    pytest.param("https://[ff02::1]/", R.MULTICAST, id="v6-multicast"),
    pytest.param("https://[2001:db8::1]/", R.RESERVED, id="v6-documentation"),
    pytest.param("https://[2001:0:4136:e378::1]/", R.RESERVED, id="v6-teredo"),
    # IPv4 embedded in IPv6
    pytest.param("https://[::ffff:127.0.0.1]/", R.LOOPBACK, id="v4-mapped-loopback"),
    pytest.param("https://[::ffff:7f00:1]/", R.LOOPBACK, id="v4-mapped-hex"),
    pytest.param("https://[::ffff:169.254.169.254]/", R.LINK_LOCAL, id="v4-mapped-metadata"),
    pytest.param("https://[::ffff:10.0.0.1]/", R.PRIVATE, id="v4-mapped-private"),
    pytest.param("https://[::127.0.0.1]/", R.LOOPBACK, id="v4-compatible"),
    pytest.param("https://[2002:7f00:1::]/", R.LOOPBACK, id="6to4-loopback"),
    pytest.param("https://[2002:a9fe:a9fe::1]/", R.LINK_LOCAL, id="6to4-metadata"),
    pytest.param("https://[2002:c0a8:101::]/", R.PRIVATE, id="6to4-private"),
    pytest.param("https://[64:ff9b::7f00:1]/", R.LOOPBACK, id="nat64-loopback"),
    pytest.param("https://[64:ff9b::10.0.0.1]/", R.PRIVATE, id="nat64-private"),
    pytest.param("https://[64:ff9b::a9fe:a9fe]/", R.LINK_LOCAL, id="nat64-metadata"),
    pytest.param("https://[64:ff9b:1::1]/", R.RESERVED, id="nat64-local-use"),
    pytest.param("https://[::ffff:8.8.8.8]/", R.RESERVED, id="v4-mapped-public"),
]


def test_table_is_big_enough() -> None:
    assert len(HOSTILE) >= 40


@pytest.mark.parametrize(("url", "reason"), HOSTILE)
def test_hostile_url_refused_with_reason(url: str, reason: Reason) -> None:
    with pytest.raises(UrlRefused) as refused:
        Guard().check_url(url)
    assert refused.value.reason is reason


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/x?y=1",
        "https://HOOKS.Example.COM:8443/path",
        "https://8.8.8.8/",
        "https://[2606:4700:4700::1111]/",
        "https://bücher.example/hook",  # IDNA name
        "https://[64:ff9b::8.8.8.8]/",  # NAT64 of a public address: what DNS64 answers
    ],
)
def test_public_urls_pass(url: str) -> None:
    assert Guard().check_url(url).scheme == "https"


def test_allowed_network_opens_only_that_range() -> None:
    guard = Guard.from_cidrs(["10.20.0.0/16", "fd12::/16"])
    guard.check_url("https://10.20.3.4/")
    guard.check_url("https://[fd12::5]/")
    guard.check_url("https://[::ffff:10.20.3.4]/")  # the embedded address is allowed
    with pytest.raises(UrlRefused) as refused:
        guard.check_url("https://10.21.0.1/")
    assert refused.value.reason is Reason.PRIVATE
    with pytest.raises(UrlRefused):
        guard.check_url("https://localhost/")  # names stay refused whatever is allowed


@pytest.mark.parametrize("url", ["https://0x08080808/", "https://8.8.8.8./", "https://8.8.2056/",
                                 "https://010.8.8.8/", "https://127.1/", "https://2130706433/"])
def test_an_address_not_written_a_b_c_d_is_refused_even_if_allowed(url: str) -> None:
    """aiohttp will not connect to one: the endpoint was accepted, then every delivery
    failed as "connection failed (InvalidUrlClientError)" until dead."""
    with pytest.raises(UrlRefused) as refused:
        Guard.from_cidrs(["127.0.0.0/8"]).check_url(url)
    assert refused.value.reason is Reason.HOST_INVALID
    assert "write it as" in refused.value.detail


@pytest.mark.parametrize("url", ["https://[fe80::1%25eth0]/", "https://[fe80::1%251]/"])
def test_a_zone_id_is_refused_even_if_allowed(url: str) -> None:
    """aiohttp passes the zone on as written in the URL, %25 and all: eth0 was "25eth0",
    no interface, and interface 1 was 251, another one."""
    with pytest.raises(UrlRefused) as refused:
        Guard.from_cidrs(["fe80::/10"]).check_url(url)
    assert refused.value.reason is Reason.HOST_INVALID


def test_nothing_is_allowed_by_default() -> None:
    assert Guard().allowed_networks == ()


@pytest.mark.parametrize(
    ("spelling", "address"),
    [("127.1", "127.0.0.1"), ("0x7f.0.0.1", "127.0.0.1"), ("017700000001", "127.0.0.1"),
     ("10.0x10.010", "10.16.0.8"), ("4294967295", "255.255.255.255"), ("1.2.3.4", "1.2.3.4")],
)
def test_ipv4_spellings_normalised_like_inet_aton(spelling: str, address: str) -> None:
    assert parse_ipv4(spelling) == ipaddress.IPv4Address(address)


def test_names_are_not_addresses() -> None:
    assert parse_ipv4("hooks.example.com") is None


def test_refusal_logged_with_reason(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="postwarden_admin_api.webhooks.ssrf")
    with pytest.raises(UrlRefused):
        Guard().check_url("https://0x7f.1/")
    assert any(
        "refused" in r.getMessage() and "loopback" in r.getMessage() for r in caplog.records
    )
