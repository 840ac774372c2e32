"""The web page's numbers (DESIGN §8, §12) in real Chromium against a server started here with
a scripted model, each beside its floor measured in the same run.

Rows: time to interactive of the chat page on loopback (signed in; the chat view mounted: its
sessions listed, the input ready), beside the page's HTML arriving (the navigation's
responseEnd) — and the delay from the server sending a streamed text event (the ASGI send of
its SSE bytes, stamped in the server) to that text being on screen (the animation frame after
the page drew it, stamped in the page; the same machine's clock).

Usage: scripts/bench web [--quick].
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import docker
import httpx
import uvicorn
from playwright.sync_api import Page, sync_playwright
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart
from pydantic_ai.models.function import AgentInfo, DeltaToolCalls, FunctionModel
from rich.console import Console
from rich.table import Table
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agentcell.api.app import create_app
from agentcell.api.auth import ensure_admin_token
from agentcell.config import Settings
from bench.api import pct, remove_users

console = Console(width=160)
PIECE_GAP_S = 0.02  # a model streaming 50 pieces a second


class SentTimes:
    """Stamps (epoch ms) each SSE text event of a chat turn as the server hands it to the
    connection."""

    def __init__(self, app: ASGIApp) -> None:
        self.app, self.stamps = app, list[float]()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def stamped(message: Message) -> None:
            await send(message)
            if message["type"] == "http.response.body" and b"event: text" in message.get(
                "body", b""
            ):
                self.stamps.append(time.time() * 1000)

        await self.app(scope, receive, stamped if scope["type"] == "http" else send)


def streaming_model(pieces: int) -> FunctionModel:
    async def answer(_messages: list[ModelMessage], _info: AgentInfo) -> ModelResponse:
        return ModelResponse(parts=[TextPart("unused")])

    async def stream(
        _messages: list[ModelMessage], _info: AgentInfo
    ) -> AsyncIterator[str | DeltaToolCalls]:
        for i in range(pieces):
            await asyncio.sleep(PIECE_GAP_S)
            yield f"word{i} "

    return FunctionModel(answer, stream_function=stream)


@contextlib.contextmanager
def server(data_dir: Path, pieces: int) -> Iterator[tuple[str, str, SentTimes]]:
    settings = Settings(
        data_dir=data_dir,
        instance_id=f"bench-web-{data_dir.name}",
        pool_size=0,
        labels={"agentcell.bench": "1"},
    )
    token, _ = ensure_admin_token(settings)
    app = create_app(settings)
    app.state.model_factory = lambda _settings: streaming_model(pieces)
    sent = SentTimes(app)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    uv = uvicorn.Server(uvicorn.Config(sent, log_config=None, access_log=False))
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not uv.started:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", token, sent
    finally:
        uv.should_exit = True
        thread.join(timeout=60)
        label = {"label": f"agentcell.instance={settings.instance}"}
        for container in docker.from_env().containers.list(all=True, filters=label):
            container.remove(force=True)


def interactive(page: Page, url: str, n: int) -> tuple[list[float], list[float]]:
    """Reloads of the signed-in chat page: (until interactive, until the HTML arrived), ms."""
    ready, html = [], []
    for i in range(n):
        page.goto(f"{url}/?load={i}#/chat")  # a new document each time
        page.wait_for_function("() => performance.getEntriesByName('agentcell:view').length > 0")
        ready.append(page.evaluate("performance.getEntriesByName('agentcell:view')[0].startTime"))
        html.append(page.evaluate("performance.getEntriesByType('navigation')[0].responseEnd"))
    return ready, html


def stream_delays(page: Page, sent: SentTimes, turns: int) -> list[float]:
    delays = []
    for turn in range(turns):
        page.evaluate("window.agentcellShown.length = 0")
        sent.stamps.clear()
        page.fill("#chat-input", f"turn {turn}")
        page.click("#chat-send")
        page.wait_for_selector(f".message.assistant.finished >> nth={turn}", timeout=120_000)
        page.wait_for_timeout(200)  # the last frame
        shown = page.evaluate("window.agentcellShown.slice()")
        if len(shown) != len(sent.stamps):
            raise SystemExit(f"{len(sent.stamps)} text events sent, {len(shown)} shown")
        delays += [s - t for s, t in zip(shown, sent.stamps, strict=True)]
    return delays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    loads, turns, pieces = (10, 1, 60) if args.quick else (40, 3, 200)
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    with tempfile.TemporaryDirectory() as tmp, server(Path(tmp), pieces) as (url, admin, sent):
        made = httpx.post(
            f"{url}/v1/users", json={"name": "web"}, headers={"Authorization": f"Bearer {admin}"}
        ).json()
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_page()
            page.goto(url + "/")
            page.get_by_label("API key").fill(made["api_key"])
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_selector("#chat-input")
            interactive(page, url, 3)  # warm: the cell, the browser's cache
            ready, html = interactive(page, url, loads)
            delays = stream_delays(page, sent, turns)
            browser.close()
        with httpx.Client(base_url=url, timeout=60) as client:
            remove_users(client, {"Authorization": f"Bearer {admin}"})  # workspaces: loop mounts
    table = Table(title=f"web page (Chromium, loopback; {loads} loads, {len(delays)} text events)")
    for column in ("what", "p50 ms", "p99 ms", "target"):
        table.add_column(column, justify="right" if column != "what" else "left")
    rows = (
        ("page HTML arrived (floor)", html, ""),
        ("chat page interactive", ready, "≤ 300 ms"),
        ("streamed text: sent → on screen", delays, "≤ 50 ms"),
    )
    for what, samples, target in rows:
        table.add_row(what, f"{pct(samples, 0.5):.1f}", f"{pct(samples, 0.99):.1f}", target)
    console.print(table)


if __name__ == "__main__":
    main()
