"""Server-sent events as the API sends them (exec output, chat turns): one event, its headers."""

from __future__ import annotations

import json

# No caching, and no buffering by a proxy in front (nginx's header): each event goes out at once.
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def sse(event: str, data: object) -> bytes:
    """One event: its name, and its data as compact JSON on one line."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()
