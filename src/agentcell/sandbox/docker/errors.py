"""docker-py's errors become agentcell's here, and only here: the backend, the image builder,
the image pruner and the CLI's image commands all go through ``translated``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import docker.errors
import requests

from agentcell.errors import AgentcellError, BackendError, DockerUnavailable, ImageMissing


@contextlib.contextmanager
def translated(
    action: str, refused: type[AgentcellError] = BackendError, hint: str | None = None
) -> Iterator[None]:
    """Turn docker-py's errors into ours, saying what we were doing (``action``, a verb
    phrase: "start a cell"). The engine saying no becomes ``refused`` (with ``hint``), an engine
    that does not answer ``DockerUnavailable``, a missing image ``ImageMissing``."""
    try:
        yield
    except AgentcellError:
        raise  # ours already (some are OSErrors too)
    except docker.errors.ImageNotFound as exc:
        raise ImageMissing(
            f"sandbox image missing while trying to {action}: {exc.explanation}",
            hint="run: agentcell image build",
        ) from exc
    except docker.errors.APIError as exc:
        raise refused(f"Docker refused to {action}: {exc.explanation or exc}", hint=hint) from exc
    except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as exc:
        # Also when the engine's socket went away. docker-py leaves the socket of a failed
        # connect to the traceback's frames: drop them, so it is closed now, not at some GC.
        _drop_tracebacks(exc)
        raise DockerUnavailable(f"cannot reach Docker to {action}: {exc}") from exc


def _drop_tracebacks(exc: BaseException | None) -> None:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        exc.__traceback__ = None
        exc = exc.__cause__ or exc.__context__
