"""Headers that keep a browser safe with what we answer (DESIGN §12): nothing of ours is
sniffed into another type, leaks its URL as a referrer, or runs script unless it is one of our
pages, which say so with a Content-Security-Policy of their own. Relayed answers keep the
headers of the server in the cell (``origins.SANDBOX`` is added where needed)."""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agentcell.api.relay import PREFIX as RELAY_PREFIX

# Whatever is opened in a tab (JSON, a downloaded file shown inline): no script, no frames.
LOCKED = "default-src 'none'; frame-ancestors 'none'; sandbox"


def page_policy(frame_src: str = "", frame_ancestors: str = "'none'") -> str:
    """The policy of a page of ours: its own files only, no inline script, no eval. Style
    elements may be inline (the terminal, xterm.js, writes its own), style attributes not
    (nothing rendered from a model or a file can style itself)."""
    frames = " ".join(filter(None, ("'self'", frame_src)))
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; "
        "style-src-elem 'self' 'unsafe-inline'; style-src-attr 'none'; img-src 'self' blob: data:; "
        f"connect-src 'self'; frame-src {frames}; worker-src 'self' blob:; object-src 'none'; "
        f"base-uri 'none'; form-action 'self'; frame-ancestors {frame_ancestors}"
    )


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(RELAY_PREFIX):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("content-security-policy", LOCKED)
                headers.setdefault("x-content-type-options", "nosniff")
                headers.setdefault("referrer-policy", "no-referrer")
            await send(message)

        await self.app(scope, receive, send_with_headers)
