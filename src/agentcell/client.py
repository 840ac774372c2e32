"""Python client for API v1 (DESIGN §7), sync (``Client``) and async (``AsyncClient``).

    with Client() as c:                  # AGENTCELL_URL, AGENTCELL_API_KEY (ClientSettings)
        print(c.exec("print(6*7)").stdout)
        for event in c.exec_stream("for i in range(3): print(i)"):
            print(event)                 # StdoutEvent / StderrEvent ..., then ExitEvent

Both clients share the calls (``_Api``) and differ only in how they send them. An error
answer raises the ``AgentcellError`` subclass named by its ``code`` (with the server's
``status_code``, ``message`` and ``hint``); a server that does not answer raises
``ServerUnreachable``. Uploads and downloads are streamed in chunks, never held whole.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Generic, Literal, TypeAlias, TypeVar

import httpx
from pydantic import BaseModel, TypeAdapter

from agentcell.api.schemas import (
    AdminCell,
    AuditPage,
    CellPublic,
    ExecResponse,
    ExitEvent,
    FileList,
    FileWritten,
    Health,
    Me,
    ReapResult,
    UserCreated,
    UserPublic,
)
from agentcell.config import ClientSettings
from agentcell.errors import AgentcellError, PathNotFound

__all__ = [
    "AsyncClient",
    "Client",
    "ExecEvent",
    "ExitEvent",
    "ServerUnreachable",
    "StderrEvent",
    "StdoutEvent",
]

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
Auth = Literal["user", "admin", "optional"]
Upload: TypeAlias = bytes | IO[bytes] | Path
Dest: TypeAlias = str | Path | IO[bytes]
CHUNK = 64 * 1024
SSE = "text/event-stream"


class ServerUnreachable(AgentcellError, ConnectionError):
    status_code = 503
    code = "server_unreachable"
    hint = "start it with scripts/serve (or agentcell serve), or point AGENTCELL_URL at it"


@dataclass(frozen=True, slots=True)
class StdoutEvent:
    data: str


@dataclass(frozen=True, slots=True)
class StderrEvent:
    data: str


ExecEvent: TypeAlias = StdoutEvent | StderrEvent | ExitEvent


# --- errors ------------------------------------------------------------------------------------


def error_classes() -> dict[str, type[AgentcellError]]:
    """Every AgentcellError subclass by its ``code``; the class that sets a code wins over its
    subclasses that inherit it. Built per call, so subclasses imported later count too."""
    found: dict[str, type[AgentcellError]] = {}
    todo: list[type[AgentcellError]] = [AgentcellError]
    while todo:
        cls = todo.pop(0)
        if "code" in vars(cls):
            found.setdefault(cls.code, cls)
        todo.extend(cls.__subclasses__())
    return found


def error_from(body: Any, status_code: int | None = None, files: bool = False) -> AgentcellError:
    """The exception for an error body ``{"code", "message", "hint"}``; ``files``: a missing
    path raises PathNotFound (a FileNotFoundError)."""
    code = str(body.get("code") or AgentcellError.code)
    message = str(body.get("message") or code)
    hint = str(body.get("hint") or "") or None
    cls = error_classes().get(code, AgentcellError)
    if files and code == PathNotFound.code:
        cls = PathNotFound
    try:
        exc = cls(message, hint=hint)
    except TypeError:  # a subclass that needs more than a message
        exc = AgentcellError(message, hint=hint)
    exc.code = code
    if status_code is not None:
        exc.status_code = status_code
    return exc


def _raise_for(response: httpx.Response, call: _Call[Any]) -> None:
    """Raise the error an unsuccessful response carries. Its body must have been read."""
    if response.is_success or response.status_code in call.accept:
        return
    try:
        body = response.json()
    except ValueError:
        body = None
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict):
        text = " ".join(response.text.split())[:200] or response.reason_phrase
        err = {"code": AgentcellError.code, "message": f"HTTP {response.status_code}: {text}"}
    raise error_from(err, response.status_code, call.path.startswith("/v1/files"))


@contextmanager
def _transport_errors(url: str) -> Iterator[None]:
    """httpx's transport errors, as ours."""
    try:
        yield
    except (httpx.ConnectError, httpx.ConnectTimeout) as e:
        reason = str(e).split("] ")[-1] or type(e).__name__
        raise ServerUnreachable(f"the agentcell server is not reachable at {url} ({reason})") from e
    except httpx.UnsupportedProtocol as e:
        raise AgentcellError(
            f"{url} is not an http:// or https:// URL", hint="set AGENTCELL_URL to http://HOST:PORT"
        ) from e
    except httpx.TimeoutException as e:
        raise AgentcellError(
            f"the agentcell server at {url} did not answer in time ({type(e).__name__})",
            hint="retry; a slow server or network may need a larger AGENTCELL_TIMEOUT_S",
        ) from e
    except httpx.TransportError as e:
        raise AgentcellError(
            f"the connection to the agentcell server at {url} failed: {e or type(e).__name__}",
            hint="retry; if it persists, see the server's log",
        ) from e


