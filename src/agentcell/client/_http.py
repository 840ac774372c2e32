"""What both clients share: API v1 as data (``Api``: one ``Call`` per request, built once),
the request arguments and credentials (``BaseClient``), error mapping, and the helpers for
uploads and downloads. The clients only send the calls, each with its own I/O."""

from __future__ import annotations

import asyncio
import functools
import os
import ssl
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Generic, Literal, TypeAlias, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, TypeAdapter

from agentcell.client._jobs import JobSpec, job_or_schedule, jobs, log_from, schedules
from agentcell.config import ClientSettings
from agentcell.errors import AgentcellError, RateLimited, ServerUnreachable, error_class
from agentcell.schemas import (
    AdminCell,
    AdminCellState,
    AdminNetwork,
    AuditPage,
    CellDesktop,
    CellJupyter,
    CellNetwork,
    CellPort,
    CellProcess,
    CellPublic,
    ChatReply,
    ExecResponse,
    FileList,
    FilesExtracted,
    FileWritten,
    Health,
    JobLogChunk,
    JobPublic,
    Me,
    MessagePublic,
    NetworkPolicy,
    NewKey,
    PortToken,
    ReapResult,
    SchedulePublic,
    SecretList,
    SecretPublic,
    SessionPublic,
    TerminalSession,
    UserCreated,
    UserPublic,
)

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
H = TypeVar("H", httpx.Client, httpx.AsyncClient)


def tls_for(url: str) -> ssl.SSLContext:
    """What a client verifies TLS with. httpx would build a context, CA bundle and all, for
    every client (tens of milliseconds); here ``https://`` shares one a process, made on first
    use, and ``http://`` gets a bare one that is never used."""
    return _verifying() if url.startswith("https://") else _unused()


@functools.cache
def _verifying() -> ssl.SSLContext:
    return httpx.create_ssl_context()


@functools.cache
def _unused() -> ssl.SSLContext:
    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


Auth = Literal["user", "admin", "optional"]
Upload: TypeAlias = bytes | IO[bytes] | Path
Dest: TypeAlias = str | Path | IO[bytes]
CHUNK = 64 * 1024
SSE = "text/event-stream"
FOLLOW_IDLE_S = 60.0  # a followed log without a byte (not even a heartbeat) this long: dropped


# --- errors ------------------------------------------------------------------------------------


def error_from(
    body: Any, status_code: int | None = None, files: bool = False, retry_after_s: float = 0.0
) -> AgentcellError:
    """The exception for an error body ``{"code", "message", "hint"}``; ``files``: a missing
    path raises PathNotFound (a FileNotFoundError); a RateLimited one (429) gets the answer's
    Retry-After as its ``retry_after_s``."""
    code = str(body.get("code") or AgentcellError.code)
    message = str(body.get("message") or code)
    hint = str(body.get("hint") or "") or None
    cls = error_class(code, paths=files)
    try:
        if issubclass(cls, RateLimited):
            exc: AgentcellError = cls(message, retry_after_s=retry_after_s, hint=hint)
        else:
            exc = cls(message, hint=hint)
    except TypeError:  # a subclass that needs more than a message
        exc = AgentcellError(message, hint=hint)
    exc.code = code
    if status_code is not None:
        exc.status_code = status_code
    return exc


def raise_for(response: httpx.Response, call: Call[Any]) -> None:
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
    files = call.path.startswith("/v1/files")
    raise error_from(err, response.status_code, files, _retry_after(response))


def _retry_after(response: httpx.Response) -> float:
    try:
        return max(0.0, float(response.headers.get("Retry-After", "0")))
    except ValueError:  # an HTTP date: not what our server sends
        return 0.0


@contextmanager
def transport_errors(url: str) -> Iterator[None]:
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


# --- the calls ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call(Generic[T]):
    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    auth: Auth = "user"
    params: dict[str, Any] | None = None
    json: Any = None
    content: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    long: bool = False  # the answer may take as long as the work: no read timeout
    idle_s: float | None = None  # long: a read this long without a byte is a dropped link
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
_SESSIONS = TypeAdapter(list[SessionPublic])
_MESSAGES = TypeAdapter(list[MessagePublic])
_PROCESSES = TypeAdapter(list[CellProcess])
_PORTS = TypeAdapter(list[CellPort])
_TERMINALS = TypeAdapter(list[TerminalSession])


def _users(response: httpx.Response) -> list[UserPublic]:
    return _USERS.validate_json(response.content)


