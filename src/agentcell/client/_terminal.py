"""A terminal in your cell over the server's WebSocket ``/v1/cell/terminal`` (blocking; what
``agentcell shell`` drives). Binary messages are keystrokes and output; text messages JSON:
``ready`` first, ``exit`` last, ``resize`` and ``input`` from us."""

from __future__ import annotations

import contextlib
import json
from typing import Any
from urllib.parse import urlencode

from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI
from websockets.sync.client import ClientConnection, connect

from agentcell.client._http import error_from
from agentcell.errors import AgentcellError, ServerUnreachable

TAKEN_OVER = 4001  # the close code when another attachment took the terminal over


class TerminalTakenOver(AgentcellError):
    """The terminal was attached elsewhere (another window took it over)."""

    code = "terminal_taken_over"


class Terminal:
    """An attached terminal: ``recv()`` gives its output until the shell exits (then None, and
    ``exit_code`` is set); ``send`` types; ``resize`` tells it the window's size."""

    def __init__(self, ws: ClientConnection, ready: dict[str, Any]) -> None:
        self._ws = ws
        self.session: str = str(ready["session"])
        self.exit_code: int | None = None
        self.ended = False

    @classmethod
    def open(
        cls, url: str, api_key: str, session: str | None, cols: int, rows: int, timeout_s: float
    ) -> Terminal:
        query = {"cols": cols, "rows": rows, **({"session": session} if session else {})}
        ws_url = url.replace("http", "ws", 1) + "/v1/cell/terminal?" + urlencode(query)
        headers = {"Authorization": f"Bearer {api_key}"}
        try:
            # No keepalive pings: a shell left alone for hours is not a dead connection, and
            # the server's own pings keep the path open.
            ws = connect(
                ws_url,
                additional_headers=headers,
                open_timeout=timeout_s,
                ping_interval=None,
                max_size=None,
            )
        except InvalidStatus as exc:
            raise _refusal(exc) from exc
        except (OSError, TimeoutError, InvalidURI) as exc:
            reason = str(exc) or type(exc).__name__
            raise ServerUnreachable(
                f"the agentcell server is not reachable at {url} ({reason})"
            ) from exc
        try:
            ready = json.loads(ws.recv(timeout=timeout_s))
        except (ConnectionClosed, TimeoutError, ValueError) as exc:
            ws.close()
            raise AgentcellError(f"the terminal did not start: {exc}") from exc
        return cls(ws, ready)

    def recv(self, timeout_s: float | None = None) -> bytes | None:
        """The next output; None once the shell has exited (``exit_code``). ``TimeoutError``
        when nothing came within ``timeout_s``; ``TerminalTakenOver`` when taken over."""
        while not self.ended:
            try:
                message = self._ws.recv(timeout=timeout_s)
            except ConnectionClosed as exc:
                self.ended = True
                if exc.rcvd is not None and exc.rcvd.code == TAKEN_OVER:
                    raise TerminalTakenOver(
                        "the terminal was attached in another window",
                        hint=f"attach again with: agentcell shell --session {self.session}",
                    ) from exc
                return None
            if isinstance(message, bytes):
                return message
            event = json.loads(message)
            if event.get("type") == "exit":
                self.exit_code = event.get("code")
                self.ended = True
        return None

    def send(self, data: bytes) -> None:
        """Type ``data``. Once the terminal has ended nothing is sent (``recv`` says why)."""
        with contextlib.suppress(ConnectionClosed):
            self._ws.send(data)

    def resize(self, cols: int, rows: int) -> None:
        with contextlib.suppress(ConnectionClosed):
            self._ws.send(json.dumps({"type": "resize", "cols": cols, "rows": rows}))

    def close(self) -> None:
        """Detach: the shell lives on for the server's grace period (reattach with
        ``session``); end it with ``Client.terminal_close``."""
        self._ws.close()

    def __enter__(self) -> Terminal:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _refusal(exc: InvalidStatus) -> AgentcellError:
    response = exc.response
    try:
        body = json.loads(response.body or b"")
        err = body.get("error") if isinstance(body, dict) else None
    except ValueError:
        err = None
    if not isinstance(err, dict):
        err = {"message": f"HTTP {response.status_code}: the server refused the terminal"}
    return error_from(err, response.status_code)
