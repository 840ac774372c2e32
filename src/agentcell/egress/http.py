"""HTTP/1.1 as the proxy speaks it, on h11: reading a client's request head, answering a
refusal, carrying one exchange (request, response, bodies streamed) between a client and a
host, with the owner's secrets put into the request where they may go."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import h11

from agentcell.egress.context import Meter, SecretRule
from agentcell.egress.policy import matches

READ = 64 * 1024
HEAD_WAIT_S = 30.0
# Meant for the next hop only (RFC 9110 §7.6.1), or the proxy's own.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authorization",
        b"proxy-authenticate",
        b"te",
        b"trailer",
        b"upgrade",
        b"expect",
    }
)
Headers = list[tuple[bytes, bytes]]


class Refusal(Exception):
    """Answer the client ``status`` with ``reason`` and close: the connection goes no further."""

    def __init__(self, status: int, reason: str, verdict: str = "refused") -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.verdict = verdict


class Closed(Exception):
    """The other side closed the connection before a whole message came."""


async def next_event(conn: h11.Connection, reader: asyncio.StreamReader) -> h11.Event:
    """The next event of ``conn``, reading from ``reader`` as it needs."""
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await reader.read(READ)
            conn.receive_data(data)  # b"" tells h11 of the EOF
            if not data and conn.their_state is not h11.DONE:
                raise Closed()
            continue
        if event is h11.PAUSED:
            raise Closed()
        return event  # type: ignore[return-value]


async def read_request(conn: h11.Connection, reader: asyncio.StreamReader) -> h11.Request | None:
    """The client's next request head (None: it closed first). Refusal(400) on garbage."""
    try:
        async with asyncio.timeout(HEAD_WAIT_S):
            event = await next_event(conn, reader)
    except (Closed, ConnectionError):
        return None
    except TimeoutError:
        raise Refusal(408, "no request came in time") from None
    except h11.RemoteProtocolError as exc:
        raise Refusal(400, f"not an HTTP request ({exc}); use this as an HTTP proxy") from None
    if isinstance(event, h11.ConnectionClosed):
        return None
    if not isinstance(event, h11.Request):
        raise Refusal(400, "not an HTTP request")
    return event


def refusal_bytes(conn: h11.Connection, status: int, reason: str) -> bytes:
    """A refusal the client reads as the proxy's: ``agentcell egress: <reason>`` as its body
    (and in its reason phrase, which is all a client of a refused CONNECT shows)."""
    body = f"agentcell egress: {reason}\n".encode()
    phrase = f"agentcell egress: {reason}".encode("ascii", "replace")[:300]
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        (b"x-agentcell-egress", b"refused"),
        (b"connection", b"close"),
    ]
    try:
        return b"".join(
            [
                conn.send(h11.Response(status_code=status, headers=headers, reason=phrase)) or b"",
                conn.send(h11.Data(data=body)) or b"",
                conn.send(h11.EndOfMessage()) or b"",
            ]
        )
    except h11.LocalProtocolError:  # a response went out already: say it raw
        return b""


def put_secrets(
    headers: Sequence[tuple[bytes, bytes]], target: bytes, host: str, rules: Sequence[SecretRule]
) -> tuple[Headers, bytes, bool]:
    """Headers and target with each secret's placeholder replaced by its value where the host
    may have it; Refusal(403) where a placeholder goes to a host it may not. Whether any was
    put in."""
    out = list(headers)
    put = False
    for rule in rules:
        placeholder = rule.placeholder.encode()
        if placeholder not in target and not any(placeholder in v for _, v in out):
            continue
        if not any(matches(pattern, host) for pattern in rule.hosts):
            raise Refusal(
                403, f"secret {rule.name} may only be sent to {', '.join(rule.hosts)}, not {host}"
            )
        value = rule.value.encode()
        target = target.replace(placeholder, value)
        out = [(k, v.replace(placeholder, value)) for k, v in out]
        put = True
    return out, target, put


def forwarded_headers(headers: Sequence[tuple[bytes, bytes]], authority: bytes) -> Headers:
    """The request's end-to-end headers, Host set to the authority it goes to."""
    kept = [(k.lower(), v) for k, v in headers if k.lower() not in HOP_BY_HOP]
    return [(b"host", authority)] + [(k, v) for k, v in kept if k != b"host"]


class Exchange:
    """One request and its response between a client (a server-side h11 connection) and a
    host (a client-side one), bodies streamed and paced, bytes counted."""

    def __init__(
        self,
        client: h11.Connection,
        streams: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        upstream: h11.Connection,
        up_streams: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        meter: Meter,
        *,
        close: bool,
    ) -> None:
        self.close = close  # end the client's connection after this exchange
        self.client, (self.reader, self.writer) = client, streams
        self.upstream, (self.up_reader, self.up_writer) = upstream, up_streams
        self.meter = meter
        self.bytes_up = 0
        self.bytes_down = 0

    async def to_client(self, event: h11.Event) -> None:
        data = self.client.send(event) or b""
        self.writer.write(data)
        await self.writer.drain()
        self.bytes_down += len(data)
        await self._pace(len(data))

    async def to_host(self, event: h11.Event) -> None:
        data = self.upstream.send(event) or b""
        self.up_writer.write(data)
        await self.up_writer.drain()
        self.bytes_up += len(data)
        await self._pace(len(data))

    async def _pace(self, n: int) -> None:
        if wait := self.meter.take(n):
            await asyncio.sleep(wait)

    async def run(self, request: h11.Request, target: bytes, headers: Headers) -> None:
        expects = any(k.lower() == b"expect" for k, _ in request.headers)
        if expects:  # answered here: the host gets the body without asking
            await self.to_client(h11.InformationalResponse(status_code=100, headers=[]))
        await self.to_host(h11.Request(method=request.method, target=target, headers=headers))
        while True:
            event = await next_event(self.client, self.reader)
            if isinstance(event, h11.Data):
                await self.to_host(event)
            elif isinstance(event, h11.EndOfMessage):
                await self.to_host(event)
                break
        await self._response()

    async def _response(self) -> None:
        while True:
            try:
                event = await next_event(self.upstream, self.up_reader)
            except h11.RemoteProtocolError as exc:
                raise Refusal(502, f"the host answered no HTTP: {exc}", "failed") from None
            if isinstance(event, h11.InformationalResponse):
                continue  # the host's own 100 Continue: the client had ours
            if isinstance(event, h11.Response):
                headers = [(k, v) for k, v in event.headers if k.lower() not in HOP_BY_HOP]
                if self.close or _closes(event):
                    headers.append((b"connection", b"close"))
                await self.to_client(
                    h11.Response(
                        status_code=event.status_code, headers=headers, reason=event.reason
                    )
                )
            elif isinstance(event, h11.Data | h11.EndOfMessage):
                await self.to_client(event)
                if isinstance(event, h11.EndOfMessage):
                    return


def _closes(response: h11.Response) -> bool:
    """Whether the host closes after this response (so the client's connection ends too)."""
    said = b",".join(v.lower() for k, v in response.headers if k.lower() == b"connection")
    return b"close" in said or response.http_version != b"1.1"
