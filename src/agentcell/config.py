"""Settings: the only module that reads the environment (prefix ``AGENTCELL_``)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from agentcell.schemas import NetworkMode, NetworkPolicy

ImageProfile = Literal["minimal", "full"]

# Under gVisor's ptrace platform the host's pids limit counts runsc's own threads too (its Go
# runtime's, and a stub thread per Sentry thread for each process): about 220 at rest. At the
# limit the Sentry panics and the whole cell dies (google/gvisor#2490, #3942).
RUNSC_PIDS = 1024


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "agentcell"


class CellLimits(BaseModel):
    """Per-cell resource limits (``AGENTCELL_LIMITS__MEMORY_MB=1024`` and so on)."""

    model_config = ConfigDict(extra="forbid")

    memory_mb: int = Field(512, ge=32, description="memory limit; swap is not granted on top")
    cpus: float = Field(1.0, gt=0, description="hard CPU cap, in cores")
    cpu_shares: int = Field(
        256, ge=2, description="CPU weight under contention (the host's own processes have 1024)"
    )
    pids: int = Field(256, ge=16, description="process/thread limit (pids cgroup)")
    tmp_mb: int = Field(64, ge=1, description="size of the /tmp tmpfs")
    shm_mb: int = Field(16, ge=1, description="size of /dev/shm")
    workspace_mb: int = Field(
        1024, ge=0, description="workspace quota (a loop-mounted ext4 image); 0 disables"
    )
    blkio_weight: int = Field(
        100,
        ge=10,
        le=1000,
        description="block-I/O weight under contention (10-1000); enforced only where the disk's "
        "I/O scheduler honours cgroup weights (BFQ, or io.weight with iocost); see README",
    )
    cpuset: str = Field(
        "auto",
        pattern=r"^(auto|[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*)?$",
        description="CPUs cells may run on, e.g. 1-7; auto = all but core 0 on engines with "
        ">= 4 cores (core 0 stays free for the server and dockerd); empty = any CPU",
    )


class DockerBackendConfig(BaseModel):
    """Cells as hardened containers on a Docker engine (``sandbox.docker``, imported only when
    chosen). The engine and image are the flat settings ``AGENTCELL_DOCKER_HOST``,
    ``AGENTCELL_IMAGE``, ``AGENTCELL_IMAGE_PROFILE`` and ``AGENTCELL_RUNTIME``."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["docker"] = "docker"
    """The discriminator: which backend. Do not change."""


# One member today; another backend joins the union (a Kubernetes node type, DESIGN §14).
BackendConfig = Annotated[DockerBackendConfig, Field(discriminator="type")]


