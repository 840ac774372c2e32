"""Files in the caller's workspace. Paths are relative to it; the cell's executor does the work,
so the host never follows a link planted in a workspace."""

from __future__ import annotations

import mimetypes
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse

from agentcell.api.deps import CellsDep, CurrentUser, SettingsDep, StoreDep
from agentcell.api.schemas import FileEntry, FileList, FileWritten
from agentcell.errors import InvalidPath, PayloadTooLarge

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


async def _prefetched(stream: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Start the stream now, so that errors (not found, not a file) become a proper 4xx."""
    first = await anext(stream, b"")

    async def rest() -> AsyncIterator[bytes]:
        if first:
            yield first
        async for chunk in stream:
            yield chunk

    return rest()


def _attachment(name: str) -> dict[str, str]:
    return {"Content-Disposition": f"attachment; filename*=UTF-8''{quote(name)}"}


@router.get("")
async def list_files(user: CurrentUser, cells: CellsDep, path: PathQuery = ".") -> FileList:
    path = checked(path)
    cell = await cells.ensure(user.id)
    entries = await cell.files.list(path)
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
            for e in entries
        ],
    )


@router.get("/raw", response_class=StreamingResponse, responses={200: {"content": {"*/*": {}}}})
async def download(user: CurrentUser, cells: CellsDep, path: PathQuery) -> StreamingResponse:
    path = checked(path, allow_root=False)
    cell = await cells.ensure(user.id)
    body = await _prefetched(cell.files.read(path))
    media = mimetypes.guess_type(path)[0] or "application/octet-stream"
    return StreamingResponse(body, media_type=media, headers=_attachment(PurePosixPath(path).name))


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

    cell = await cells.ensure(user.id)
    size = await cell.files.write(path, body())
    await store.record(user.id, "file.write", target=path, detail=f"{size} bytes")
    return FileWritten(path=path, size=size)


@router.delete("", status_code=204)
async def delete(
    user: CurrentUser, cells: CellsDep, store: StoreDep, path: PathQuery, recursive: bool = False
) -> Response:
    path = checked(path, allow_root=False)
    cell = await cells.ensure(user.id)
    await cell.files.delete(path, recursive=recursive)
    await store.record(user.id, "file.delete", target=path, detail=f"recursive={recursive}")
    return Response(status_code=204)


@router.get(
    "/zip", response_class=StreamingResponse, responses={200: {"content": {"application/zip": {}}}}
)
async def zip_folder(
    user: CurrentUser, cells: CellsDep, path: PathQuery = "."
) -> StreamingResponse:
    """A ZIP of a folder, streamed. Links and special files are left out."""
    path = checked(path)
    cell = await cells.ensure(user.id)
    body = await _prefetched(cell.files.zip(path))
    name = "workspace" if path == "." else PurePosixPath(path).name
    return StreamingResponse(body, media_type="application/zip", headers=_attachment(f"{name}.zip"))
