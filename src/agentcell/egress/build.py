"""The egress side of one server, made from its settings: the CA (and the bundle cells trust),
the secret box, the proxy and the gateway over them."""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass, field
from pathlib import Path

from agentcell.config import Settings
from agentcell.egress.addresses import AddressRules, Resolver
from agentcell.egress.ca import CertAuthority
from agentcell.egress.gateway import Gateway
from agentcell.egress.intercept import Interceptor
from agentcell.egress.limits import EgressLimits
from agentcell.egress.local import host_addresses
from agentcell.egress.proxy import EgressProxy
from agentcell.egress.sealing import SecretBox
from agentcell.store import Store

SYSTEM_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


@dataclass(frozen=True)
class HermeticInternet:
    """Tests only, and only from Python (no setting reaches it): let a hermetic "internet" of
    network namespaces pass the private-address rule, name its hosts, trust its CA."""

    networks: tuple[str, ...] = ()
    hosts: dict[str, list[str]] = field(default_factory=dict)
    cafile: str = ""


def build_gateway(
    settings: Settings, store: Store, test: HermeticInternet | None = None
) -> Gateway:
    ca = CertAuthority.load_or_create(settings.egress_dir)
    write_bundle(settings.ca_bundle_path, ca.bundle(SYSTEM_BUNDLE))
    box = SecretBox.load_or_create(
        settings.secrets_key.get_secret_value(), settings.data_dir / "secrets.key"
    )
    upstream = ssl.create_default_context()
    if test is not None and test.cafile:
        upstream.load_verify_locations(test.cafile)
    proxy = EgressProxy(
        Resolver(static=test.hosts if test else None),
        AddressRules(
            server_addresses=host_addresses(), test_networks=test.networks if test else ()
        ),
        EgressLimits(settings.egress_connections_per_user, settings.egress_bytes_per_minute),
        Interceptor(ca, upstream),
        connect_timeout_s=settings.egress_connect_timeout_s,
    )
    return Gateway(store, settings, proxy, box)


def write_bundle(path: Path, content: bytes) -> None:
    """The CA bundle cells mount read-only, readable by their uid; replaced atomically."""
    if path.is_file() and path.read_bytes() == content:
        return
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(content)
    tmp.chmod(0o644)
    tmp.replace(path)
