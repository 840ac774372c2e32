"""Files in the caller's workspace (``services.files``): paths are relative to it."""

from __future__ import annotations

import mimetypes
from pathlib import PurePosixPath
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse

from agentcell.api.deps import CurrentUser, ServicesDep, SettingsDep
from agentcell.api.publish import file_list
from agentcell.api.streams import TimedStreamingResponse
from agentcell.executor.protocol import LIST_PAGE, LIST_PAGE_MAX
from agentcell.schemas import FileList, FilesExtracted, FileWritten
from agentcell.services.files import Download

router = APIRouter(prefix="/v1/files", tags=["files"])

PathQuery = Annotated[str, Query(description="relative to the workspace", max_length=4096)]


def _attachment(name: str) -> dict[str, str]:
    return {"Content-Disposition": f"attachment; filename*=UTF-8''{quote(name)}"}


def _streamed(
    download: Download, settings: SettingsDep, media_type: str, name: str
) -> TimedStreamingResponse:
    chunks = download.chunks
    return TimedStreamingResponse(
        chunks.items,
        settings.stream_send_timeout_s,
        media_type,
        _attachment(name),
        on_close=chunks.close,
    )


@router.get("")
async def list_files(
    user: CurrentUser,
    services: ServicesDep,
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
    path, page = await services.files.page(user.id, path, limit, cursor)
    return file_list(path, page)


@router.get("/raw", response_class=StreamingResponse, responses={200: {"content": {"*/*": {}}}})
async def download(
    user: CurrentUser, services: ServicesDep, settings: SettingsDep, path: PathQuery
) -> StreamingResponse:
    found = await services.files.download(user.id, path)
    media = mimetypes.guess_type(found.path)[0] or "application/octet-stream"
    return _streamed(found, settings, media, PurePosixPath(found.path).name)


_UPLOAD_BODY = {
    "description": "the file's bytes",
    "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
}


@router.put("/raw", status_code=201, openapi_extra={"requestBody": _UPLOAD_BODY})
async def upload(
    request: Request, user: CurrentUser, services: ServicesDep, path: PathQuery
) -> FileWritten:
    """Write the request body to ``path`` (replaced atomically; parents are created)."""
    declared = request.headers.get("content-length", "")
    size = int(declared) if declared.isdigit() else None
    path, written = await services.files.upload(user.id, path, request.stream(), size)
    return FileWritten(path=path, size=written)


_ARCHIVE_BODY = {
    "description": "the archive's bytes: a ZIP, or a tar (plain, gzip, bzip2 or xz)",
    "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
}


@router.post("/extract", status_code=201, openapi_extra={"requestBody": _ARCHIVE_BODY})
async def extract(
    request: Request, user: CurrentUser, services: ServicesDep, path: PathQuery = "."
) -> FilesExtracted:
    """Unpack the request body, a ZIP or a tar (plain, gzip, bzip2 or xz: told by its
    content), into the folder ``path`` (made if missing), inside the cell. The whole archive is
    checked before anything is written: an entry that is absolute, leaves the folder, is a link,
    a device or a FIFO answers 400 ``unsafe_archive``; past the entry, size or ratio limits 413
    ``archive_too_large``; not an archive (or a damaged one) 400 ``invalid_archive``; an entry
    meeting a file where it is a folder (or the reverse, or a link) 409 ``conflict``; each
    naming the entry. Files that exist are replaced; folders are merged."""
    declared = request.headers.get("content-length", "")
    size = int(declared) if declared.isdigit() else None
    return await services.files.extract(user.id, path, request.stream(), size)


@router.delete("", status_code=204)
async def delete(
    user: CurrentUser, services: ServicesDep, path: PathQuery, recursive: bool = False
) -> Response:
    await services.files.delete(user.id, path, recursive=recursive)
    return Response(status_code=204)


@router.get(
    "/zip", response_class=StreamingResponse, responses={200: {"content": {"application/zip": {}}}}
)
async def zip_folder(
    user: CurrentUser, services: ServicesDep, settings: SettingsDep, path: PathQuery = "."
) -> StreamingResponse:
    """A ZIP of a folder, streamed. Links and special files are left out."""
    found = await services.files.zip(user.id, path)
    name = "workspace" if found.path == "." else PurePosixPath(found.path).name
    return _streamed(found, settings, "application/zip", f"{name}.zip")
