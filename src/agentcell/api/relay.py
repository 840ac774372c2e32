"""The port relay's HTTP side (DESIGN §11): one request to ``/v1/cell/ports/{port}/...`` is
carried to the server listening on that port in the caller's cell, over a connection of its
own (``Connection: close``), with h11; a WebSocket is carried message by message, its
handshake with the server in the cell made with websockets' sans-I/O client. Bodies stream
both ways, each read taken only once the other side took the last (backpressure).

What reaches the cell is the request minus what is ours: the ``Authorization`` header (the
user's API key), our cookies (``agentcell*``: port cookies, the web page's session) and the
``token`` query parameter. The server in the cell is told the prefix it is reached under
(``X-Forwarded-Prefix``), as reverse proxies do.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable
from urllib.parse import parse_qsl, urlencode

import h11
from fastapi import WebSocket
from starlette.websockets import WebSocketDisconnect
from websockets.client import ClientProtocol
from websockets.datastructures import Headers as WsHeaders
from websockets.frames import CloseCode, Frame, Opcode
from websockets.http11 import Response as WsResponse
from websockets.typing import Subprotocol
from websockets.uri import parse_uri

from agentcell.api.browser import TOKEN_PARAM, first_of
from agentcell.errors import AgentcellError
from agentcell.executor.duplex import Duplex
from agentcell.services.tokens import PREFIX as TOKEN_PREFIX

PREFIX = "/v1/cell/ports/"
SMALL_BODY = 64 * 1024  # answers up to this long are read whole, then sent (no stream)
OUR_COOKIES = "agentcell"  # the prefix of every cookie of ours
READ_BYTES = 256 * 1024
HEAD_MAX = 64 * 1024  # the response head of a server in the cell
WS_MESSAGE_MAX = 16 * 1024 * 1024
Headers = list[tuple[bytes, bytes]]
# Meant for one hop only (RFC 9110 §7.6.1), or ours; h11 frames the bodies itself.
REQUEST_DROPPED = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"expect",
        b"authorization",
    }
)
RESPONSE_DROPPED = frozenset(
    {b"connection", b"keep-alive", b"proxy-authenticate", b"trailer", b"transfer-encoding"}
)
# What the WebSocket client sets itself (the key, our own extensions and subprotocols).
WS_OWN_HEADERS = frozenset(
    {
        b"host",
        b"sec-websocket-key",
        b"sec-websocket-version",
        b"sec-websocket-extensions",
        b"sec-websocket-protocol",
    }
)


class RelayFailed(AgentcellError):
    """The server in the cell did not answer in HTTP, or hung up before it answered."""

    status_code = 502
    code = "relay_failed"
    hint = "check the server's own log in the cell; the port relay speaks HTTP/1.1 to it"


def target_of(path: str, query: str) -> str:
    """The request target the server in the cell gets: the path, and the query as sent but for
    our token (an app's own ``token`` parameter, JupyterLab's say, is passed on)."""
    pairs = parse_qsl(query, keep_blank_values=True)
    kept = [(k, v) for k, v in pairs if not ours(k, v)]
    if len(kept) < len(pairs):
        query = urlencode(kept)
    return path + ("?" + query if query else "")


def ours(name: str, value: str) -> bool:
    return name == TOKEN_PARAM and value.startswith(TOKEN_PREFIX)


def without_our_cookies(value: bytes) -> bytes:
    kept = [c for c in value.split(b";") if not c.strip().startswith(OUR_COOKIES.encode())]
    return b";".join(kept).strip()


def upstream_headers(headers: Iterable[tuple[bytes, bytes]], prefix: str, scheme: str) -> Headers:
    out: Headers = []
    for name, value in headers:
        if name in REQUEST_DROPPED:
            continue
        if name == b"cookie" and not (value := without_our_cookies(value)):
            continue
        out.append((name, value))
    return [*out, (b"x-forwarded-proto", scheme.encode()), (b"x-forwarded-prefix", prefix.encode())]


class Upstream:
    """One HTTP/1.1 exchange with a server in the cell over a Duplex; ``done()`` once it ended
    cleanly, with the connection fit for another (keep-alive)."""

    def __init__(self, duplex: Duplex, port: int, done: Callable[[], None] = lambda: None) -> None:
        self.duplex = duplex
        self.port = port
        self.done = done
        self.complete = False  # the whole answer came
        self.conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=HEAD_MAX)

    async def send(self, event: h11.Event) -> None:
        if data := self.conn.send(event):
            await self.duplex.send(data)

    async def send_body(self, chunks: AsyncIterator[bytes]) -> None:
        """The request's body; a server that stops reading it (it answered early) ends it."""
        with contextlib.suppress(ConnectionError, h11.LocalProtocolError):
            async for chunk in chunks:
                if chunk:
                    await self.send(h11.Data(data=chunk))
            await self.send(h11.EndOfMessage())

    async def next_event(self) -> h11.Event:
        while (event := self.conn.next_event()) is h11.NEED_DATA:
            self.conn.receive_data(await self.duplex.recv(READ_BYTES))
        assert not isinstance(event, type)  # PAUSED: never, we send one request per connection
        return event

    async def response(self) -> h11.Response:
        try:
            while True:
                event = await self.next_event()
                if isinstance(event, h11.Response):
                    return event
                if isinstance(event, h11.ConnectionClosed):
                    raise RelayFailed(
                        f"the server on port {self.port} in the cell hung up without answering"
                    )
        except h11.RemoteProtocolError as exc:
            raise RelayFailed(
                f"the server on port {self.port} in the cell did not answer in HTTP/1.1: {exc}"
            ) from None
        except ConnectionError:
            raise RelayFailed(
                f"the server on port {self.port} in the cell reset the connection"
            ) from None

    async def body(self) -> AsyncGenerator[bytes, None]:
        """The response's body, as it comes; one cut short just ends (the client sees it)."""
        with contextlib.suppress(h11.RemoteProtocolError, ConnectionError):
            while isinstance(event := await self.next_event(), h11.Data):
                yield bytes(event.data)
            self.complete = isinstance(event, h11.EndOfMessage)
            if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
                self.done()  # and the connection may serve another (not after HTTP/1.0)