def _admin_cells(response: httpx.Response) -> list[AdminCell]:
    return _CELLS.validate_json(response.content)


def _secrets(response: httpx.Response) -> list[SecretPublic]:
    return SecretList.model_validate_json(response.content).secrets


def _sessions(response: httpx.Response) -> list[SessionPublic]:
    return _SESSIONS.validate_json(response.content)


def _messages(response: httpx.Response) -> list[MessagePublic]:
    return _MESSAGES.validate_json(response.content)


def _processes(response: httpx.Response) -> list[CellProcess]:
    return _PROCESSES.validate_json(response.content)


def _ports(response: httpx.Response) -> list[CellPort]:
    return _PORTS.validate_json(response.content)


def _terminals(response: httpx.Response) -> list[TerminalSession]:
    return _TERMINALS.validate_json(response.content)


def _session_path(session_id: str, rest: str = "") -> str:
    return f"/v1/sessions/{quote(session_id, safe='')}{rest}"


def _job_path(job_id: str, rest: str = "") -> str:
    return f"/v1/jobs/{quote(job_id, safe='')}{rest}"


def _schedule_path(schedule_id: str, rest: str = "") -> str:
    return f"/v1/schedules/{quote(schedule_id, safe='')}{rest}"


class Api:
    """API v1 as data. Clients send these; they never build requests themselves."""

    me = Call("GET", "/v1/me", _model(Me))
    users_list = Call("GET", "/v1/users", _users, "admin")
    cell = Call("GET", "/v1/cell", _model(CellPublic))
    cell_restart = Call("POST", "/v1/cell/restart", _model(CellPublic), long=True)
    cell_delete = Call("DELETE", "/v1/cell", _nothing, long=True)
    admin_cells = Call("GET", "/v1/admin/cells", _admin_cells, "admin")
    admin_reap = Call("POST", "/v1/admin/cells/reap", _model(ReapResult), "admin", long=True)
    healthz = Call("GET", "/healthz", _model(Health), "optional", accept=frozenset({503}))
    network = Call("GET", "/v1/cell/network", _model(CellNetwork))
    network_reset = Call("DELETE", "/v1/cell/network", _model(CellNetwork))
    admin_network = Call("GET", "/v1/admin/network", _model(AdminNetwork), "admin")
    secrets_list = Call("GET", "/v1/secrets", _secrets)
    metrics = Call("GET", "/metrics", _text, "optional")

    @staticmethod
    def users_add(name: str) -> Call[UserCreated]:
        return Call("POST", "/v1/users", _model(UserCreated), "admin", json={"name": name})

    @staticmethod
    def user_key(user_id: str) -> Call[NewKey]:
        return Call("POST", f"/v1/users/{quote(user_id, safe='')}/key", _model(NewKey), "admin")

    my_key = Call("POST", "/v1/me/key", _model(NewKey))

    @staticmethod
    def admin_cell(user_id: str, action: str) -> Call[AdminCellState]:
        path = f"/v1/admin/cells/{quote(user_id, safe='')}/{action}"
        return Call("POST", path, _model(AdminCellState), "admin", long=True)

    @staticmethod
    def users_rm(user_id: str, delete_workspace: bool) -> Call[None]:
        params = {"delete_workspace": delete_workspace}
        return Call("DELETE", f"/v1/users/{user_id}", _nothing, "admin", params, long=True)

    @staticmethod
    def exec(
        code: str,
        language: str,
        timeout_s: float | None,
        context: str,
        *,
        stream: bool = False,
        background: bool = False,
    ) -> Call[ExecResponse]:
        body: dict[str, Any] = {"language": language, "code": code, "context": context}
        if timeout_s is not None:
            body["timeout_s"] = timeout_s
        if background:
            body["background"] = True
        headers = {"Accept": SSE} if stream else {}
        return Call(
            "POST", "/v1/cell/exec", _model(ExecResponse), json=body, headers=headers, long=True
        )

    processes = Call("GET", "/v1/cell/processes", _processes)

    @staticmethod
    def process_kill(pid: int) -> Call[None]:
        return Call("DELETE", f"/v1/cell/processes/{int(pid)}", _nothing)

    ports = Call("GET", "/v1/cell/ports", _ports)

    @staticmethod
    def port_token(port: int) -> Call[PortToken]:
        return Call("POST", "/v1/cell/port-tokens", _model(PortToken), json={"port": port})

    terminals = Call("GET", "/v1/cell/terminals", _terminals)
    desktop = Call("GET", "/v1/cell/desktop", _model(CellDesktop), long=True)
    jupyter = Call("POST", "/v1/cell/jupyter", _model(CellJupyter), long=True)

    @staticmethod
    def terminal_close(terminal_id: str) -> Call[TerminalSession]:
        path = f"/v1/cell/terminals/{quote(terminal_id, safe='')}"
        return Call("DELETE", path, _model(TerminalSession))

    @staticmethod
    def files_list(path: str | Path, cursor: str | None = None) -> Call[FileList]:
        params = {"path": str(path)} | ({"cursor": cursor} if cursor else {})
        return Call("GET", "/v1/files", _model(FileList), params=params)

    @staticmethod
    def files_raw(path: str | Path) -> Call[None]:
        return Call("GET", "/v1/files/raw", _stream_only, params={"path": str(path)})

    @staticmethod
    def files_zip(path: str | Path) -> Call[None]:
        return Call("GET", "/v1/files/zip", _stream_only, params={"path": str(path)}, long=True)

    @staticmethod
    def files_put(path: str | Path, content: Any, headers: dict[str, str]) -> Call[FileWritten]:
        params = {"path": str(path)}
        parse = _model(FileWritten)
        return Call("PUT", "/v1/files/raw", parse, params=params, content=content, headers=headers)

    @staticmethod
    def files_extract(
        path: str | Path, content: Any, headers: dict[str, str]
    ) -> Call[FilesExtracted]:
        params, parse = {"path": str(path)}, _model(FilesExtracted)
        return Call(
            "POST", "/v1/files/extract", parse, params=params, content=content, headers=headers,
            long=True,  # it answers once the cell has unpacked it all
        )  # fmt: skip

    @staticmethod
    def files_rm(path: str | Path, recursive: bool) -> Call[None]:
        params = {"path": str(path), "recursive": recursive}
        return Call("DELETE", "/v1/files", _nothing, params=params)

    sessions_list = Call("GET", "/v1/sessions", _sessions)

    @staticmethod
    def sessions_create(title: str) -> Call[SessionPublic]:
        return Call("POST", "/v1/sessions", _model(SessionPublic), json={"title": title})

    @staticmethod
    def sessions_get(session_id: str) -> Call[SessionPublic]:
        return Call("GET", _session_path(session_id), _model(SessionPublic))

    @staticmethod
    def sessions_rm(session_id: str) -> Call[None]:
        return Call("DELETE", _session_path(session_id), _nothing)

    @staticmethod
    def sessions_messages(session_id: str) -> Call[list[MessagePublic]]:
        return Call("GET", _session_path(session_id, "/messages"), _messages)

    @staticmethod
    def chat(session_id: str, content: str, *, stream: bool = False) -> Call[ChatReply]:
        headers = {"Accept": SSE} if stream else {}
        path = _session_path(session_id, "/messages")
        body = {"content": content}
        return Call("POST", path, _model(ChatReply), json=body, headers=headers, long=True)

    @staticmethod
    def jobs_run(spec: JobSpec) -> Call[JobPublic | SchedulePublic]:
        return Call("POST", "/v1/jobs", job_or_schedule, json=spec.body())

    @staticmethod
    def jobs_list(state: str | None, limit: int | None) -> Call[list[JobPublic]]:
        params: dict[str, Any] = {"state": state, "limit": limit}
        params = {k: v for k, v in params.items() if v is not None}
        return Call("GET", "/v1/jobs", jobs, params=params)

    @staticmethod
    def jobs_get(job_id: str) -> Call[JobPublic]:
        return Call("GET", _job_path(job_id), _model(JobPublic))

    @staticmethod
    def jobs_cancel(job_id: str) -> Call[JobPublic]:
        return Call("POST", _job_path(job_id, "/cancel"), _model(JobPublic), long=True)

    @staticmethod
    def jobs_retry(job_id: str) -> Call[JobPublic]:
        return Call("POST", _job_path(job_id, "/retry"), _model(JobPublic))

    @staticmethod
    def jobs_rm(job_id: str) -> Call[None]:
        return Call("DELETE", _job_path(job_id), _nothing, long=True)

    @staticmethod
    def jobs_log(job_id: str, offset: int) -> Call[JobLogChunk]:
        params = {"offset": offset}
        return Call("GET", _job_path(job_id, "/logs"), log_from(offset), params=params)

    @staticmethod
    def jobs_follow(job_id: str, offset: int) -> Call[None]:
        """The log as SSE from ``offset`` on, following it until the job ends. The server sends
        a heartbeat every 15 s: a minute of silence is a connection that died unnoticed."""
        headers = {"Accept": SSE, "Last-Event-ID": str(offset)}
        params = {"offset": offset}
        path = _job_path(job_id, "/logs")
        return Call(
            "GET",
            path,
            _stream_only,
            params=params,
            headers=headers,
            long=True,
            idle_s=FOLLOW_IDLE_S,
        )

    @staticmethod
    def jobs_artifacts(job_id: str) -> Call[None]:
        return Call("GET", _job_path(job_id, "/artifacts"), _stream_only, long=True)

    schedules_list = Call("GET", "/v1/schedules", schedules)

    @staticmethod
    def schedules_get(schedule_id: str) -> Call[SchedulePublic]:
        return Call("GET", _schedule_path(schedule_id), _model(SchedulePublic))

    @staticmethod
    def schedules_pause(schedule_id: str) -> Call[SchedulePublic]:
        return Call("POST", _schedule_path(schedule_id, "/pause"), _model(SchedulePublic))

    @staticmethod
    def schedules_resume(schedule_id: str) -> Call[SchedulePublic]:
        return Call("POST", _schedule_path(schedule_id, "/resume"), _model(SchedulePublic))

    @staticmethod
    def schedules_rm(schedule_id: str) -> Call[None]:
        return Call("DELETE", _schedule_path(schedule_id), _nothing)

    @staticmethod
    def audit(limit: int, before: int | None, kind: str = "") -> Call[AuditPage]:
        params: dict[str, Any] = {"limit": limit}
        if before is not None:
            params["before"] = before
        if kind:
            params["kind"] = kind
        return Call("GET", "/v1/audit", _model(AuditPage), params=params)

    @staticmethod
    def network_set(policy: NetworkPolicy) -> Call[CellNetwork]:
        return Call("PUT", "/v1/cell/network", _model(CellNetwork), json=policy.model_dump())

    @staticmethod
    def admin_network_set(network: AdminNetwork) -> Call[AdminNetwork]:
        body = network.model_dump()
        return Call("PUT", "/v1/admin/network", _model(AdminNetwork), "admin", json=body)

    @staticmethod
    def secrets_set(name: str, value: str, hosts: Sequence[str]) -> Call[SecretPublic]:
        body = {"value": value, "hosts": list(hosts)}
        return Call("PUT", f"/v1/secrets/{quote(name, safe='')}", _model(SecretPublic), json=body)

    @staticmethod
    def secrets_rm(name: str) -> Call[None]:
        return Call("DELETE", f"/v1/secrets/{quote(name, safe='')}", _nothing)


