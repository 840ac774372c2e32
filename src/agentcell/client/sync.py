"""The blocking client: ``Api`` calls sent with ``httpx.Client``."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import httpx

from agentcell.client._http import (
    CHUNK,
    Api,
    BaseClient,
    Call,
    Dest,
    T,
    Upload,
    chunks,
    download_to,
    joined,
    raise_for,
    tls_for,
    transport_errors,
    upload,
)
from agentcell.client._jobs import JobSpec
from agentcell.client._sse import (
    FOLLOW_RETRIES,
    ChatEvent,
    ChatEvents,
    ExecEvent,
    ExecEvents,
    JobLogEvent,
    LogFollow,
)
from agentcell.client._terminal import Terminal
from agentcell.errors import AgentcellError
from agentcell.schemas import (
    AdminCell,
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
    JobKind,
    JobLogChunk,
    JobPublic,
    JobState,
    Language,
    Me,
    MessagePublic,
    NetworkPolicy,
    PortToken,
    ReapResult,
    SchedulePublic,
    SecretPublic,
    SessionPublic,
    TerminalSession,
    UserCreated,
    UserPublic,
)


class Client(BaseClient[httpx.Client]):
    """Blocking client. ``with Client() as c: ...``, or call ``close()``."""

    def _open(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=self.timeout_s, verify=tls_for(self.url))

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, call: Call[T]) -> T:
        with transport_errors(self.url):
            response = self._http.request(**self._request_args(call))
        raise_for(response, call)
        return call.parse(response)

    @contextmanager
    def _stream(self, call: Call[Any]) -> Iterator[httpx.Response]:
        with transport_errors(self.url), self._http.stream(**self._request_args(call)) as r:
            if not r.is_success:
                r.read()
                raise_for(r, call)
            yield r

    def _save(self, call: Call[None], dest: Dest) -> int:
        with self._stream(call) as r, download_to(dest) as f:
            return sum(f.write(chunk) for chunk in r.iter_bytes(CHUNK))

    def me(self) -> Me:
        return self._send(Api.me)

    def users_add(self, name: str) -> UserCreated:
        return self._send(Api.users_add(name))

    def users_list(self) -> list[UserPublic]:
        return self._send(Api.users_list)

    def users_rm(self, user_id: str, delete_workspace: bool = False) -> None:
        self._send(Api.users_rm(user_id, delete_workspace))

    def cell(self) -> CellPublic:
        return self._send(Api.cell)

    def cell_restart(self) -> CellPublic:
        return self._send(Api.cell_restart)

    def cell_delete(self) -> None:
        self._send(Api.cell_delete)

    def exec(
        self,
        code: str,
        language: str = "python",
        timeout_s: float | None = None,
        context: str = "default",
        *,
        background: bool = False,
    ) -> ExecResponse:
        """``background``: keep the processes it leaves running (else killed at its end)."""
        call = Api.exec(code, language, timeout_s, context, background=background)
        return self._send(call)

    def processes(self) -> list[CellProcess]:
        """The processes background execs kept running in your cell."""
        return self._send(Api.processes)

    def process_kill(self, pid: int) -> None:
        """Kill a kept process and everything it started."""
        self._send(Api.process_kill(pid))

    def ports(self) -> list[CellPort]:
        """The TCP ports listening in your cell, each with its relay path."""
        return self._send(Api.ports)

    def port_url(self, port: int, path: str = "") -> str:
        """The URL that reaches ``path`` on ``port`` in your cell (send your API key with it,
        or open ``port_token(port).url`` in a browser)."""
        return f"{self.url}/v1/cell/ports/{int(port)}/{path.lstrip('/')}"

    def port_token(self, port: int) -> PortToken:
        """A short-lived token for a browser to open ``port``: its ``url`` (on the server's
        preview address when it has one, else a path of this server) trades it for a cookie
        of that port's."""
        return self._send(Api.port_token(port))

    def desktop(self) -> CellDesktop:
        """Start your cell's live desktop (full image) unless it runs: ``url`` (a path of this
        server, with a short-lived token) watches it in a browser."""
        return self._send(Api.desktop)

    def jupyter(self) -> CellJupyter:
        """Start JupyterLab in your cell (full image) unless it runs: ``browser_url`` (with a
        short-lived token, on the server's preview address when it has one) opens it in a
        browser."""
        return self._send(Api.jupyter)

    def terminals(self) -> list[TerminalSession]:
        """Your cell's terminals (``agentcell shell``'s, the web page's)."""
        return self._send(Api.terminals)

    def terminal_close(self, terminal_id: str) -> TerminalSession:
        """End a terminal; its last state holds the exit code."""
        return self._send(Api.terminal_close(terminal_id))

    def terminal(self, session: str | None = None, cols: int = 80, rows: int = 24) -> Terminal:
        """Attach to a new terminal in your cell, or to ``session`` (one ``terminals()``
        lists): ``with client.terminal() as t: t.send(b"ls\\n"); t.recv()``."""
        key = self._auth("user")["Authorization"].split(" ", 1)[1]
        return Terminal.open(self.url, key, session, cols, rows, self.timeout_s)

    def exec_stream(
        self,
        code: str,
        language: str = "python",
        timeout_s: float | None = None,
        context: str = "default",
        *,
        background: bool = False,
    ) -> Iterator[ExecEvent]:
        """Output events as the code writes them, then one ExitEvent (the request is sent when
        iteration starts). An ``error`` event raises. The ExitEvent comes once the server has
        ended the response: the exec is then fully done (audited) and the connection reusable."""
        events = ExecEvents()
        with self._stream(
            Api.exec(code, language, timeout_s, context, stream=True, background=background)
        ) as r:
            for line in r.iter_lines():
                if event := events.feed(line):
                    yield event
        yield events.exit()

    def files_list(self, path: str | Path = ".") -> FileList:
        """Every entry of a folder (or the one file), following the server's pages."""
        page = self._send(Api.files_list(path))
        rest: list[FileList] = []
        cursor = page.next_cursor
        while cursor:
            rest.append(self._send(Api.files_list(path, cursor)))
            cursor = rest[-1].next_cursor
        return joined(page, rest)

    def files_get(self, path: str | Path) -> bytes:
        with self._stream(Api.files_raw(path)) as r:
            return r.read()

    def files_download(self, path: str | Path, dest: Dest) -> int:
        """Stream a file to ``dest`` (a path, written whole or not at all, or a binary file
        object); returns the byte count."""
        return self._save(Api.files_raw(path), dest)

    def files_put(self, path: str | Path, data: Upload) -> FileWritten:
        with upload(data) as (body, headers):
            content = body if isinstance(body, bytes) else chunks(body)
            return self._send(Api.files_put(path, content, headers))

    def files_extract(self, archive: Upload | str, path: str | Path = ".") -> FilesExtracted:
        """Unpack an archive (a local file's path, its bytes or a binary file object: a ZIP, or
        a tar plain or compressed) into the workspace folder ``path``, made if missing. Nothing
        is written unless the whole archive passes; files that exist are replaced."""
        with upload(Path(archive) if isinstance(archive, str) else archive) as (body, headers):
            content = body if isinstance(body, bytes) else chunks(body)
            return self._send(Api.files_extract(path, content, headers))

    def files_rm(self, path: str | Path, recursive: bool = False) -> None:
        self._send(Api.files_rm(path, recursive))

    def files_zip(self, path: str | Path, dest: Dest) -> int:
        """Stream a ZIP of ``path`` (a folder of the workspace) to ``dest``; see files_download."""
        return self._save(Api.files_zip(path), dest)

    def sessions_create(self, title: str = "") -> SessionPublic:
        """A new chat session; without a title, its first message names it."""
        return self._send(Api.sessions_create(title))

    def sessions_list(self) -> list[SessionPublic]:
        """Your sessions, most recently used first."""
        return self._send(Api.sessions_list)

    def sessions_get(self, session_id: str) -> SessionPublic:
        return self._send(Api.sessions_get(session_id))

    def sessions_rm(self, session_id: str) -> None:
        """Delete the session and its messages (a turn running in it is stopped)."""
        self._send(Api.sessions_rm(session_id))

    def sessions_messages(self, session_id: str) -> list[MessagePublic]:
        """The session's messages, oldest first, each answer with the events of its turn."""
        return self._send(Api.sessions_messages(session_id))

    def chat(self, session_id: str, content: str) -> ChatReply:
        """Send a message and wait for the agent's final reply (kept in the session by then)."""
        return self._send(Api.chat(session_id, content))

    def chat_stream(self, session_id: str, content: str) -> Iterator[ChatEvent]:
        """The turn's events as the agent works (ChatAgent, ChatToolCall, ChatToolResult,
        ChatText pieces), then one ChatDone; an ``error`` event raises. Leaving the loop early
        closes the stream, which stops the turn; nothing of it is kept then."""
        events = ChatEvents()
        with self._stream(Api.chat(session_id, content, stream=True)) as r:
            for line in r.iter_lines():
                if event := events.feed(line):
                    yield event
        events.check_done()

    def jobs_run(
        self,
        kind: JobKind = "exec",
        *,
        code: str | None = None,
        file: str | None = None,
        prompt: str | None = None,
        language: Language | None = None,
        name: str | None = None,
        timeout_s: float | None = None,
        output_dir: str | None = None,
        at: datetime | str | None = None,
        cron: str | None = None,
        tz: str | None = None,
    ) -> JobPublic | SchedulePublic:
        """Hand work off: an exec job (``code`` in ``language``, or a workspace ``file``) or an
        agent job (``prompt``). It starts now (the JobPublic, queued or running), or ``at`` a
        time (a naive datetime is this host's local time) or by ``cron`` in ``tz``: then the
        SchedulePublic that starts it."""
        spec = JobSpec(
            kind, code, file, prompt, language, name, timeout_s, output_dir, at, cron, tz
        )
        return self._send(Api.jobs_run(spec))

    def jobs_list(self, state: JobState | None = None, limit: int | None = None) -> list[JobPublic]:
        """Your jobs, newest first; ``state`` keeps those in it."""
        return self._send(Api.jobs_list(state, limit))

    def jobs_get(self, job_id: str) -> JobPublic:
        """The job, with its state changes (``events``)."""
        return self._send(Api.jobs_get(job_id))

    def jobs_cancel(self, job_id: str) -> JobPublic:
        """Stop a queued or running job; Conflict once it has ended."""
        return self._send(Api.jobs_cancel(job_id))

    def jobs_retry(self, job_id: str) -> JobPublic:
        """A new job that runs the same work again (``attempt`` + 1, ``retry_of``)."""
        return self._send(Api.jobs_retry(job_id))

    def jobs_rm(self, job_id: str) -> None:
        self._send(Api.jobs_rm(job_id))

    def jobs_log(self, job_id: str, offset: int = 0) -> JobLogChunk:
        """The log from byte ``offset`` to its end so far, and the offset after it."""
        return self._send(Api.jobs_log(job_id, offset))

    def jobs_follow(
        self, job_id: str, offset: int = 0, *, retries: int = FOLLOW_RETRIES
    ) -> Iterator[JobLogEvent]:
        """The log from ``offset`` as the job writes it (JobLogChunk), then one JobLogEnd once
        the job has ended. A dropped connection is resumed where it stopped (up to ``retries``
        times in a row, backing off); an error answer raises. Leaving the loop stops following,
        not the job."""
        follow = LogFollow(offset, retries)
        while True:
            error: AgentcellError | None = None
            try:
                with self._stream(Api.jobs_follow(job_id, follow.offset)) as r:
                    follow.connected()
                    for line in r.iter_lines():
                        if event := follow.feed(line):
                            yield event
                        if follow.end is not None:
                            return
            except AgentcellError as exc:
                error = exc
            time.sleep(follow.dropped(error))

    def jobs_download(self, job_id: str, dest: Dest) -> int:
        """Stream the job's output folder as a ZIP to ``dest``; see files_download."""
        return self._save(Api.jobs_artifacts(job_id), dest)

    def schedules_list(self) -> list[SchedulePublic]:
        return self._send(Api.schedules_list)

    def schedules_get(self, schedule_id: str) -> SchedulePublic:
        return self._send(Api.schedules_get(schedule_id))

    def schedules_pause(self, schedule_id: str) -> SchedulePublic:
        """No more fires until resumed (a job it started goes on)."""
        return self._send(Api.schedules_pause(schedule_id))

    def schedules_resume(self, schedule_id: str) -> SchedulePublic:
        return self._send(Api.schedules_resume(schedule_id))

    def schedules_rm(self, schedule_id: str) -> None:
        self._send(Api.schedules_rm(schedule_id))

    def audit(self, limit: int = 50, before: int | None = None, kind: str = "") -> AuditPage:
        """Events newest first; ``kind``: only those of one kind (egress, exec, job...)."""
        return self._send(Api.audit(limit, before, kind))

    # --- network: egress policy and secrets ---------------------------------------------------

    def network(self) -> CellNetwork:
        """What the cell may reach now (your policy, or the admin's default)."""
        return self._send(Api.network)

    def network_set(self, policy: NetworkPolicy) -> CellNetwork:
        """Your own policy, within the admin's ceiling; it applies to the next connection."""
        return self._send(Api.network_set(policy))

    def network_reset(self) -> CellNetwork:
        """Back to the admin's default policy."""
        return self._send(Api.network_reset)

    def secrets(self) -> list[SecretPublic]:
        """Your secrets' names and hosts (values are never answered)."""
        return self._send(Api.secrets_list)

    def secrets_set(self, name: str, value: str, hosts: Sequence[str]) -> SecretPublic:
        """Store a secret; the cell's programs see a placeholder in ``$name``, which the egress
        proxy swaps for the value in requests to ``hosts`` only."""
        return self._send(Api.secrets_set(name, value, hosts))

    def secrets_rm(self, name: str) -> None:
        self._send(Api.secrets_rm(name))

    def admin_network(self) -> AdminNetwork:
        return self._send(Api.admin_network)

    def admin_network_set(self, network: AdminNetwork) -> AdminNetwork:
        return self._send(Api.admin_network_set(network))

    def admin_cells(self) -> list[AdminCell]:
        return self._send(Api.admin_cells)

    def admin_reap(self) -> ReapResult:
        return self._send(Api.admin_reap)

    def admin_cell(self, user_id: str, action: Literal["pause", "stop", "remove"]) -> str:
        """Pause, stop or remove a user's idle cell now (the workspace kept); its new state."""
        return (self._send(Api.admin_cell(user_id, action))).state

    def user_key(self, user_id: str) -> str:
        """A new API key for the user (shown once); their old key and sign-ins stop working."""
        return (self._send(Api.user_key(user_id))).api_key

    def rotate_key(self) -> str:
        """A new API key for you (shown once); the one this client holds stops working."""
        return (self._send(Api.my_key)).api_key

    def healthz(self) -> Health:
        return self._send(Api.healthz)

    def metrics(self) -> str:
        return self._send(Api.metrics)
