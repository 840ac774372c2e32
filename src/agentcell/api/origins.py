"""Two origins for one server (DESIGN §12): the web page's, where the session cookie lives, and
the preview origin, where browsers open pages served from cells through the port relay. A page
from a cell is the cell's (its model's, a stranger's) code: on the page's origin it could read
the API with the user's cookie, so it is opened on the other origin, or, where there is none,
sandboxed by its Content-Security-Policy into an origin of its own."""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.requests import HTTPConnection

from agentcell.config import Settings

LOOPBACK = frozenset({"127.0.0.1", "::1"})
DEFAULT_PREVIEW_HOST = "localhost"  # the page at http://127.0.0.1:PORT, previews at localhost
# A relayed page on the page's origin: its scripts run, in an opaque origin of their own.
SANDBOX = "sandbox allow-scripts allow-forms allow-popups allow-modals allow-downloads"


def _settings(conn: HTTPConnection) -> Settings:
    settings: Settings = conn.app.state.settings
    return settings


def _host(conn: HTTPConnection) -> str:
    return conn.headers.get("host", "").lower()


def on_preview(conn: HTTPConnection) -> bool:
    """Whether the request came to the preview origin's address."""
    if configured := _settings(conn).preview_url:
        return _host(conn) == urlsplit(configured).netloc.lower()
    return conn.url.hostname == DEFAULT_PREVIEW_HOST


def preview_origin(conn: HTTPConnection) -> str | None:
    """Where browsers open relayed pages (``scheme://host[:port]``), or None: nowhere apart."""
    if configured := _settings(conn).preview_url:
        return configured.rstrip("/")
    if on_preview(conn):
        return f"{conn.url.scheme}://{_host(conn)}"
    if conn.url.hostname in LOOPBACK and conn.url.port:
        return f"{conn.url.scheme}://{DEFAULT_PREVIEW_HOST}:{conn.url.port}"
    return None


def page_origin(conn: HTTPConnection) -> str | None:
    """Where the web page is, seen from the default preview address (None: not known)."""
    if _settings(conn).preview_url or not on_preview(conn):
        return None
    port = f":{conn.url.port}" if conn.url.port else ""
    return f"{conn.url.scheme}://127.0.0.1{port}"


def browser_url(conn: HTTPConnection, path: str) -> str:
    """A relay path as a browser should open it: on the preview origin when there is one."""
    origin = preview_origin(conn)
    return path if origin is None else origin + path
