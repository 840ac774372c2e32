"""This host's own addresses, which cells may never reach through the proxy whatever they are
(a public one included): read from the kernel, as ``ip addr`` does."""

from __future__ import annotations

import ipaddress
from pathlib import Path

FIB_TRIE = Path("/proc/net/fib_trie")
IF_INET6 = Path("/proc/net/if_inet6")


def host_addresses() -> set[str]:
    """Every IPv4 and IPv6 address of this host's interfaces (in this network namespace)."""
    found: set[str] = set()
    try:
        lines = FIB_TRIE.read_text().splitlines()
    except OSError:
        lines = []
    # An address line "|-- 192.0.2.2" followed by "/32 host LOCAL" is one of ours.
    for previous, line in zip(lines, lines[1:], strict=False):
        if line.strip() == "/32 host LOCAL" and "|--" in previous:
            found.add(previous.split("|--")[1].strip())
    try:
        for line in IF_INET6.read_text().splitlines():
            raw = line.split()[0]
            found.add(str(ipaddress.IPv6Address(int(raw, 16))))
    except (OSError, ValueError, IndexError):
        pass
    return found
