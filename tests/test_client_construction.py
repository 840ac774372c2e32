"""Making a client costs next to nothing: no TLS context for ``http://`` (httpx would load the
CA bundle for each client), one shared a process for ``https://``. Timing is the benchmarks'
business; this pins what the clients hold."""

from __future__ import annotations

import ssl

from agentcell import AsyncClient, Client


def context_of(client: Client | AsyncClient) -> ssl.SSLContext:
    context: ssl.SSLContext = client._http._transport._pool._ssl_context  # type: ignore[union-attr]
    return context


def test_plain_http_loads_no_certificates() -> None:
    for cls in (Client, AsyncClient):
        client = cls("http://127.0.0.1:9", api_key="x")
        assert context_of(client).cert_store_stats()["x509_ca"] == 0


def test_https_clients_share_one_verifying_context() -> None:
    first, second = Client("https://a.invalid", api_key="x"), AsyncClient("https://b.invalid")
    shared = context_of(first)
    assert shared is context_of(second)
    assert shared.verify_mode is ssl.CERT_REQUIRED
    assert shared.check_hostname
    assert shared.cert_store_stats()["x509_ca"] > 0
    first.close()
