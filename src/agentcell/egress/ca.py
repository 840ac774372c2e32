"""This deployment's own certificate authority: made once into the data dir, trusted by cells
(the CA bundle they mount), used by the proxy to present a certificate for a host whose
requests get secrets put in (``intercept``). Its key never leaves the server."""

from __future__ import annotations

import datetime
import ipaddress
import os
import secrets
import ssl
import tempfile
import time
from collections import OrderedDict
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

LEAVES_KEPT = 256
LEAF_DAYS = 30
CA_DAYS = 3650


def _name(text: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])


class CertAuthority:
    def __init__(self, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
        self.key = key
        self.cert = cert
        self.cert_pem = cert.public_bytes(serialization.Encoding.PEM)
        self.leaf_key = ec.generate_private_key(ec.SECP256R1())  # one for every leaf
        self.leaves: OrderedDict[str, ssl.SSLContext] = OrderedDict()

    @classmethod
    def load_or_create(cls, directory: Path) -> CertAuthority:
        """The CA in ``directory`` (``ca.key`` 0600, ``ca.pem``), made there if missing; of two
        processes making it at once, the first to link its key in wins."""
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        key_path, cert_path = directory / "ca.key", directory / "ca.pem"
        if not key_path.exists():
            cls._create(key_path, cert_path)
        for _ in range(500):  # the winner writes its certificate right after its key
            if cert_path.exists():
                break
            time.sleep(0.01)
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return cls(key, x509.load_pem_x509_certificate(cert_path.read_bytes()))

    @staticmethod
    def _create(key_path: Path, cert_path: Path) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        name = _name(f"agentcell egress CA ({secrets.token_hex(4)})")
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),  # fmt: skip
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        fd, tmp = tempfile.mkstemp(dir=key_path.parent, prefix=".ca.key.")  # 0600
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        try:
            os.link(tmp, key_path)
        except FileExistsError:
            return  # another process made the CA first
        finally:
            Path(tmp).unlink()
        tmp_cert = cert_path.with_name(f".ca.pem.{os.getpid()}")
        tmp_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        tmp_cert.replace(cert_path)

    def bundle(self, system_bundle: Path | None) -> bytes:
        """The system's CA list (when there is one) with this CA at its end."""
        system = system_bundle.read_bytes() if system_bundle and system_bundle.is_file() else b""
        return system.rstrip(b"\n") + b"\n" + self.cert_pem if system else self.cert_pem

    def server_context(self, host: str) -> ssl.SSLContext:
        """A TLS server context presenting a certificate for ``host`` signed by this CA."""
        context = self.leaves.get(host)
        if context is None:
            context = self._leaf_context(host)
            self.leaves[host] = context
            if len(self.leaves) > LEAVES_KEPT:
                self.leaves.popitem(last=False)
        self.leaves.move_to_end(host)
        return context

    def _leaf_context(self, host: str) -> ssl.SSLContext:
        try:
            san: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
        except ValueError:
            san = x509.DNSName(host)
        now = datetime.datetime.now(datetime.UTC)
        leaf = (
            x509.CertificateBuilder()
            .subject_name(_name(host[:64]))
            .issuer_name(self.cert.subject)
            .public_key(self.leaf_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=LEAF_DAYS))
            .add_extension(x509.SubjectAlternativeName([san]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), False
            )
            .sign(self.key, hashes.SHA256())
        )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.set_alpn_protocols(["http/1.1"])
        # ssl loads a chain only from files: a private temporary directory, gone at once.
        with tempfile.TemporaryDirectory() as where:
            chain, key = Path(where, "chain.pem"), Path(where, "key.pem")
            chain.write_bytes(leaf.public_bytes(serialization.Encoding.PEM) + self.cert_pem)
            key.write_bytes(
                self.leaf_key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
            context.load_cert_chain(chain, key)
        return context