# --- server-sent events ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    event: str
    data: str
    id: str = ""


@dataclass
class SSEParser:
    """The text/event-stream format, line by line (WHATWG HTML §9.2.6), minus ``retry``."""

    _event: str = ""
    _data: list[str] = field(default_factory=list)
    _id: str = ""

    def feed(self, line: str) -> ServerSentEvent | None:
        """Take one line (without its end); a blank line completes an event."""
        if not line:
            sse = ServerSentEvent(self._event or "message", "\n".join(self._data), self._id)
            had_data = bool(self._data)
            self._event, self._data = "", []
            return sse if had_data else None
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self._id = value
        return None


def exec_event(sse: ServerSentEvent) -> ExecEvent | None:
    """The event an exec stream's SSE event stands for; ``error`` raises; unknown ones: None."""
    if sse.event == "stdout":
        return StdoutEvent(json.loads(sse.data)["data"])
    if sse.event == "stderr":
        return StderrEvent(json.loads(sse.data)["data"])
    if sse.event == "exit":
        return ExitEvent.model_validate_json(sse.data)
    if sse.event == "error":
        raise error_from(json.loads(sse.data))
    return None


class _ExecEvents:
    """An exec stream's lines in, output events out; the exit event is kept until the end."""

    def __init__(self) -> None:
        self._parser = SSEParser()
        self._exit: ExitEvent | None = None

    def feed(self, line: str) -> StdoutEvent | StderrEvent | None:
        sse = self._parser.feed(line)
        event = exec_event(sse) if sse and self._exit is None else None
        if isinstance(event, ExitEvent):
            self._exit = event
            return None
        return event

    def exit(self) -> ExitEvent:
        if self._exit is None:
            raise AgentcellError(
                "the exec stream ended before its exit event",
                hint="the server or the connection went away; see the audit log, then retry",
            )
        return self._exit


# --- the calls ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Call(Generic[T]):
    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    auth: Auth = "user"
    params: dict[str, Any] | None = None
    json: Any = None
    content: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    long: bool = False  # the answer may take as long as the work: no read timeout
    accept: frozenset[int] = frozenset()  # error statuses whose body is still the answer


def _model(model: type[M]) -> Callable[[httpx.Response], M]:
    return lambda r: model.model_validate_json(r.content)


def _nothing(_response: httpx.Response) -> None:
    return None


def _stream_only(_response: httpx.Response) -> None:
    raise AssertionError("streamed calls are read by the caller")


def _text(response: httpx.Response) -> str:
    return response.text


_USERS = TypeAdapter(list[UserPublic])
_CELLS = TypeAdapter(list[AdminCell])


def _users(response: httpx.Response) -> list[UserPublic]:
    return _USERS.validate_json(response.content)


def _admin_cells(response: httpx.Response) -> list[AdminCell]:
    return _CELLS.validate_json(response.content)


