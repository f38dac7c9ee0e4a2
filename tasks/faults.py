"""Injected faults, for the tests that prove a search survives failure. Off unless `EVOMERGE_FAULT` is set.

`EVOMERGE_FAULT="kill:evaluate:3"` sends SIGKILL to this process the 3rd time it reaches the `evaluate`
point (a kill -9 at a chosen moment, with no chance to clean up); `raise:evaluate:1` raises an
`EvaluationError` there instead (a stage that fails). Several faults are separated by commas. Points:
`merge` and `evaluate` (as a candidate's stage starts), `record` (in the middle of logging a candidate to
MLflow, after its line is in candidates.jsonl: its nested run exists but is unfinished) and `checkpoint`
(after the new checkpoint is written, before it replaces the old one).
"""

from __future__ import annotations

import os
import signal
from collections import Counter

from tasks.errors import EvaluationError, EvomergeError

_reached: Counter[str] = Counter()


def fault_point(name: str) -> None:
    spec = os.environ.get("EVOMERGE_FAULT")
    if not spec:
        return
    _reached[name] += 1
    for fault in spec.split(","):
        action, _, rest = fault.strip().partition(":")
        point, _, count = rest.partition(":")
        if point != name or _reached[name] != int(count or 1):
            continue
        if action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if action == "raise":
            raise EvaluationError(f"injected fault at {name} (EVOMERGE_FAULT={spec})")
        raise EvomergeError(f"EVOMERGE_FAULT: unknown action {action!r} in {fault!r} (kill or raise)")
