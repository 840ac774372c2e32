"""Clients that stall or vanish: request bodies that trickle in, streams nobody reads, and JSON
execs whose caller hung up. Each is cut off, and the work done for it in the cell stops."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from contextlib import aclosing
from typing import TypeVar

from fastapi import Request
from fastapi.responses import StreamingResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agentcell.api import errors
from agentcell.errors import RequestTimeout

log = logging.getLogger(__name__)
T = TypeVar("T")
CLIENT_CLOSED = 499  # the status of an answer nobody waited for (nginx's name for it)


class BodyTimeout:
    """A request body must keep coming: a pause longer than ``idle_s``, or an average below
    ``min_rate`` bytes/s once ``idle_s`` have passed, is answered 408 and the connection closed.
    The app sees the client go away, so whatever the body fed (an upload) is dropped."""

    def __init__(self, app: ASGIApp, idle_s: float, min_rate: int) -> None:
        self.app = app
        self.idle_s = idle_s
        self.min_rate = min_rate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        received = 0
        body_done = False
        refused = False

        def patience() -> float:
            if not self.min_rate:
                return self.idle_s
            due = started + self.idle_s + received / self.min_rate  # when the rate falls short
            return min(self.idle_s, due - time.monotonic())

        async def timed_receive() -> Message:
            nonlocal received, body_done, refused
            if body_done or refused:
                return await receive()  # after the body only http.disconnect comes: no limit
            try:
                async with asyncio.timeout(max(patience(), 0)):
                    message = await receive()
            except TimeoutError:
                refused = True
                await self._refuse(scope, send, received)
                return {"type": "http.disconnect"}
            received += len(message.get("body", b""))
            body_done = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        async def guarded_send(message: Message) -> None:
            if not refused:  # once refused, the app's own answer to a vanished client is dropped
                await send(message)

        await self.app(scope, timed_receive, guarded_send)

    async def _refuse(self, scope: Scope, send: Send, received: int) -> None:
        log.info("request body too slow: %s after %d bytes", scope["path"], received)
        rate = f", or slower than {self.min_rate} bytes/s on average" if self.min_rate else ""
        exc = RequestTimeout(
            f"the request body stopped coming: it paused for more than {self.idle_s:g} s{rate} "
            f"(got {received} bytes); nothing was written"
        )
        response = errors.error_response(
            exc.status_code, exc.code, exc.message, exc.hint, headers={"Connection": "close"}
        )

        async def nothing() -> Message:
            return {"type": "http.disconnect"}

        await response(scope, nothing, send)


class TimedStreamingResponse(StreamingResponse):
    """A stream whose client takes no data for ``send_timeout_s`` is given up: the body's
    iterator is closed (which stops its exec in the cell) and the connection dropped.
    ``on_close`` runs once the response is over, however it ends."""

    def __init__(
        self,
        content: AsyncGenerator[bytes, None],
        send_timeout_s: float,
        media_type: str | None,
        headers: Mapping[str, str] | None = None,
        on_close: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        super().__init__(content, media_type=media_type, headers=headers)
        self.send_timeout_s = send_timeout_s
        self._content = content
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            if self._on_close is not None:
                await self._on_close()

    async def stream_response(self, send: Send) -> None:
        async def timed_send(message: Message) -> None:
            async with asyncio.timeout(self.send_timeout_s):
                await send(message)

        async with aclosing(self._content):
            try:
                await super().stream_response(timed_send)
            except TimeoutError:
                log.info("stream stalled: the client took nothing for %g s", self.send_timeout_s)


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T | None:
    """Run ``work``; if the client hangs up first, cancel it (closing the executor connection
    stops the code in the cell) and answer None. The body must have been read already."""
    task = asyncio.ensure_future(work)
    watch = asyncio.ensure_future(_disconnected(request.receive))
    try:
        await asyncio.wait((task, watch), return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    return task.result() if not task.cancelled() else None


async def _disconnected(receive: Callable[[], Awaitable[Message]]) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