class _Api:
    """API v1 as data. Clients send these; they never build requests themselves."""

    me = _Call("GET", "/v1/me", _model(Me))
    users_list = _Call("GET", "/v1/users", _users, "admin")
    cell = _Call("GET", "/v1/cell", _model(CellPublic))
    cell_restart = _Call("POST", "/v1/cell/restart", _model(CellPublic), long=True)
    cell_delete = _Call("DELETE", "/v1/cell", _nothing, long=True)
    admin_cells = _Call("GET", "/v1/admin/cells", _admin_cells, "admin")
    admin_reap = _Call("POST", "/v1/admin/cells/reap", _model(ReapResult), "admin", long=True)
    healthz = _Call("GET", "/healthz", _model(Health), "optional", accept=frozenset({503}))
    metrics = _Call("GET", "/metrics", _text, "optional")

    @staticmethod
    def users_add(name: str) -> _Call[UserCreated]:
        return _Call("POST", "/v1/users", _model(UserCreated), "admin", json={"name": name})

    @staticmethod
    def users_rm(user_id: str, delete_workspace: bool) -> _Call[None]:
        params = {"delete_workspace": delete_workspace}
        return _Call("DELETE", f"/v1/users/{user_id}", _nothing, "admin", params, long=True)

    @staticmethod
    def exec(
        code: str, language: str, timeout_s: float | None, context: str, *, stream: bool = False
    ) -> _Call[ExecResponse]:
        body: dict[str, Any] = {"language": language, "code": code, "context": context}
        if timeout_s is not None:
            body["timeout_s"] = timeout_s
        headers = {"Accept": SSE} if stream else {}
        return _Call(
            "POST", "/v1/cell/exec", _model(ExecResponse), json=body, headers=headers, long=True
        )

    @staticmethod
    def files_list(path: str | Path) -> _Call[FileList]:
        return _Call("GET", "/v1/files", _model(FileList), params={"path": str(path)})

    @staticmethod
    def files_raw(path: str | Path) -> _Call[None]:
        return _Call("GET", "/v1/files/raw", _stream_only, params={"path": str(path)})

    @staticmethod
    def files_zip(path: str | Path) -> _Call[None]:
        return _Call("GET", "/v1/files/zip", _stream_only, params={"path": str(path)}, long=True)

    @staticmethod
    def files_put(path: str | Path, content: Any, headers: dict[str, str]) -> _Call[FileWritten]:
        params = {"path": str(path)}
        parse = _model(FileWritten)
        return _Call("PUT", "/v1/files/raw", parse, params=params, content=content, headers=headers)

    @staticmethod
    def files_rm(path: str | Path, recursive: bool) -> _Call[None]:
        params = {"path": str(path), "recursive": recursive}
        return _Call("DELETE", "/v1/files", _nothing, params=params)

    @staticmethod
    def audit(limit: int, before: int | None) -> _Call[AuditPage]:
        params: dict[str, Any] = {"limit": limit}
        if before is not None:
            params["before"] = before
        return _Call("GET", "/v1/audit", _model(AuditPage), params=params)


_NO_TOKEN = {
    "user": (
        "no API key: set AGENTCELL_API_KEY",
        "an admin creates a user and its key with `agentcell users add NAME`",
    ),
    "admin": (
        "no admin token: set AGENTCELL_ADMIN_TOKEN",
        "the server keeps it in its data dir (admin_token) and prints it when first started",
    ),
}


class _Base:
    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        admin_token: str | None = None,
        timeout_s: float | None = None,
        settings: ClientSettings | None = None,
    ) -> None:
        settings = settings or ClientSettings()
        self.url = (url or settings.url).rstrip("/")
        self.api_key = settings.api_key if api_key is None else api_key
        self.admin_token = settings.admin_token if admin_token is None else admin_token
        self.timeout_s = timeout_s or settings.timeout_s

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    def _request_args(self, call: _Call[Any]) -> dict[str, Any]:
        timeout = httpx.Timeout(self.timeout_s, read=None) if call.long else self.timeout_s
        return {
            "method": call.method,
            "url": call.path,
            "params": call.params,
            "json": call.json,
            "content": call.content,
            "headers": {**self._auth(call.auth), **call.headers},
            "timeout": timeout,
        }

    def _auth(self, auth: Auth) -> dict[str, str]:
        if auth == "admin":
            token = self.admin_token or self.api_key
        else:
            token = self.api_key or self.admin_token
        if token:
            return {"Authorization": f"Bearer {token}"}
        if auth == "optional":
            return {}
        message, hint = _NO_TOKEN[auth]
        raise AgentcellError(message, hint=hint)


def _target(dest: str | Path) -> tuple[Path, Path]:
    """The file to write and the partial file to write it through (renamed when complete)."""
    path = Path(dest)
    return path, path.with_name(f".{path.name}.part")


@contextmanager
def _upload(data: Upload) -> Iterator[tuple[bytes | IO[bytes], dict[str, str]]]:
    """The body to send and its headers: a file's length is declared, so an upload over the
    server's limit is refused before it is sent."""
    if not isinstance(data, Path):
        yield data, {}
        return
    with data.open("rb") as f:
        yield f, {"Content-Length": str(os.fstat(f.fileno()).st_size)}


def _chunks(f: IO[bytes]) -> Iterator[bytes]:
    while chunk := f.read(CHUNK):
        yield chunk


async def _achunks(f: IO[bytes]) -> AsyncIterator[bytes]:
    while chunk := await asyncio.to_thread(f.read, CHUNK):
        yield chunk


# --- sync --------------------------------------------------------------------------------------


