"""Settings rules that depend on more than one setting."""

from __future__ import annotations

import pytest

from agentcell.config import RUNSC_PIDS, CellLimits, Settings


def test_a_runsc_cell_gets_room_for_gvisors_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().limits.pids == 256
    assert Settings(runtime="runsc").limits.pids == RUNSC_PIDS
    limits = CellLimits(memory_mb=300)
    settings = Settings(runtime="runsc", limits=limits)
    assert (settings.limits.pids, settings.limits.memory_mb) == (RUNSC_PIDS, 300)
    assert limits.pids == 256  # the caller's limits are left alone
    monkeypatch.setenv("AGENTCELL_RUNTIME", "runsc")
    assert Settings().limits.pids == RUNSC_PIDS
    monkeypatch.setenv("AGENTCELL_LIMITS__PIDS", "300")
    assert Settings().limits.pids == 300  # a pids limit that was set is kept
