"""The backend a deployment's settings choose (``AGENTCELL_BACKEND__TYPE``), imported only
when chosen: Docker's client library loads only for the Docker backend."""

from __future__ import annotations

from agentcell.config import Settings
from agentcell.progress import ProgressHook, no_progress
from agentcell.sandbox.base import Backend


def make_backend(settings: Settings, progress: ProgressHook = no_progress) -> Backend:
    config = settings.backend
    match config.type:
        case "docker":
            from agentcell.sandbox.docker.backend import DockerBackend

            return DockerBackend(settings, progress)