class Client(_Base):
    """Blocking client. ``with Client() as c: ...``, or call ``close()``."""

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        admin_token: str | None = None,
        timeout_s: float | None = None,
        settings: ClientSettings | None = None,
    ) -> None:
        super().__init__(
            url, api_key, admin_token=admin_token, timeout_s=timeout_s, settings=settings
        )
        self._http = httpx.Client(base_url=self.url, timeout=self.timeout_s)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, call: _Call[T]) -> T:
        with _transport_errors(self.url):
            response = self._http.request(**self._request_args(call))
        _raise_for(response, call)
        return call.parse(response)

    @contextmanager
    def _stream(self, call: _Call[Any]) -> Iterator[httpx.Response]:
        with _transport_errors(self.url), self._http.stream(**self._request_args(call)) as r:
            if not r.is_success:
                r.read()
                _raise_for(r, call)
            yield r

    def _save(self, call: _Call[None], dest: Dest) -> int:
        if not isinstance(dest, str | Path):
            with self._stream(call) as r:
                return sum(dest.write(chunk) for chunk in r.iter_bytes(CHUNK))
        path, part = _target(dest)
        try:
            with self._stream(call) as r, part.open("wb") as f:
                size = sum(f.write(chunk) for chunk in r.iter_bytes(CHUNK))
            part.replace(path)
        finally:
            part.unlink(missing_ok=True)
        return size

    def me(self) -> Me:
        return self._send(_Api.me)

    def users_add(self, name: str) -> UserCreated:
        return self._send(_Api.users_add(name))

    def users_list(self) -> list[UserPublic]:
        return self._send(_Api.users_list)

    def users_rm(self, user_id: str, delete_workspace: bool = False) -> None:
        self._send(_Api.users_rm(user_id, delete_workspace))

    def cell(self) -> CellPublic:
        return self._send(_Api.cell)

    def cell_restart(self) -> CellPublic:
        return self._send(_Api.cell_restart)

    def cell_delete(self) -> None:
        self._send(_Api.cell_delete)

    def exec(
        self,
        code: str,
        language: str = "python",
        timeout_s: float | None = None,
        context: str = "default",
    ) -> ExecResponse:
        return self._send(_Api.exec(code, language, timeout_s, context))

    def exec_stream(
        self,
        code: str,
        language: str = "python",
        timeout_s: float | None = None,
        context: str = "default",
    ) -> Iterator[ExecEvent]:
        """Output events as the code writes them, then one ExitEvent (the request is sent when
        iteration starts). An ``error`` event raises. The ExitEvent comes once the server has
        ended the response: the exec is then fully done (audited) and the connection reusable."""
        call = _Api.exec(code, language, timeout_s, context, stream=True)
        events = _ExecEvents()
        with self._stream(call) as r:
            for line in r.iter_lines():
                if event := events.feed(line):
                    yield event
        yield events.exit()

    def files_list(self, path: str | Path = ".") -> FileList:
        return self._send(_Api.files_list(path))

    def files_get(self, path: str | Path) -> bytes:
        with self._stream(_Api.files_raw(path)) as r:
            return r.read()

    def files_download(self, path: str | Path, dest: Dest) -> int:
        """Stream a file to ``dest`` (a path, written whole or not at all, or a binary file
        object); returns the byte count."""
        return self._save(_Api.files_raw(path), dest)

    def files_put(self, path: str | Path, data: Upload) -> FileWritten:
        with _upload(data) as (body, headers):
            content = body if isinstance(body, bytes) else _chunks(body)
            return self._send(_Api.files_put(path, content, headers))

    def files_rm(self, path: str | Path, recursive: bool = False) -> None:
        self._send(_Api.files_rm(path, recursive))

    def files_zip(self, path: str | Path, dest: Dest) -> int:
        """Stream a ZIP of ``path`` (a folder of the workspace) to ``dest``; see files_download."""
        return self._save(_Api.files_zip(path), dest)

    def audit(self, limit: int = 50, before: int | None = None) -> AuditPage:
        return self._send(_Api.audit(limit, before))

    def admin_cells(self) -> list[AdminCell]:
        return self._send(_Api.admin_cells)

    def admin_reap(self) -> ReapResult:
        return self._send(_Api.admin_reap)

    def healthz(self) -> Health:
        return self._send(_Api.healthz)

    def metrics(self) -> str:
        return self._send(_Api.metrics)


# --- async -------------------------------------------------------------------------------------


