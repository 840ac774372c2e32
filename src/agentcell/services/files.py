"""Files in the caller's workspace. Paths are relative to it; the cell's executor does the work,
so the host never follows a link planted in a workspace."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import PurePosixPath

from agentcell.config import Settings
from agentcell.errors import FileTooLarge, InvalidPath, PayloadTooLarge
from agentcell.executor.protocol import Entries, Extract
from agentcell.sandbox.service import CellHandle
from agentcell.schemas import FilesExtracted
from agentcell.services.audit import Audit
from agentcell.services.cells import Cells, CellStream

NAME_MAX = 255  # bytes in one name, on the file systems a workspace lives on


def checked(path: str, *, allow_root: bool = True) -> str:
    """The path, normalised; refused when it can never be inside the workspace, before the
    cell is even asked."""
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


@dataclass(frozen=True)
class Download:
    path: str  # as ``checked`` made it
    chunks: CellStream[bytes]


class Files:
    def __init__(self, cells: Cells, settings: Settings, audit: Audit) -> None:
        self._cells, self._settings, self._audit = cells, settings, audit

    async def page(self, owner: str, path: str, limit: int, cursor: str) -> tuple[str, Entries]:
        """One page of a folder's entries by name; ``next_cursor`` asks for the next."""
        path = checked(path)
        async with self._cells.using(owner) as cell:
            return path, await cell.files.page(path, limit, cursor)

    async def download(self, owner: str, path: str) -> Download:
        path = checked(path, allow_root=False)
        limit = self._settings.max_download_bytes
        hint = (
            "read the part you need in the cell (e.g. head -c), or ask for a larger "
            "AGENTCELL_MAX_DOWNLOAD_BYTES"
        )
        return await self._stream(owner, path, lambda cell: cell.files.read(path, limit), hint)

    async def zip(self, owner: str, path: str) -> Download:
        """A ZIP of a folder, streamed. Links and special files are left out."""
        path = checked(path)
        limit = self._settings.max_zip_bytes
        hint = "zip a smaller folder, or ask for a larger AGENTCELL_MAX_ZIP_BYTES"
        return await self._stream(owner, path, lambda cell: cell.files.zip(path, limit), hint)

    async def _stream(
        self,
        owner: str,
        path: str,
        open_stream: Callable[[CellHandle], AsyncGenerator[bytes, None]],
        hint: str,
    ) -> Download:
        """Errors (not found, too large) come before the first byte: the caller can still
        answer them as such."""
        try:
            chunks = await self._cells.stream(owner, open_stream, prefetch=True)
        except FileTooLarge as exc:
            raise FileTooLarge(exc.message, hint=hint) from None
        return Download(path, chunks)

    async def upload(
        self, owner: str, path: str, body: AsyncIterable[bytes], declared_size: int | None = None
    ) -> tuple[str, int]:
        """Write ``body`` to ``path`` (replaced atomically; parents are created): the path as
        written, and its size."""
        path = checked(path, allow_root=False)
        data = self._limited(body, declared_size, "split the file, or ask for a larger limit")
        async with self._cells.using(owner) as cell:
            size = await cell.files.write(path, data)
        await self._audit.record(owner, "file.write", target=path, detail=f"{size} bytes")
        return path, size

    async def extract(
        self, owner: str, path: str, body: AsyncIterable[bytes], declared_size: int | None = None
    ) -> FilesExtracted:
        """Unpack the archive ``body`` (ZIP or tar, plain or compressed) into the folder
        ``path``, made if missing, inside the cell: nothing is written unless the whole archive
        passes (no entry leaving the folder, no links, devices or FIFOs, within the entry, size
        and ratio limits). Files that exist are replaced, folders merged."""
        path = checked(path)
        hint = "split the archive, or ask for a larger AGENTCELL_MAX_UPLOAD_BYTES"
        data = self._limited(body, declared_size, hint)
        s = self._settings
        req = Extract(path, s.max_extract_entries, s.max_extract_bytes, s.max_extract_ratio)
        async with self._cells.using(owner) as cell:
            done = await cell.files.extract(req, data)
        detail = f"{done.entries} entries, {done.size} bytes"
        await self._audit.record(owner, "file.extract", target=path, detail=detail)
        return FilesExtracted(path=path, entries=done.entries, bytes=done.size)

    def _limited(
        self, body: AsyncIterable[bytes], declared_size: int | None, hint: str
    ) -> AsyncIterator[bytes]:
        """``body``, refused (413) once past the upload limit: up front by its declared size,
        else as it streams (the executor then drops what it received: nothing is written)."""
        limit = self._settings.max_upload_bytes
        too_large = PayloadTooLarge(f"uploads are limited to {limit} bytes", hint=hint)
        if declared_size is not None and declared_size > limit:
            raise too_large

        async def limited() -> AsyncIterator[bytes]:
            total = 0
            async for chunk in body:
                total += len(chunk)
                if total > limit:
                    raise too_large
                yield chunk

        return limited()

    async def delete(self, owner: str, path: str, *, recursive: bool = False) -> None:
        path = checked(path, allow_root=False)
        async with self._cells.using(owner) as cell:
            await cell.files.delete(path, recursive=recursive)
        await self._audit.record(owner, "file.delete", target=path, detail=f"recursive={recursive}")