class Settings(BaseSettings):
    """Everything a deployment can set. Environment: ``AGENTCELL_<NAME>``."""

    model_config = SettingsConfigDict(
        env_prefix="AGENTCELL_", env_nested_delimiter="__", extra="ignore"
    )

    data_dir: Path = Field(default_factory=_default_data_dir)
    web_dir: Path = Field(
        Path(__file__).resolve().parents[2] / "web",
        description="front-end packages the server serves (scripts/setup runs npm ci there)",
    )
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    admin_token: str = Field("", description="empty = generated once into data_dir/admin_token")
    max_code_bytes: int = Field(1024 * 1024, ge=1, description="largest code of one exec")
    max_upload_bytes: int = Field(100 * 1024 * 1024, ge=1, description="largest file upload")
    database_url: str = Field(
        "",
        description="sqlite:///path or postgresql://user:password@host/db; "
        "empty = SQLite file agentcell.db in data_dir",
    )
    instance_id: str = Field("", description="labels our containers; empty = derived from data_dir")
    docker_host: str | None = Field(
        None, validation_alias=AliasChoices("AGENTCELL_DOCKER_HOST", "DOCKER_HOST")
    )

    image_profile: ImageProfile = "minimal"
    image: str = Field("", description="explicit sandbox image tag; empty = built profile image")
    debian_mirror: str = Field(
        "", description="Debian mirror for image builds; empty = the host's apt sources"
    )
    labels: dict[str, str] = Field(
        default_factory=dict, description="extra labels on every container we create"
    )
    runtime: str = Field("", description="OCI runtime for cells, e.g. runsc; empty = default")
    backend: BackendConfig = Field(
        default_factory=DockerBackendConfig,
        description="where cells run: {type: docker} (the only backend today)",
    )

    limits: CellLimits = Field(default_factory=CellLimits)

    network_default: NetworkPolicy = Field(
        default_factory=NetworkPolicy,
        description='egress policy of users who set none, e.g. {"mode": "allowlist", "allow": '
        '["index.example.org"]}; PUT /v1/admin/network overrides it at run time',
    )
    network_ceiling: NetworkMode = Field(
        "allowlist", description="the widest egress mode a user may choose: none, allowlist, public"
    )
    network_ports: list[int] = Field(
        default_factory=list, description="destination ports cells may reach besides 80 and 443"
    )
    egress_connections_per_user: int = Field(
        64, ge=1, description="connections one user's cell may have open through the proxy"
    )
    egress_bytes_per_minute: int = Field(
        1024**3,
        ge=0,
        description="bytes a minute one user's cell may move through the proxy "
        "(both ways, paced, not cut); 0 = no limit",
    )
    egress_connect_timeout_s: float = Field(10, gt=0, description="connecting to a host")
    secrets_key: SecretStr = Field(
        SecretStr(""),
        description="base64 of 32 bytes sealing users' secrets in the store; empty = generated "
        "once into data_dir/secrets.key",
    )
    secrets_per_user_max: int = Field(50, ge=1, description="secrets one user may keep")
    browser_token_ttl_s: float = Field(
        900,
        gt=0,
        le=86400,
        description="life of a browser token (POST /v1/cell/port-tokens, "
        "/v1/cell/terminal-tokens): what a browser's URL or WebSocket carries instead of the key",
    )
    session_ttl_s: float = Field(
        43200, gt=0, description="life of a web page sign-in (POST /v1/session) before it ends"
    )
    preview_url: str = Field(
        "",
        description="a second address of this server (e.g. https://preview.example.org) at "
        "which browsers open relayed pages of cells, apart from the web page's origin; empty = "
        "http://localhost:PORT when the page is opened at 127.0.0.1, else relayed pages are "
        "sandboxed (CSP) on the page's origin",
    )
    port_cookie_ttl_s: float = Field(
        43200, gt=0, description="life of the cookie a port token is traded for"
    )

    pool_size: int = Field(1, ge=0, description="pre-started cells for new users; 0 disables")
    idle_pause_s: float = Field(120, gt=0, description="idle seconds before a cell is paused")
    idle_stop_s: float = Field(900, gt=0, description="idle seconds before a cell is stopped")
    idle_remove_s: float = Field(
        86400, gt=0, description="idle seconds before a cell is removed (workspace kept)"
    )
    reap_interval_s: float = Field(15, gt=0)
    host_memory_mb: int = Field(
        0,
        ge=0,
        description="memory the limits of all running cells may add up to; "
        "0 = the host's MemTotal minus host_memory_reserve_mb",
    )
    host_memory_reserve_mb: int = Field(
        1024, ge=0, description="memory kept for the host and this server when host_memory_mb is 0"
    )

    exec_timeout_s: float = Field(60, gt=0, description="default timeout of one exec")
    exec_timeout_max_s: float = Field(3600, gt=0)
    output_limit_bytes: int = Field(
        16 * 1024 * 1024, ge=1024, description="stdout+stderr kept per exec; the rest is dropped"
    )
    start_timeout_s: float = Field(20, gt=0, description="wait this long for a new cell's executor")
    json_output_limit_bytes: int = Field(
        4 * 1024 * 1024,
        ge=1024,
        description="stdout+stderr kept per exec answered as JSON (the server holds it whole); "
        "streams get output_limit_bytes",
    )
    stream_send_timeout_s: float = Field(
        30,
        gt=0,
        description="a stream whose client takes no data this long is closed, its exec stopped",
    )
    body_timeout_s: float = Field(
        30,
        gt=0,
        description="a request body that pauses this long, or is slower on average than "
        "body_min_rate_bytes_s after this long, is refused (408)",
    )
    body_min_rate_bytes_s: int = Field(
        1024, ge=0, description="slowest accepted average upload rate; 0 = no minimum"
    )
    rate_limit_per_s: float = Field(
        50, gt=0, description="requests a second per user (token bucket; the admin is exempt)"
    )
    rate_limit_burst: int = Field(200, ge=1, description="requests a user may send at once")
    lifecycle_limit_per_min: float = Field(
        12, gt=0, description="cell restarts and deletes a minute per user"
    )
    lifecycle_burst: int = Field(5, ge=1, description="cell restarts and deletes at once")
    max_running_per_user: int = Field(
        8, ge=1, description="execs and file transfers one user may have running at once"
    )
    jobs_running_per_user: int = Field(2, ge=1, description="jobs one user may have running")
    jobs_running_max: int = Field(16, ge=1, description="jobs running at once on this server")
    jobs_per_user_max: int = Field(
        20, ge=1, description="jobs one user may have running and queued; past it: 429"
    )
    job_timeout_s: float = Field(3600, gt=0, description="a job's timeout unless it gives one")
    job_timeout_max_s: float = Field(7 * 24 * 3600, gt=0, description="the longest job timeout")
    job_log_max_bytes: int = Field(
        64 * 1024 * 1024, ge=1024, description="a job's log is cut past this (the job goes on)"
    )
    schedules_per_user_max: int = Field(50, ge=1, description="schedules one user may keep")
    max_download_bytes: int = Field(4 * 1024**3, ge=1, description="largest file a download sends")
    max_zip_bytes: int = Field(
        4 * 1024**3, ge=1, description="largest total size of the files a ZIP takes in"
    )
    max_extract_entries: int = Field(
        10_000, ge=1, description="most entries (files and folders) an archive may unpack"
    )
    max_extract_bytes: int = Field(
        1024**3, ge=1, description="largest total an archive's files may unpack to"
    )
    max_extract_ratio: int = Field(
        200,
        ge=0,
        description="an entry (of a tar: the whole) unpacking to more than this many times its "
        "packed size, past 1 MiB, is refused as a decompression bomb; 0 = no such check",
    )

    model: str = Field(
        "",
        description="the agent's model as provider:name, e.g. openai:gpt-4.1, "
        "anthropic:claude-sonnet-4-5, or openai:qwen2.5 with model_base_url; empty = no agent",
    )
    model_base_url: str = Field(
        "",
        description="an OpenAI-compatible endpoint (Ollama, vLLM, llama.cpp, LM Studio), "
        "e.g. http://127.0.0.1:11434/v1; empty = the provider's own",
    )
    model_api_key: SecretStr = Field(
        SecretStr(""),
        description="the model provider's key; it stays in this process and never enters a cell",
    )
    agent_max_requests: int = Field(50, ge=0, description="model requests per turn; 0 = no limit")
    agent_max_tool_calls: int = Field(200, ge=0, description="tool calls per turn; 0 = no limit")
    agent_max_tokens: int = Field(
        2_000_000, ge=0, description="input+output tokens per turn; 0 = no limit"
    )
    agent_tool_retries: int = Field(
        3, ge=0, description="times the model may retry one failing tool call in a run"
    )
    agent_tool_output_chars: int = Field(
        16_000, ge=1000, description="a tool result longer than this is cut for the model"
    )
    agent_memory_max_bytes: int = Field(
        16 * 1024,
        ge=256,
        description="the largest /workspace/MEMORY.md the agent writes; a longer one is cut "
        "when a turn reads it",
    )

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, v: Path) -> Path:
        return v.expanduser().resolve()

    @model_validator(mode="after")
    def _room_for_runsc(self) -> Settings:
        """A runsc cell whose pids limit was not set gets room for gVisor's threads."""
        if self.runtime == "runsc" and "pids" not in self.limits.model_fields_set:
            self.limits = self.limits.model_copy(update={"pids": RUNSC_PIDS})
        return self

    @property
    def instance(self) -> str:
        """Label value that marks containers as ours (one manager per data dir)."""
        if self.instance_id:
            return self.instance_id
        return hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:12]

    @property
    def egress_dir(self) -> Path:
        """The egress CA's key and certificate, and the CA bundle cells trust (data_dir)."""
        return self.data_dir / "egress"

    @property
    def ca_bundle_path(self) -> Path:
        """The system's CAs and the egress CA, which cells mount over their own CA list."""
        return self.egress_dir / "ca-bundle.pem"

    @property
    def admin_token_path(self) -> Path:
        """Where the admin token is generated when ``admin_token`` is empty (mode 0600)."""
        return self.data_dir / "admin_token"


class ClientSettings(BaseSettings):
    """Where the Python client and the CLI find a server, and the keys they send.

    Environment: ``AGENTCELL_URL``, ``AGENTCELL_API_KEY``, ``AGENTCELL_ADMIN_TOKEN``,
    ``AGENTCELL_TIMEOUT_S``.
    """

    model_config = SettingsConfigDict(env_prefix="AGENTCELL_", extra="ignore")

    url: str = Field("http://127.0.0.1:8000", description="base URL of the agentcell server")
    api_key: str = Field("", repr=False, description="a user's API key (agentcell users add)")
    admin_token: str = Field(
        "", repr=False, description="the admin token, for user management and /v1/admin"
    )
    timeout_s: float = Field(
        30, gt=0, description="connect/read timeout per request; execs wait as long as they run"
    )
