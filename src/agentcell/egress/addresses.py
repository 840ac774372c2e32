"""Which addresses a cell may never reach through the proxy, whatever its policy, and names
resolved to addresses (checked one by one: the proxy connects only to an address it checked,
so a name that resolves to a private address, at once or later, gets nowhere)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Besides what ``ipaddress`` knows as private, loopback, link-local, multicast, reserved.
EXTRA_REFUSED: tuple[tuple[str, str], ...] = (
    ("100.64.0.0/10", "shared address space (CGNAT)"),
    ("192.0.0.0/24", "IETF protocol assignments"),
    ("198.18.0.0/15", "benchmarking"),
    ("64:ff9b:1::/48", "local-use IPv4/IPv6 translation"),
    ("2001::/23", "IETF protocol assignments"),
)


def refused_address(ip: IPAddress) -> str | None:
    """Why ``ip`` may never be reached (None: a global unicast address)."""
    if isinstance(ip, ipaddress.IPv6Address):
        mapped = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if mapped is not None and (why := refused_address(mapped)):
            return f"{why} (inside the IPv6 address {ip})"
    checks = (
        (ip.is_unspecified, "the unspecified address"),
        (ip.is_loopback, "a loopback address"),
        (ip.is_link_local, "a link-local address (cloud metadata lives there)"),
        (ip.is_multicast, "a multicast address"),
        (ip.is_private, "a private address"),
        (ip.is_reserved, "a reserved address"),
        (isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local, "a site-local address"),
    )
    for hit, why in checks:
        if hit:
            return f"{ip} is {why}"
    for net, why in EXTRA_REFUSED:
        network = ipaddress.ip_network(net)
        if ip.version == network.version and ip in network:
            return f"{ip} is in {net} ({why})"
    if not ip.is_global:
        return f"{ip} is not a public address"
    return None


class AddressRules:
    """The address rule of this server: ``refused_address`` plus its own addresses.
    ``test_networks``: nets a test's hermetic internet lives in, let through; Python only,
    no setting reaches it."""

    def __init__(
        self, *, server_addresses: Iterable[str] = (), test_networks: Iterable[str] = ()
    ) -> None:
        self.server = {ipaddress.ip_address(a.split("%")[0]) for a in server_addresses}
        self.test_networks: list[IPNetwork] = [ipaddress.ip_network(n) for n in test_networks]

    def refused(self, ip: IPAddress) -> str | None:
        if ip in self.server:
            return f"{ip} is this server's own address"
        if any(ip.version == n.version and ip in n for n in self.test_networks):
            return None
        return refused_address(ip)


class Resolver:
    """Names to addresses by the system's resolver, off the event loop; ``static``: names a
    test answers itself (no DNS), each to its list of addresses."""

    def __init__(self, static: dict[str, list[str]] | None = None) -> None:
        self.static = {k.lower(): v for k, v in (static or {}).items()}

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        try:
            return [ipaddress.ip_address(host.strip("[]"))]
        except ValueError:
            pass
        if host.lower() in self.static:
            return [ipaddress.ip_address(a) for a in self.static[host.lower()]]
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
        seen: dict[IPAddress, None] = {}
        for _family, _type, _proto, _name, sockaddr in infos:
            seen[ipaddress.ip_address(str(sockaddr[0]).split("%")[0])] = None
        return list(seen)