def small(response: h11.Response) -> bool:
    """A body of a known length that is read whole before it is passed on."""
    for name, value in response.headers:
        if name == b"content-length":
            return value.isdigit() and int(value) <= SMALL_BODY
    return False


def response_headers(response: h11.Response) -> Headers:
    return [(name, value) for name, value in response.headers if name not in RESPONSE_DROPPED]


# --- WebSockets ------------------------------------------------------------------------------


async def open_websocket(
    duplex: Duplex, host: str, target: str, headers: Headers, subprotocols: list[str]
) -> tuple[ClientProtocol, WsResponse]:
    """The WebSocket handshake with the server in the cell, as the browser asked for it."""
    protocol = ClientProtocol(
        parse_uri(f"ws://{host}{target}"),
        subprotocols=[Subprotocol(s) for s in subprotocols] or None,
        max_size=WS_MESSAGE_MAX,
    )
    request = protocol.connect()
    for name, value in headers:  # Origin too: servers check it against Host
        if name not in WS_OWN_HEADERS:
            request.headers[name.decode("latin-1")] = value.decode("latin-1")
    protocol.send_request(request)
    await flush(protocol, duplex)
    while True:
        data = await duplex.recv(READ_BYTES)
        if data:
            protocol.receive_data(data)
        else:
            protocol.receive_eof()
        for event in protocol.events_received():
            if isinstance(event, WsResponse):
                if protocol.handshake_exc is not None:
                    raise RelayFailed(
                        f"the server in the cell refused the WebSocket: {event.status_code} "
                        f"{event.reason_phrase}"
                    )
                return protocol, event
        if not data:
            raise RelayFailed("the server in the cell hung up during the WebSocket handshake")


async def flush(protocol: ClientProtocol, duplex: Duplex) -> None:
    for data in protocol.data_to_send():
        if data:
            await duplex.send(data)
        else:
            await duplex.send_eof()


def chosen_subprotocol(response: WsResponse) -> str | None:
    return WsHeaders(response.headers).get("Sec-WebSocket-Protocol")


async def relay_websocket(websocket: WebSocket, protocol: ClientProtocol, duplex: Duplex) -> None:
    """Carry messages both ways until either side closes; its close code goes to the other."""

    async def to_cell() -> None:
        while True:
            try:
                message = await websocket.receive()
            except WebSocketDisconnect:
                message = {"type": "websocket.disconnect", "code": CloseCode.GOING_AWAY}
            if message["type"] == "websocket.disconnect":
                code = message.get("code", CloseCode.NORMAL_CLOSURE)
                protocol.send_close(close_code(code))
                await flush(protocol, duplex)
                return
            if (text := message.get("text")) is not None:
                protocol.send_text(text.encode())
            else:
                protocol.send_binary(message.get("bytes") or b"")
            await flush(protocol, duplex)

    async def to_browser() -> None:
        parts: list[bytes] = []
        opcode = Opcode.BINARY
        while data := await duplex.recv(READ_BYTES):
            protocol.receive_data(data)
            for frame in protocol.events_received():
                assert isinstance(frame, Frame)
                if frame.opcode is Opcode.CLOSE:
                    code = protocol.close_rcvd.code if protocol.close_rcvd else 1000
                    await flush(protocol, duplex)
                    await websocket.close(code)
                    return
                if frame.opcode in (Opcode.TEXT, Opcode.BINARY):
                    opcode, parts = frame.opcode, []
                if frame.opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CONT):
                    parts.append(bytes(frame.data))
                    if frame.fin:
                        await send_message(websocket, opcode, b"".join(parts))
            await flush(protocol, duplex)  # pongs, close answers
        await websocket.close(CloseCode.GOING_AWAY)  # it hung up without a close frame

    await first_of(to_cell(), to_browser())


async def send_message(websocket: WebSocket, opcode: Opcode, data: bytes) -> None:
    if opcode is Opcode.TEXT:
        await websocket.send_text(data.decode(errors="replace"))
    else:
        await websocket.send_bytes(data)


def close_code(code: int) -> int:
    """A close code that may be sent on the wire (1005, 1006 and 1015 may not)."""
    return CloseCode.GOING_AWAY if code in (1005, 1006, 1015) or code < 1000 else code
