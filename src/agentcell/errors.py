"""One error tree. Each error says what happened and what to do next (``hint``)."""

from __future__ import annotations


class AgentcellError(Exception):
    status_code = 500
    code = "internal"
    hint = ""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if hint is not None:
            self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class DockerUnavailable(AgentcellError):
    status_code = 503
    code = "docker_unavailable"
    hint = "start Docker, or run scripts/setup, which installs and starts it"


class Unauthorized(AgentcellError):
    status_code = 401
    code = "unauthorized"
    hint = "send the header 'Authorization: Bearer <your API key>'"


class Forbidden(AgentcellError):
    status_code = 403
    code = "forbidden"


class PayloadTooLarge(AgentcellError):
    status_code = 413
    code = "too_large"


class BackendError(AgentcellError):
    """The container engine refused an operation."""

    status_code = 502
    code = "backend_error"


class ImageMissing(AgentcellError):
    status_code = 503
    code = "image_missing"


class ImageBuildFailed(AgentcellError):
    code = "image_build_failed"


class CellStartFailed(AgentcellError):
    status_code = 503
    code = "cell_start_failed"


class HostMemoryFull(AgentcellError):
    """Admission control: the running cells' memory limits already fill the host."""

    status_code = 503
    code = "host_memory_full"


class CellDied(AgentcellError):
    """The cell (or its python context) died; it has been recreated. Retry the call."""

    status_code = 409
    code = "cell_died"


class CellOutOfMemory(CellDied, MemoryError):
    code = "out_of_memory"


class ExecTimeout(AgentcellError, TimeoutError):
    status_code = 408
    code = "exec_timeout"


class ExecutorError(AgentcellError):
    """The executor answered something we do not understand, or hung up."""

    status_code = 502
    code = "executor_error"


class ExecutorUnreachable(ExecutorError):
    """The cell's executor does not answer: no socket, nobody listening, or it hung up."""

    status_code = 503
    code = "executor_unreachable"
    hint = "the cell may be starting, stopped or restarting; retry, or restart the cell"


class CellStuck(ExecutorError):
    """The cell is at its process limit and the executor could not make room: it is restarted."""

    status_code = 503
    code = "cell_stuck"
    hint = "retry the call; start fewer processes at once"


class PortClosed(AgentcellError):
    """Nothing in the cell accepts connections on the port asked for (the port relay)."""

    status_code = 502
    code = "port_closed"
    hint = (
        "start a server on that port in the cell, listening on 127.0.0.1 or 0.0.0.0; "
        "see what listens: GET /v1/cell/ports"
    )


class InvalidRequest(AgentcellError, ValueError):
    status_code = 400
    code = "invalid_request"


class InvalidPath(AgentcellError, ValueError):
    status_code = 400
    code = "invalid_path"
    hint = "use a path relative to the workspace, without '..', that stays inside it"


class NotFound(AgentcellError, LookupError):
    """Also what another user's ids answer: existence is not disclosed."""

    status_code = 404
    code = "not_found"


class PathNotFound(NotFound, FileNotFoundError):
    pass


class UnsupportedFileType(AgentcellError, OSError):
    status_code = 400
    code = "unsupported_file_type"
    hint = "only regular files and directories can be read or written"


class FileTooLarge(AgentcellError, OSError):
    status_code = 413
    code = "file_too_large"


class UnsafeArchive(InvalidRequest):
    """An archive to unpack holds an entry that may not be: a path that is absolute or leaves
    the folder, a link, a device or a FIFO. Nothing of the archive was written."""

    code = "unsafe_archive"
    hint = (
        "archives may hold files and folders under relative paths only: make it without that entry"
    )


class InvalidArchive(InvalidRequest):
    """What was to be unpacked is no archive we read, or a damaged one. Nothing was written."""

    code = "invalid_archive"
    hint = "send a ZIP or a tar (.tar, .tar.gz, .tgz, .tar.bz2 or .tar.xz), whole"


class ArchiveTooLarge(PayloadTooLarge):
    """An archive to unpack has more entries, or unpacks to more bytes, than allowed, or
    grows past the ratio of a decompression bomb. Nothing was written."""

    code = "archive_too_large"
    hint = (
        "split the archive into smaller ones, or ask the operator for larger limits: "
        "AGENTCELL_MAX_EXTRACT_ENTRIES, AGENTCELL_MAX_EXTRACT_BYTES, AGENTCELL_MAX_EXTRACT_RATIO"
    )


