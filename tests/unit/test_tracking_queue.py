"""The MLflow worker process: calls run in order, a failing call is retried until it succeeds (the
tracking server came back), closing reports what could not be done instead of waiting forever, and the
worker dies with the search. Calls cross to the worker pickled, so the calls here are module functions
that leave their trace in files."""

from __future__ import annotations

import io
import os
import pickle
import signal
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import pytest
from rich.console import Console

from flows.tracking import SearchTracker, reconcile_candidate_runs
from flows.tracking_queue import TrackingQueue


def quiet_console() -> Console:
    return Console(file=io.StringIO())


def append_line(path: Path, line: str) -> None:
    with path.open("a") as handle:
        handle.write(line + "\n")


def flaky(attempts: Path, failures: int) -> None:
    """Fails the first `failures` times it is called (a tracking server that is down, then back)."""
    append_line(attempts, "attempt")
    if len(attempts.read_text().splitlines()) <= failures:
        raise ConnectionError("tracking server unreachable")


def always_down() -> None:
    raise ConnectionError("down")


def test_calls_run_in_submission_order(tmp_path: Path) -> None:
    log = tmp_path / "log"
    tracking = TrackingQueue(quiet_console(), retry_delays=(0.0,))
    for index in range(50):
        tracking.submit(f"call {index}", partial(append_line, log, str(index)))
    assert tracking.close(timeout=30) == []
    assert log.read_text().split() == [str(index) for index in range(50)]


def test_a_failing_call_is_retried_and_later_calls_wait_for_it(tmp_path: Path) -> None:
    attempts, log = tmp_path / "attempts", tmp_path / "log"
    console_text = io.StringIO()
    tracking = TrackingQueue(Console(file=console_text), retry_delays=(0.0,))
    tracking.submit("flaky", partial(flaky, attempts, 3))
    tracking.submit("after", partial(append_line, log, "after"))
    assert tracking.close(timeout=30) == []
    assert len(attempts.read_text().splitlines()) == 4 and log.read_text() == "after\n"
    assert len(tracking.errors) == 3 and "tracking server unreachable" in tracking.errors[0]
    printed = console_text.getvalue()
    assert printed.count("MLflow call failed") == 1 and "MLflow reachable again" in printed


def test_close_returns_what_is_still_undone_after_the_timeout(tmp_path: Path) -> None:
    tracking = TrackingQueue(quiet_console(), retry_delays=(0.01,))
    tracking.submit("candidate g00-c00", always_down)
    tracking.submit("candidate g00-c01", partial(append_line, tmp_path / "log", "never"))
    assert tracking.close(timeout=1.0) == ["candidate g00-c00", "candidate g00-c01"]
    assert not (tmp_path / "log").exists()


OUTAGE_EXIT_SCRIPT = """
import io, sys
from functools import partial
from rich.console import Console
from flows.tracking_queue import TrackingQueue
sys.path.insert(0, sys.argv[1])
from test_tracking_queue import down_with
tracking = TrackingQueue(Console(file=io.StringIO()), retry_delays=(0.05,))
for index in range(64):
    tracking.submit(f"candidate {index}", partial(down_with, "x" * 16384))
print(len(tracking.close(timeout=1.0)), flush=True)
"""


def down_with(payload: str) -> None:
    raise ConnectionError(f"down ({len(payload)} bytes not logged)")


def test_a_search_exits_when_mlflow_stays_down_with_more_unsent_than_a_pipe_holds() -> None:
    """1 MiB of calls never taken: the worker is stopped with most of them still in the queue's pipe
    (64 KiB), and the search must still exit (they are reported, and synced by the next run)."""
    finished = subprocess.run(
        [sys.executable, "-c", OUTAGE_EXIT_SCRIPT, str(Path(__file__).parent)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert finished.returncode == 0, finished.stderr
    assert finished.stdout.split() == ["64"]


def test_a_call_that_cannot_cross_to_the_worker_fails_in_the_caller() -> None:
    tracking = TrackingQueue(quiet_console(), retry_delays=(0.0,))
    with pytest.raises((pickle.PicklingError, AttributeError)):
        tracking.submit("a closure", lambda: None)
    assert tracking.pending() == []
    assert tracking.close(timeout=10) == []


WORKER_ORPHAN_SCRIPT = """
import io, os, signal, sys, time
from rich.console import Console
from flows.tracking_queue import TrackingQueue
tracking = TrackingQueue(Console(file=io.StringIO()))
print(tracking._process.pid, flush=True)
time.sleep(0.5)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_the_worker_dies_with_a_killed_search() -> None:
    finished = subprocess.run([sys.executable, "-c", WORKER_ORPHAN_SCRIPT], capture_output=True, text=True, timeout=60)
    assert finished.returncode == -signal.SIGKILL, finished.stderr
    worker = int(finished.stdout.split()[0])
    deadline = time.monotonic() + 10
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(worker)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")  # a zombie is dead


def test_a_tracker_pickles_as_a_reference_to_its_run(tmp_path: Path) -> None:
    tracker = SearchTracker("pickling", "run", uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    copy = pickle.loads(pickle.dumps(tracker))
    assert (copy.uri, copy.experiment_id, copy.run_id) == (tracker.uri, tracker.experiment_id, tracker.run_id)
    assert pickle.loads(pickle.dumps(tracker)) is copy  # one client per run and process, not one per call
    assert copy.client.get_run(tracker.run_id).info.status == "RUNNING"


def test_reconcile_keeps_the_oldest_terminated_run_per_key() -> None:
    runs = [
        ("r1", "k1", "FINISHED"),
        ("r2", "k2", "RUNNING"),  # cut short by a kill mid-logging
        ("r3", "k1", "FINISHED"),  # a duplicate
        ("r4", "k3", "FAILED"),  # a failed candidate's run: terminated, kept
        ("r5", "gone", "FINISHED"),  # the log lacks it: it will be evaluated again
        ("r6", None, "FINISHED"),
        ("r7", "k2", "FINISHED"),
    ]
    kept, dropped = reconcile_candidate_runs(runs, {"k1", "k2", "k3", "k4"})
    assert kept == {"k1": "r1", "k2": "r7", "k3": "r4"}
    assert dropped == ["r2", "r3", "r5", "r6"]
