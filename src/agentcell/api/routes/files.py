"""Files in the caller's workspace. Paths are relative to it; the cell's executor does the work,
so the host never follows a link planted in a workspace."""

from __future__ import annotations

import mimetypes
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse

from agentcell.api.deps import CellsDep, CurrentUser, LimitsDep, SettingsDep, StoreDep
from agentcell.api.schemas import FileEntry, FileList, FileWritten
from agentcell.api.streams import TimedStreamingResponse
from agentcell.errors import FileTooLarge, InvalidPath, PayloadTooLarge
from agentcell.executor.protocol import LIST_PAGE, LIST_PAGE_MAX
from agentcell.sandbox.service import CellHandle

router = APIRouter(prefix="/v1/files", tags=["files"])

PathQuery = Annotated[str, Query(description="relative to the workspace", max_length=4096)]
NAME_MAX = 255  # bytes in one name, on the file systems a workspace lives on


def checked(path: str, *, allow_root: bool = True) -> str:
    """Refuse what can never be inside the workspace, before the cell is even asked."""
    if "\x00" in path:
        raise InvalidPath("the path contains a NUL byte")
    if path.startswith("/"):
        raise InvalidPath(f"absolute paths are not allowed: {path!r}")
    parts = PurePosixPath(path).parts
    if ".." in parts:
        raise InvalidPath(f"'..' is not allowed in paths: {path!r}")
    if any(len(part.encode()) > NAME_MAX for part in parts):
        raise InvalidPath(f"a name in the path is longer than {NAME_MAX} bytes")
    clean = str(PurePosixPath(*parts)) if parts else "."
    if clean == "." and not allow_root:
        raise InvalidPath("this needs a path inside the workspace, not the workspace itself")
    return clean


async def _prefetched(stream: AsyncGenerator[bytes, None]) -> AsyncGenerator[bytes, None]:
    """Start the stream now, so that errors (not found, not a file) become a proper 4xx."""
    first = await anext(stream, b"")

    async def rest() -> AsyncGenerator[bytes, None]:
        if first:
            yield first
        async for chunk in stream:
            yield chunk

    return rest()


def _attachment(name: str) -> dict[str, str]:
    return {"Content-Disposition": f"attachment; filename*=UTF-8''{quote(name)}"}


@router.get("")
async def list_files(
    user: CurrentUser,
    cells: CellsDep,
    limits: LimitsDep,
    path: PathQuery = ".",
    limit: Annotated[
        int, Query(ge=1, le=LIST_PAGE_MAX, description="entries per page (fewer if names are long)")
    ] = LIST_PAGE,
    cursor: Annotated[
        str, Query(max_length=2048, description="the next_cursor of the page before")
    ] = "",
) -> FileList:
    """A folder's entries by name, one page at a time: while ``next_cursor`` is set, pass it
    back as ``cursor`` for the next page."""
    path = checked(path)
    with limits.running.hold(user.id):
        page = await cells.list_page(user.id, path, limit, cursor)
    return FileList(
        path=path,
        entries=[
            FileEntry(
                name=e.name,
                path=e.path,
                type=e.type,
                size=e.size,
                modified_at=datetime.fromtimestamp(e.modified_at, UTC),
            )
            for e in page.entries
        ],
        next_cursor=page.next_cursor or None,
    )


async def _held_stream(
    user: str,
    cells: CellsDep,
    limits: LimitsDep,
    settings: SettingsDep,
    open_stream: Callable[[CellHandle], AsyncGenerator[bytes, None]],
    hint: str,
    media_type: str,
    name: str,
) -> TimedStreamingResponse:
    """A download from the cell, counted as running until it ends; errors (not found, too
    large) come before the first byte, as a proper 4xx."""
    limits.running.acquire(user)
    stream: AsyncGenerator[bytes, None] | None = None

    async def close() -> None:  # the cell's stream too, even if the response never started
        try:
            if stream is not None:
                await stream.aclose()
        finally:
            limits.running.release(user)

    try:
        await cells.ensure(user)
        stream = open_stream(CellHandle(cells, user))
        body = await _prefetched(stream)
    except FileTooLarge as exc:
        await close()
        raise FileTooLarge(exc.message, hint=hint) from None
    except BaseException:
        await close()
        raise
    return TimedStreamingResponse(
        body, settings.stream_send_timeout_s, media_type, _attachment(name), on_close=close
    )


@router.get("/raw", response_class=StreamingResponse, responses={200: {"content": {"*/*": {}}}})
async def download(
    user: CurrentUser, cells: CellsDep, limits: LimitsDep, settings: SettingsDep, path: PathQuery
) -> StreamingResponse:
    path = checked(path, allow_root=False)
    media = mimetypes.guess_type(path)[0] or "application/octet-stream"
    return await _held_stream(
        user.id,
        cells,
        limits,
        settings,
        lambda cell: cell.files.read(path, settings.max_download_bytes),
        "read the part you need in the cell (e.g. head -c), or ask for a larger "
        "AGENTCELL_MAX_DOWNLOAD_BYTES",
        media,
        PurePosixPath(path).name,
    )


_UPLOAD_BODY = {
    "description": "the file's bytes",
    "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
}


@router.put("/raw", status_code=201, openapi_extra={"requestBody": _UPLOAD_BODY})
async def upload(
    request: Request,
    user: CurrentUser,
    cells: CellsDep,
    store: StoreDep,
    settings: SettingsDep,
    limits: LimitsDep,
    path: PathQuery,
) -> FileWritten:
    """Write the request body to ``path`` (replaced atomically; parents are created)."""
    path = checked(path, allow_root=False)
    limit = settings.max_upload_bytes
    too_large = PayloadTooLarge(
        f"uploads are limited to {limit} bytes", hint="split the file, or ask for a larger limit"
    )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large

    async def body() -> AsyncIterator[bytes]:
        total = 0
        async for chunk in request.stream():
            total += len(chunk)
            if total > limit:
                raise too_large  # the executor drops its temp file: nothing is written
            yield chunk

    with limits.running.hold(user.id):
        size = await cells.write(user.id, path, body())
    await store.record(user.id, "file.write", target=path, detail=f"{size} bytes")
    return FileWritten(path=path, size=size)


@router.delete("", status_code=204)
async def delete(
    user: CurrentUser,
    cells: CellsDep,
    store: StoreDep,
    limits: LimitsDep,
    path: PathQuery,
    recursive: bool = False,
) -> Response:
    path = checked(path, allow_root=False)
    with limits.running.hold(user.id):
        await cells.delete(user.id, path, recursive=recursive)
    await store.record(user.id, "file.delete", target=path, detail=f"recursive={recursive}")
    return Response(status_code=204)


@router.get(
    "/zip", response_class=StreamingResponse, responses={200: {"content": {"application/zip": {}}}}
)
async def zip_folder(
    user: CurrentUser,
    cells: CellsDep,
    limits: LimitsDep,
    settings: SettingsDep,
    path: PathQuery = ".",
) -> StreamingResponse:
    """A ZIP of a folder, streamed. Links and special files are left out."""
    path = checked(path)
    name = "workspace" if path == "." else PurePosixPath(path).name
    return await _held_stream(
        user.id,
        cells,
        limits,
        settings,
        lambda cell: cell.files.zip(path, settings.max_zip_bytes),
        "zip a smaller folder, or ask for a larger AGENTCELL_MAX_ZIP_BYTES",
        "application/zip",
        f"{name}.zip",
    )