class AsyncClient(_Base):
    """The same calls as Client, awaited. ``async with AsyncClient() as c: ...``."""

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        admin_token: str | None = None,
        timeout_s: float | None = None,
        settings: ClientSettings | None = None,
    ) -> None:
        super().__init__(
            url, api_key, admin_token=admin_token, timeout_s=timeout_s, settings=settings
        )
        self._http = httpx.AsyncClient(base_url=self.url, timeout=self.timeout_s)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    async def _send(self, call: _Call[T]) -> T:
        with _transport_errors(self.url):
            response = await self._http.request(**self._request_args(call))
        _raise_for(response, call)
        return call.parse(response)

    async def _lines(self, call: _Call[Any]) -> AsyncGenerator[str, None]:
        with _transport_errors(self.url):
            async with self._http.stream(**self._request_args(call)) as r:
                await _acheck(r, call)
                async for line in r.aiter_lines():
                    yield line

    async def _chunks(self, call: _Call[Any]) -> AsyncIterator[bytes]:
        with _transport_errors(self.url):
            async with self._http.stream(**self._request_args(call)) as r:
                await _acheck(r, call)
                async for chunk in r.aiter_bytes(CHUNK):
                    yield chunk

    async def _save(self, call: _Call[None], dest: Dest) -> int:
        size = 0
        if not isinstance(dest, str | Path):
            async for chunk in self._chunks(call):
                size += await asyncio.to_thread(dest.write, chunk)
            return size
        path, part = _target(dest)
        try:
            with part.open("wb") as f:
                async for chunk in self._chunks(call):
                    size += await asyncio.to_thread(f.write, chunk)
            part.replace(path)
        finally:
            part.unlink(missing_ok=True)
        return size

    async def me(self) -> Me:
        return await self._send(_Api.me)

    async def users_add(self, name: str) -> UserCreated:
        return await self._send(_Api.users_add(name))

    async def users_list(self) -> list[UserPublic]:
        return await self._send(_Api.users_list)

    async def users_rm(self, user_id: str, delete_workspace: bool = False) -> None:
        await self._send(_Api.users_rm(user_id, delete_workspace))

    async def cell(self) -> CellPublic:
        return await self._send(_Api.cell)

    async def cell_restart(self) -> CellPublic:
        return await self._send(_Api.cell_restart)

    async def cell_delete(self) -> None:
        await self._send(_Api.cell_delete)

    async def exec(
        self,
        code: str,
        language: str = "python",
        timeout_s: float | None = None,
        context: str = "default",
    ) -> ExecResponse:
        return await self._send(_Api.exec(code, language, timeout_s, context))

    async def exec_stream(
        self,
        code: str,
        language: str = "python",
        timeout_s: float | None = None,
        context: str = "default",
    ) -> AsyncIterator[ExecEvent]:
        """See Client.exec_stream."""
        events = _ExecEvents()
        lines = self._lines(_Api.exec(code, language, timeout_s, context, stream=True))
        try:
            async for line in lines:
                if event := events.feed(line):
                    yield event
        finally:
            await lines.aclose()
        yield events.exit()

    async def files_list(self, path: str | Path = ".") -> FileList:
        return await self._send(_Api.files_list(path))

    async def files_get(self, path: str | Path) -> bytes:
        return b"".join([chunk async for chunk in self._chunks(_Api.files_raw(path))])

    async def files_download(self, path: str | Path, dest: Dest) -> int:
        return await self._save(_Api.files_raw(path), dest)

    async def files_put(self, path: str | Path, data: Upload) -> FileWritten:
        with _upload(data) as (body, headers):
            content = body if isinstance(body, bytes) else _achunks(body)
            return await self._send(_Api.files_put(path, content, headers))

    async def files_rm(self, path: str | Path, recursive: bool = False) -> None:
        await self._send(_Api.files_rm(path, recursive))

    async def files_zip(self, path: str | Path, dest: Dest) -> int:
        return await self._save(_Api.files_zip(path), dest)

    async def audit(self, limit: int = 50, before: int | None = None) -> AuditPage:
        return await self._send(_Api.audit(limit, before))

    async def admin_cells(self) -> list[AdminCell]:
        return await self._send(_Api.admin_cells)

    async def admin_reap(self) -> ReapResult:
        return await self._send(_Api.admin_reap)

    async def healthz(self) -> Health:
        return await self._send(_Api.healthz)

    async def metrics(self) -> str:
        return await self._send(_Api.metrics)


async def _acheck(response: httpx.Response, call: _Call[Any]) -> None:
    if not response.is_success:
        await response.aread()
        _raise_for(response, call)
