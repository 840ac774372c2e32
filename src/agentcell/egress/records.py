"""What the proxy tells of one connection, for the audit trail."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

Verdict = Literal["allowed", "refused", "failed"]


@dataclass
class EgressRecord:
    owner: str
    host: str = ""
    port: int = 0
    verdict: Verdict = "failed"
    reason: str = ""
    bytes_up: int = 0  # from the cell
    bytes_down: int = 0  # to the cell
    intercepted: bool = False  # TLS terminated here to put secrets in
    started: float = field(default_factory=time.monotonic)
    duration_s: float = 0.0

    def end(self) -> EgressRecord:
        self.duration_s = time.monotonic() - self.started
        return self
