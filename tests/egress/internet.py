"""A hermetic "internet" for egress tests: a network namespace of its own, joined to this host
by a veth pair in 198.18.0.0/24 (the benchmarking range, which the proxy never reaches but for
a test's ``HermeticInternet``), with a web server (``origin.py``) answering for every test name.
Nothing here sends traffic anywhere but loopback and that namespace."""

from __future__ import annotations

import datetime
import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

HOST_SIDE = "198.18.0.1"
ORIGIN = "198.18.0.2"
NETWORK = "198.18.0.0/24"
NAMES = ("web.test", "api.test", "en.wiki.test", "ads.wiki.test", "wiki.test")


@dataclass
class Internet:
    namespace: str
    ca_pem: Path  # the test CA that signed the origin's certificate
    log: Path  # one JSON line per request the origin received

    def received(self) -> list[dict[str, object]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def hosts(self, **more: list[str]) -> dict[str, list[str]]:
        """What the test resolver answers: every test name at the origin, and ``more``."""
        return {**{name: [ORIGIN] for name in NAMES}, **more}


def _name(text: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])


def _cert(subject: str, issuer: str, key: ec.EllipticCurvePrivateKey) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
    )


def _certificates(where: Path) -> tuple[Path, Path, Path]:
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (
        _cert("test internet CA", "test internet CA", ca_key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    san = x509.SubjectAlternativeName([x509.DNSName(n) for n in NAMES])
    leaf = (
        _cert("origin", "test internet CA", key)
        .add_extension(san, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    paths = where / "ca.pem", where / "origin.pem", where / "origin.key"
    paths[0].write_bytes(ca.public_bytes(pem))
    paths[1].write_bytes(leaf.public_bytes(pem))
    paths[2].write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def internet(where: Path) -> Iterator[Internet]:
    """The namespace, its link and its server, for the block; all gone after it."""
    tag = secrets.token_hex(3)
    ns, host_if, ns_if = f"acnet{tag}", f"ach{tag}", f"aci{tag}"
    ca, cert, key = _certificates(where)
    log = where / "received.jsonl"
    _ip("netns", "add", ns)
    origin = None
    try:
        _ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        _ip("link", "set", ns_if, "netns", ns)
        _ip("addr", "add", f"{HOST_SIDE}/24", "dev", host_if)
        _ip("link", "set", host_if, "up")
        for args in (
            ("addr", "add", f"{ORIGIN}/24", "dev", ns_if),
            ("link", "set", ns_if, "up"),
            ("link", "set", "lo", "up"),
        ):
            _ip("-n", ns, *args)
        script = Path(__file__).with_name("origin.py")
        origin = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, str(script), ORIGIN]
            + [str(cert), str(key), str(log)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        assert origin.stdout is not None
        assert origin.stdout.readline().strip() == "ready"
        yield Internet(ns, ca, log)
    finally:
        if origin is not None:
            origin.kill()
            origin.wait()
            for pipe in (origin.stdin, origin.stdout):
                if pipe is not None:
                    pipe.close()
        subprocess.run(["ip", "link", "del", host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
