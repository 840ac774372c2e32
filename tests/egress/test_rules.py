"""The egress proxy's rules without a network: names against policies, addresses against the
always-refused ranges, the TLS server name, limits, sealing and the CA."""

from __future__ import annotations

import ipaddress
import multiprocessing
import ssl
import stat
from pathlib import Path

import pytest

from agentcell.egress.addresses import AddressRules, refused_address
from agentcell.egress.ca import CertAuthority
from agentcell.egress.context import SecretRule
from agentcell.egress.http import Refusal, put_secrets
from agentcell.egress.limits import EgressLimits, TooManyConnections
from agentcell.egress.policy import check_within, decide, effective, matches
from agentcell.egress.sealing import SecretBox, SecretUnreadable
from agentcell.egress.tunnel import server_name
from agentcell.errors import InvalidRequest
from agentcell.schemas import AdminNetwork, NetworkPolicy


def test_wildcards_match_names_below_only() -> None:
    assert matches("*.a.com", "x.a.com")
    assert matches("*.a.com", "y.x.a.com")
    assert not matches("*.a.com", "a.com")
    assert not matches("*.a.com", "xa.com")
    assert matches("a.com", "a.com")
    assert not matches("a.com", "x.a.com")


def test_deny_wins_and_modes_decide() -> None:
    allow = NetworkPolicy(
        mode="allowlist", allow=["*.wiki.org", "api.x.com"], deny=["ads.wiki.org"]
    )
    assert decide(allow, "en.wiki.org").allowed
    assert decide(allow, "API.X.COM.").allowed
    refused = decide(allow, "ads.wiki.org")
    assert not refused.allowed
    assert "denied by your rule ads.wiki.org" in refused.reason
    assert "agentcell network allow other.org" in decide(allow, "other.org").reason
    public = NetworkPolicy(mode="public", deny=["*.evil.org"])
    assert decide(public, "any.org").allowed
    assert not decide(public, "x.evil.org").allowed
    assert "policy is none" in decide(NetworkPolicy(), "a.org").reason


def test_the_ceiling_clamps_and_refuses() -> None:
    admin = AdminNetwork(
        default=NetworkPolicy(mode="allowlist", allow=["index.example.org"], deny=["x.org"])
    )
    assert effective(None, admin).allow == ["index.example.org"]
    own = NetworkPolicy(mode="public")
    clamped = effective(own, admin)
    assert clamped.mode == "allowlist"
    assert clamped.deny == ["x.org"]  # the admin's deny list always applies
    with pytest.raises(InvalidRequest):
        check_within(own, admin)
    check_within(own, AdminNetwork(ceiling="public"))
    assert effective(own, AdminNetwork(ceiling="none")).mode == "none"


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1",
        "0.0.0.0", "224.0.0.251", "240.0.0.1", "198.18.0.2", "::1", "fe80::1", "fd12::1",
        "::ffff:10.0.0.1", "::ffff:169.254.169.254", "2002:a00:1::1", "ff02::1", "::",
    ],
)  # fmt: skip
def test_local_and_special_addresses_are_refused(address: str) -> None:
    assert refused_address(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize("address", ["8.8.8.8", "93.184.216.34", "2606:4700:4700::1111"])
def test_public_addresses_pass(address: str) -> None:
    assert refused_address(ipaddress.ip_address(address)) is None


def test_the_servers_own_and_test_networks() -> None:
    rules = AddressRules(
        server_addresses=["203.0.113.7", "8.8.4.4"], test_networks=["198.18.0.0/24"]
    )
    assert "own address" in (rules.refused(ipaddress.ip_address("8.8.4.4")) or "")
    assert rules.refused(ipaddress.ip_address("198.18.0.9")) is None
    assert rules.refused(ipaddress.ip_address("198.18.1.9")) is not None


def _client_hello(name: str) -> bytes:
    """A real ClientHello, as Python's ssl writes it."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ssl.create_default_context().wrap_bio(incoming, outgoing, server_hostname=name)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def test_the_server_name_of_a_client_hello() -> None:
    hello = _client_hello("API.Example.com")
    assert server_name(hello) == "api.example.com"
    for cut in (0, 5, 40, 80, len(hello) - 3):
        assert server_name(hello[:cut]) in (None, "api.example.com")
    assert server_name(b"GET / HTTP/1.1\r\n\r\n") is None
    assert server_name(b"\x16\x03\x01\xff\xff\x01" + b"\xff" * 100) is None


def test_connections_are_counted_per_user() -> None:
    limits = EgressLimits(connections_per_user=2, bytes_per_minute=60 * 1024)
    with limits.open("a"), limits.open("a"):
        with pytest.raises(TooManyConnections), limits.open("a"):
            pass
        with limits.open("b") as meter:
            assert meter.take(256 * 1024) == 0  # the first burst (at least 256 KiB)
            assert meter.take(1024) > 0  # then paced
    with limits.open("a"):
        pass


def test_placeholders_become_values_only_at_their_hosts() -> None:
    rule = SecretRule("TOKEN", "PH123", "VALUE", ("api.x.com", "*.y.org"))
    headers, target, put = put_secrets(
        [(b"authorization", b"Bearer PH123")], b"/?k=PH123", "api.x.com", [rule]
    )
    assert headers == [(b"authorization", b"Bearer VALUE")]
    assert target == b"/?k=VALUE"
    assert put
    with pytest.raises(Refusal, match="may only be sent to api.x.com"):
        put_secrets([(b"x", b"PH123")], b"/", "evil.com", [rule])
    assert put_secrets([(b"x", b"other")], b"/", "evil.com", [rule])[2] is False


def test_sealed_secrets_open_only_for_their_owner_and_name(tmp_path: Path) -> None:
    path = tmp_path / "secrets.key"
    box = SecretBox.load_or_create("", path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    sealed = box.seal("u1", "TOKEN", "value")
    assert b"value" not in sealed
    assert SecretBox.load_or_create("", path).open("u1", "TOKEN", sealed) == "value"
    for owner, name in (("u2", "TOKEN"), ("u1", "OTHER")):
        with pytest.raises(SecretUnreadable):
            box.open(owner, name, sealed)
    with pytest.raises(SecretUnreadable):
        box.open("u1", "TOKEN", sealed[:-1] + bytes([sealed[-1] ^ 1]))


def _load(directory: str) -> bytes:
    return CertAuthority.load_or_create(Path(directory)).cert_pem


def test_one_ca_is_made_once_even_by_two_processes(tmp_path: Path) -> None:
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        first, second = pool.map(_load, [str(tmp_path)] * 2)
    assert first == second == (tmp_path / "ca.pem").read_bytes()
    assert stat.S_IMODE((tmp_path / "ca.key").stat().st_mode) == 0o600
    ca = CertAuthority.load_or_create(tmp_path)
    assert ca.cert_pem == first
    for host in ("api.example.com", "203.0.113.5"):
        assert isinstance(ca.server_context(host), ssl.SSLContext)
    assert ca.bundle(None) == first