class WorkspaceFull(AgentcellError, OSError):
    status_code = 507
    code = "workspace_full"
    hint = "delete files from the workspace, or ask the operator for a larger quota"


class Conflict(AgentcellError):
    """The request clashes with what exists already (say, a user name that is taken)."""

    status_code = 409
    code = "conflict"


class InvalidSetting(AgentcellError, ValueError):
    """A setting cannot be used as given (say, AGENTCELL_DATABASE_URL)."""

    code = "invalid_setting"


class StoreUnavailable(AgentcellError):
    """The database does not answer, or cannot be migrated."""

    status_code = 503
    code = "store_unavailable"
    hint = "check AGENTCELL_DATABASE_URL and that the database server is running, then retry"


class ServerUnreachable(AgentcellError, ConnectionError):
    """The client's: the agentcell server does not answer."""

    status_code = 503
    code = "server_unreachable"
    hint = "start it with scripts/serve (or agentcell serve), or point AGENTCELL_URL at it"


class ModelNotConfigured(AgentcellError):
    """No model is set for the agent."""

    status_code = 503
    code = "model_not_configured"
    hint = (
        "set AGENTCELL_MODEL (e.g. openai:gpt-4.1 or anthropic:claude-sonnet-4-5) and "
        "AGENTCELL_MODEL_API_KEY; for a local OpenAI-compatible server also set "
        "AGENTCELL_MODEL_BASE_URL, e.g. AGENTCELL_MODEL=openai:qwen2.5 "
        "AGENTCELL_MODEL_BASE_URL=http://127.0.0.1:11434/v1 AGENTCELL_MODEL_API_KEY=local"
    )


class ModelUnreachable(AgentcellError, ConnectionError):
    """The model's server does not answer (refused, reset, timed out)."""

    status_code = 503
    code = "model_unreachable"


class ModelFailed(AgentcellError):
    """The model's server answered with an error, or the model did something unusable."""

    status_code = 502
    code = "model_error"


class AgentLimitReached(AgentcellError):
    """A turn used up one of its limits (model requests, tool calls, tokens)."""

    status_code = 429
    code = "agent_limit"


class RateLimited(AgentcellError):
    """Too many requests from one user; ``retry_after_s`` says when to come back."""

    status_code = 429
    code = "rate_limited"
    hint = "slow down: retry after the number of seconds in the Retry-After header"

    def __init__(self, message: str, *, retry_after_s: float, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.retry_after_s = retry_after_s


class TooManyJobs(RateLimited):
    """A user has as many jobs running and queued as they may; one must end first."""

    code = "too_many_jobs"
    hint = "wait for one of your jobs to end, or cancel one, then submit again"


class RequestTimeout(AgentcellError, TimeoutError):
    """The client sent its request body too slowly, or stopped sending it."""

    status_code = 408
    code = "request_timeout"
    hint = "send the whole body without pausing; on a slow link, upload smaller files"


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


def error_class(code: str, *, paths: bool = False) -> type[AgentcellError]:
    """The class of an error ``code`` (AgentcellError for one we do not know). ``paths``: the
    code answers a call on files, where a missing one is PathNotFound (a FileNotFoundError)."""
    if paths and code == PathNotFound.code:
        return PathNotFound
    return error_classes().get(code, AgentcellError)


# The codes an executor may answer with. A cell is untrusted ground: it can raise none of our
# other errors (an ``unauthorized`` from a cell would tell its user that their key is wrong).
EXECUTOR_CODES = frozenset(
    cls.code
    for cls in (
        InvalidRequest,
        InvalidPath,
        NotFound,
        PathNotFound,
        Conflict,
        UnsupportedFileType,
        FileTooLarge,
        WorkspaceFull,
        UnsafeArchive,
        InvalidArchive,
        ArchiveTooLarge,
        ExecutorError,
        CellStuck,
        PortClosed,
    )
)


def executor_error(code: str, message: str, *, paths: bool = True) -> AgentcellError:
    """The exception for an executor's Error event: one of EXECUTOR_CODES' (a missing path is
    PathNotFound unless ``paths`` is false: a missing job is NotFound), else an ExecutorError."""
    cls = error_class(code, paths=paths) if code in EXECUTOR_CODES else ExecutorError
    return cls(message)


class CsrfFailed(Forbidden):
    """A state change sent with the session cookie but without its CSRF token."""

    code = "csrf_failed"
