"""Injected faults, for the tests that prove a search survives failure. Off unless `EVOMERGE_FAULT` is set.

`EVOMERGE_FAULT="kill:evaluate:3"` sends SIGKILL to this process the 3rd time it reaches the `evaluate`
point (a kill -9 at a chosen moment, with no chance to clean up); `sleep:evaluate:1.5` waits 1.5 s every
time (a slower model, to hold a moment open); `raise:evaluate:1` raises an
`EvaluationError` there instead (a candidate that fails: recorded, the search goes on); `crash:evaluate:3`
raises a `StageFailure` (the stage and the flow run fail, for a retry to redo). With `EVOMERGE_FAULT_MARKER`
set to a file path, a fault that fired is written there (with the Prefect flow run it fired in) and never
fires again in that flow run, in any process: a stage that fails on its first attempt only. Several faults
are separated by commas. Points:
`merge` and `evaluate` (as a candidate's stage starts; on a Dask worker, `evaluate` as the worker starts
scoring a candidate or parent), `record` (in the middle of logging a candidate to
MLflow, after its line is in candidates.jsonl: its nested run exists but is unfinished) and `checkpoint`
(after the new checkpoint is written, before it replaces the old one).
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path

from tasks.errors import EvaluationError, EvomergeError, StageFailure

_reached: Counter[str] = Counter()
_scope = ""
_kill_also: list[int] = []


def set_fault_scope(scope: str) -> None:
    """Name the run faults fire in (the search flow passes its Prefect flow run id): with a marker file, a
    fault fires once per scope, so a retry of the same flow run passes where the first attempt failed."""
    global _scope
    _scope = scope


def fault_scope() -> str:
    return _scope


def kill_also(pid: int) -> None:
    """A `kill` fault in this process kills `pid` first: the MLflow worker process kills the search it
    serves, so `kill:record:N` is still the search dying mid-logging."""
    _kill_also.append(pid)


def fault_point(name: str) -> None:
    spec = os.environ.get("EVOMERGE_FAULT")
    if not spec:
        return
    _reached[name] += 1
    for fault in spec.split(","):
        action, _, rest = fault.strip().partition(":")
        point, _, count = rest.partition(":")
        if action == "sleep" and point == name:
            time.sleep(float(count))
            continue
        if point != name or _reached[name] != int(count or 1) or _fired_before(fault.strip()):
            continue
        if action == "kill":
            for pid in [*_kill_also, os.getpid()]:
                os.kill(pid, signal.SIGKILL)
        if action == "raise":
            raise EvaluationError(f"injected fault at {name} (EVOMERGE_FAULT={spec})")
        if action == "crash":
            raise StageFailure(f"injected crash at {name} (EVOMERGE_FAULT={spec})")
        raise EvomergeError(f"EVOMERGE_FAULT: unknown action {action!r} in {fault!r} (kill, raise, crash or sleep)")


def _fired_before(fault: str) -> bool:
    """True when `EVOMERGE_FAULT_MARKER` records that `fault` fired in this scope (flow run); otherwise
    records it, as it fires now."""
    marker = os.environ.get("EVOMERGE_FAULT_MARKER")
    if not marker:
        return False
    entry = f"{fault} {_scope}"
    path = Path(marker)
    if path.exists() and entry in path.read_text().splitlines():
        return True
    with path.open("a") as handle:
        handle.write(entry + "\n")
    return False
