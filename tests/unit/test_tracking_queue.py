"""The background MLflow queue: calls run in order, a failing call is retried until it succeeds (the
tracking server came back), and closing reports what could not be done instead of waiting forever."""

from __future__ import annotations

import io
import threading

from rich.console import Console

from flows.tracking import reconcile_candidate_runs
from flows.tracking_queue import TrackingQueue


def quiet_console() -> Console:
    return Console(file=io.StringIO())


def test_calls_run_in_submission_order() -> None:
    done: list[int] = []
    tracking = TrackingQueue(quiet_console(), retry_delays=(0.0,))
    for index in range(50):
        tracking.submit(f"call {index}", lambda index=index: done.append(index))
    assert tracking.close(timeout=10) == []
    assert done == list(range(50))


def test_a_failing_call_is_retried_and_later_calls_wait_for_it() -> None:
    attempts: list[str] = []
    outage = {"left": 3}

    def flaky() -> None:
        attempts.append("flaky")
        if outage["left"]:
            outage["left"] -= 1
            raise ConnectionError("tracking server unreachable")

    tracking = TrackingQueue(quiet_console(), retry_delays=(0.0,))
    tracking.submit("flaky", flaky)
    tracking.submit("after", lambda: attempts.append("after"))
    assert tracking.close(timeout=10) == []
    assert attempts == ["flaky"] * 4 + ["after"]
    assert len(tracking.errors) == 3 and "tracking server unreachable" in tracking.errors[0]


def test_close_returns_what_is_still_undone_after_the_timeout() -> None:
    release = threading.Event()
    tracking = TrackingQueue(quiet_console(), retry_delays=(0.01,))

    def down() -> None:
        if not release.is_set():
            raise ConnectionError("down")

    tracking.submit("candidate g00-c00", down)
    tracking.submit("candidate g00-c01", lambda: None)
    assert tracking.close(timeout=0.2) == ["candidate g00-c00", "candidate g00-c01"]
    release.set()


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
