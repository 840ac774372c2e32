"""The async client: the same ``Api`` calls as ``Client``, sent with ``httpx.AsyncClient``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
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
    achunks,
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


class AsyncClient(BaseClient[httpx.AsyncClient]):
    """The same calls as Client, awaited. ``async with AsyncClient() as c: ...``."""

    def _open(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.url, timeout=self.timeout_s, verify=tls_for(self.url)
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    async def _send(self, call: Call[T]) -> T:
        with transport_errors(self.url):
            response = await self._http.request(**self._request_args(call))
        raise_for(response, call)
        return call.parse(response)

    @asynccontextmanager
    async def _stream(self, call: Call[Any]) -> AsyncIterator[httpx.Response]:
        with transport_errors(self.url):
            async with self._http.stream(**self._request_args(call)) as r:
                if not r.is_success:
                    await r.aread()
                    raise_for(r, call)
                yield r

    async def _save(self, call: Call[None], dest: Dest) -> int:
        size = 0
        with download_to(dest) as f:
            async with self._stream(call) as r:
                async for chunk in r.aiter_bytes(CHUNK):
                    size += await asyncio.to_thread(f.write, chunk)
        return size

    async def me(self) -> Me:
        return await self._send(Api.me)

    async def users_add(self, name: str) -> UserCreated:
        return await self._send(Api.users_add(name))

    async def users_list(self) -> list[UserPublic]:
        return await self._send(Api.users_list)

    async def users_rm(self, user_id: str, delete_workspace: bool = False) -> None:
        await self._send(Api.users_rm(user_id, delete_workspace))

    async def cell(self) -> CellPublic:
        return await self._send(Api.cell)

    async def cell_restart(self) -> CellPublic:
        return await self._send(Api.cell_restart)

    async def cell_delete(self) -> None:
        await self._send(Api.cell_delete)

    async def exec(
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
        return await self._send(call)

    async def processes(self) -> list[CellProcess]:
        """The processes background execs kept running in your cell."""
        return await self._send(Api.processes)

    async def process_kill(self, pid: int) -> None:
        """Kill a kept process and everything it started."""
        await self._send(Api.process_kill(pid))

    async def ports(self) -> list[CellPort]:
        """The TCP ports listening in your cell, each with its relay path."""
        return await self._send(Api.ports)

    def port_url(self, port: int, path: str = "") -> str:
        """The URL that reaches ``path`` on ``port`` in your cell (send your API key with it,
        or open ``port_token(port).url`` in a browser)."""
        return f"{self.url}/v1/cell/ports/{int(port)}/{path.lstrip('/')}"

    async def port_token(self, port: int) -> PortToken:
        """A short-lived token for a browser to open ``port``: its ``url`` (on the server's
        preview address when it has one, else a path of this server) trades it for a cookie
        of that port's."""
        return await self._send(Api.port_token(port))

    async def desktop(self) -> CellDesktop:
        """Start your cell's live desktop (full image) unless it runs: ``url`` (a path of this
        server, with a short-lived token) watches it in a browser."""
        return await self._send(Api.desktop)

    async def jupyter(self) -> CellJupyter:
        """Start JupyterLab in your cell (full image) unless it runs: ``browser_url`` (with a
        short-lived token, on the server's preview address when it has one) opens it in a
        browser."""
        return await self._send(Api.jupyter)

    async def terminals(self) -> list[TerminalSession]:
        """Your cell's terminals (``agentcell shell``'s, the web page's)."""
        return await self._send(Api.terminals)

    async def terminal_close(self, terminal_id: str) -> TerminalSession:
        """End a terminal; its last state holds the exit code."""
        return await self._send(Api.terminal_close(terminal_id))

    async def exec_stream(
        self,
        code: str,
        language: str = "python",
        timeout_s: float | None = None,
        context: str = "default",
        *,
        background: bool = False,
    ) -> AsyncIterator[ExecEvent]:
        """See Client.exec_stream."""
        events = ExecEvents()
        async with self._stream(
            Api.exec(code, language, timeout_s, context, stream=True, background=background)
        ) as r:
            async for line in r.aiter_lines():
                if event := events.feed(line):
                    yield event
        yield events.exit()

    async def files_list(self, path: str | Path = ".") -> FileList:
        """Every entry of a folder (or the one file), following the server's pages."""
        page = await self._send(Api.files_list(path))
        rest: list[FileList] = []
        cursor = page.next_cursor
        while cursor:
            rest.append(await self._send(Api.files_list(path, cursor)))
            cursor = rest[-1].next_cursor
        return joined(page, rest)

    async def files_get(self, path: str | Path) -> bytes:
        async with self._stream(Api.files_raw(path)) as r:
            return await r.aread()

    async def files_download(self, path: str | Path, dest: Dest) -> int:
        return await self._save(Api.files_raw(path), dest)

    async def files_put(self, path: str | Path, data: Upload) -> FileWritten:
        with upload(data) as (body, headers):
            content = body if isinstance(body, bytes) else achunks(body)
            return await self._send(Api.files_put(path, content, headers))

    async def files_extract(self, archive: Upload | str, path: str | Path = ".") -> FilesExtracted:
        """See ``Client.files_extract``."""
        with upload(Path(archive) if isinstance(archive, str) else archive) as (body, headers):
            content = body if isinstance(body, bytes) else achunks(body)
            return await self._send(Api.files_extract(path, content, headers))

    async def files_rm(self, path: str | Path, recursive: bool = False) -> None:
        await self._send(Api.files_rm(path, recursive))

    async def files_zip(self, path: str | Path, dest: Dest) -> int:
        return await self._save(Api.files_zip(path), dest)

    async def sessions_create(self, title: str = "") -> SessionPublic:
        return await self._send(Api.sessions_create(title))

    async def sessions_list(self) -> list[SessionPublic]:
        return await self._send(Api.sessions_list)

    async def sessions_get(self, session_id: str) -> SessionPublic:
        return await self._send(Api.sessions_get(session_id))

    async def sessions_rm(self, session_id: str) -> None:
        await self._send(Api.sessions_rm(session_id))

    async def sessions_messages(self, session_id: str) -> list[MessagePublic]:
        return await self._send(Api.sessions_messages(session_id))

    async def chat(self, session_id: str, content: str) -> ChatReply:
        return await self._send(Api.chat(session_id, content))

    async def chat_stream(self, session_id: str, content: str) -> AsyncIterator[ChatEvent]:
        """See Client.chat_stream."""
        events = ChatEvents()
        async with self._stream(Api.chat(session_id, content, stream=True)) as r:
            async for line in r.aiter_lines():
                if event := events.feed(line):
                    yield event
        events.check_done()

    async def jobs_run(
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
        """See Client.jobs_run."""
        spec = JobSpec(
            kind, code, file, prompt, language, name, timeout_s, output_dir, at, cron, tz
        )
        return await self._send(Api.jobs_run(spec))

    async def jobs_list(
        self, state: JobState | None = None, limit: int | None = None
    ) -> list[JobPublic]:
        return await self._send(Api.jobs_list(state, limit))

    async def jobs_get(self, job_id: str) -> JobPublic:
        return await self._send(Api.jobs_get(job_id))

    async def jobs_cancel(self, job_id: str) -> JobPublic:
        return await self._send(Api.jobs_cancel(job_id))

    async def jobs_retry(self, job_id: str) -> JobPublic:
        return await self._send(Api.jobs_retry(job_id))

    async def jobs_rm(self, job_id: str) -> None:
        await self._send(Api.jobs_rm(job_id))

    async def jobs_log(self, job_id: str, offset: int = 0) -> JobLogChunk:
        return await self._send(Api.jobs_log(job_id, offset))

    async def jobs_follow(
        self, job_id: str, offset: int = 0, *, retries: int = FOLLOW_RETRIES
    ) -> AsyncIterator[JobLogEvent]:
        """See Client.jobs_follow."""
        follow = LogFollow(offset, retries)
        while True:
            error: AgentcellError | None = None
            try:
                async with self._stream(Api.jobs_follow(job_id, follow.offset)) as r:
                    follow.connected()
                    async for line in r.aiter_lines():
                        if event := follow.feed(line):
                            yield event
                        if follow.end is not None:
                            return
            except AgentcellError as exc:
                error = exc
            await asyncio.sleep(follow.dropped(error))

    async def jobs_download(self, job_id: str, dest: Dest) -> int:
        return await self._save(Api.jobs_artifacts(job_id), dest)

    async def schedules_list(self) -> list[SchedulePublic]:
        return await self._send(Api.schedules_list)

    async def schedules_get(self, schedule_id: str) -> SchedulePublic:
        return await self._send(Api.schedules_get(schedule_id))

    async def schedules_pause(self, schedule_id: str) -> SchedulePublic:
        return await self._send(Api.schedules_pause(schedule_id))

    async def schedules_resume(self, schedule_id: str) -> SchedulePublic:
        return await self._send(Api.schedules_resume(schedule_id))

    async def schedules_rm(self, schedule_id: str) -> None:
        await self._send(Api.schedules_rm(schedule_id))

    async def audit(self, limit: int = 50, before: int | None = None, kind: str = "") -> AuditPage:
        """Events newest first; ``kind``: only those of one kind (egress, exec, job...)."""
        return await self._send(Api.audit(limit, before, kind))

    # --- network: egress policy and secrets ---------------------------------------------------

    async def network(self) -> CellNetwork:
        """What the cell may reach now (your policy, or the admin's default)."""
        return await self._send(Api.network)

    async def network_set(self, policy: NetworkPolicy) -> CellNetwork:
        """Your own policy, within the admin's ceiling; it applies to the next connection."""
        return await self._send(Api.network_set(policy))

    async def network_reset(self) -> CellNetwork:
        """Back to the admin's default policy."""
        return await self._send(Api.network_reset)

    async def secrets(self) -> list[SecretPublic]:
        """Your secrets' names and hosts (values are never answered)."""
        return await self._send(Api.secrets_list)

    async def secrets_set(self, name: str, value: str, hosts: Sequence[str]) -> SecretPublic:
        """Store a secret; the cell's programs see a placeholder in ``$name``, which the egress
        proxy swaps for the value in requests to ``hosts`` only."""
        return await self._send(Api.secrets_set(name, value, hosts))

    async def secrets_rm(self, name: str) -> None:
        await self._send(Api.secrets_rm(name))

    async def admin_network(self) -> AdminNetwork:
        return await self._send(Api.admin_network)

    async def admin_network_set(self, network: AdminNetwork) -> AdminNetwork:
        return await self._send(Api.admin_network_set(network))

    async def admin_cells(self) -> list[AdminCell]:
        return await self._send(Api.admin_cells)

    async def admin_reap(self) -> ReapResult:
        return await self._send(Api.admin_reap)

    async def admin_cell(self, user_id: str, action: Literal["pause", "stop", "remove"]) -> str:
        """Pause, stop or remove a user's idle cell now (the workspace kept); its new state."""
        return (await self._send(Api.admin_cell(user_id, action))).state

    async def user_key(self, user_id: str) -> str:
        """A new API key for the user (shown once); their old key and sign-ins stop working."""
        return (await self._send(Api.user_key(user_id))).api_key

    async def rotate_key(self) -> str:
        """A new API key for you (shown once); the one this client holds stops working."""
        return (await self._send(Api.my_key)).api_key

    async def healthz(self) -> Health:
        return await self._send(Api.healthz)

    async def metrics(self) -> str:
        return await self._send(Api.metrics)