# --- what a client is, but for its I/O ---------------------------------------------------------

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


class BaseClient(Generic[H]):
    """Settings, credentials and request arguments; a subclass opens its httpx client ``H``."""

    _http: H

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
        self._http = self._open()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    def _open(self) -> H:
        raise NotImplementedError

    def _request_args(self, call: Call[Any]) -> dict[str, Any]:
        timeout = httpx.Timeout(self.timeout_s, read=call.idle_s) if call.long else self.timeout_s
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


# --- uploads and downloads ---------------------------------------------------------------------


@contextmanager
def upload(data: Upload) -> Iterator[tuple[bytes | IO[bytes], dict[str, str]]]:
    """The body to send and its headers: a file's length is declared, so an upload over the
    server's limit is refused before it is sent."""
    if not isinstance(data, Path):
        yield data, {}
        return
    with data.open("rb") as f:
        yield f, {"Content-Length": str(os.fstat(f.fileno()).st_size)}


def chunks(f: IO[bytes]) -> Iterator[bytes]:
    while chunk := f.read(CHUNK):
        yield chunk


async def achunks(f: IO[bytes]) -> AsyncIterator[bytes]:
    while chunk := await asyncio.to_thread(f.read, CHUNK):
        yield chunk


@contextmanager
def download_to(dest: Dest) -> Iterator[IO[bytes]]:
    """The file object a download is written to: ``dest`` itself, or for a path a partial file
    beside it, renamed to it once complete (so it is written whole or not at all)."""
    if not isinstance(dest, str | Path):
        yield dest
        return
    path = Path(dest)
    part = path.with_name(f".{path.name}.part")
    try:
        with part.open("wb") as f:
            yield f
        part.replace(path)
    finally:
        part.unlink(missing_ok=True)


def joined(first: FileList, rest: list[FileList]) -> FileList:
    """The pages of one listing as one, with no next_cursor."""
    entries = [e for page in (first, *rest) for e in page.entries]
    return FileList(path=first.path, entries=entries)
