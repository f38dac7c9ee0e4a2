"""MLflow calls in a separate process, in order, retried while the tracking server is unreachable.

A search never waits on MLflow (logging a candidate costs ~0.05-0.1 s, a fifth of scoring one on the demo
zoo) and never dies of its outage: `candidates.jsonl` is the record of what was evaluated, and MLflow is
brought up to date with it. What is still unsynced when the search ends is reported, and the next run on
the same output directory syncs it (`SearchTracker.reconcile`).

A process, not a thread: MLflow's client is Python through and through, and on a thread it held the GIL
while the search ran thousands of tiny torch ops, each of which gives the GIL up and then may wait for the
interpreter's switch interval to get it back. With this worker (and the span merge, tasks/merge/spans.py)
the demo search loop spends 17.0-17.8 % of its time outside forward passes, against 24.4-25.2 % for the
thread, alternating runs of tests/benchmarks/search_throughput.py. Calls are therefore pickled (a `SearchTracker`
pickles as a reference to the same run, see `SearchTracker.__reduce__`), run in the worker, and reported
back; the worker dies with the search (a kill -9 of the search leaves no orphan logging on).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from rich.console import Console

from tasks import faults
from tasks.child_process import die_with

RETRY_DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0)
"""Seconds between attempts of a failing call; the last repeats until the call succeeds or the queue closes."""


class TrackingQueue:
    def __init__(self, console: Console, retry_delays: Sequence[float] = RETRY_DELAYS) -> None:
        self._console = console
        context = multiprocessing.get_context("spawn")  # never fork a process holding torch and Prefect threads
        self._calls: Any = context.Queue()
        self._reports: Any = context.Queue()
        self._lock = threading.Lock()
        self._waiting: dict[int, str] = {}
        self._next = 0
        self.errors: list[str] = []
        self._process = context.Process(
            target=_serve,
            args=(self._calls, self._reports, tuple(retry_delays), os.getpid(), faults.fault_scope()),
            name="evomerge-mlflow",
            daemon=True,
        )
        self._process.start()
        self._listener = threading.Thread(target=self._listen, name="evomerge-mlflow-reports", daemon=True)
        self._listener.start()

    def submit(self, description: str, function: Callable[[], Any]) -> None:
        """Run `function` in the worker after everything submitted before it. It is pickled here, so a call
        that cannot cross to the worker fails at once, in the caller."""
        payload = pickle.dumps(function)
        with self._lock:
            self._next += 1
            self._waiting[self._next] = description
            self._calls.put((self._next, description, payload))

    def pending(self) -> list[str]:
        """Descriptions of the calls not yet done, oldest first."""
        with self._lock:
            return list(self._waiting.values())

    def wait(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for every call submitted so far to finish; True when they have."""
        deadline = time.monotonic() + timeout
        while self.pending() and self._process.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        return not self.pending()

    def close(self, timeout: float) -> list[str]:
        """Wait up to `timeout` seconds for every call to finish, then stop; returns what is left undone."""
        deadline = time.monotonic() + timeout
        self.wait(timeout)
        left = self.pending()
        if left or not self._process.is_alive():
            self._process.terminate()  # mid-retry: what it had not done is reported, and synced next time
            # what the worker never read may still fill the pipe, and at exit the queue's feeder thread
            # would wait forever for a reader: those calls are in `left`, so nothing is lost by dropping them
            self._calls.cancel_join_thread()
        else:
            self._calls.put(None)
        self._process.join(timeout=max(0.0, deadline - time.monotonic()) + 5.0)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._reports.put(None)
        self._listener.join(timeout=5.0)
        return left

    def _listen(self) -> None:
        while True:
            report = self._reports.get()
            if report is None:
                return
            kind, sequence, detail = report
            if kind == "done":
                with self._lock:
                    self._waiting.pop(sequence, None)
                if detail is not None:
                    self._console.print(f"MLflow reachable again after {detail:.0f} s: syncing the kept results")
            elif kind == "failed":
                description, message, first = detail
                self.errors.append(f"{description}: {message}")
                if first:
                    self._console.print(
                        f"[yellow]MLflow call failed ({description}): {message[:300]}[/]\n"
                        "the search goes on; results are kept in candidates.jsonl and logged when MLflow answers "
                        "again"
                    )


def _serve(calls: Any, reports: Any, delays: tuple[float, ...], search_pid: int, fault_scope: str) -> None:
    """The worker: runs each call until it succeeds, reporting failures and completions."""
    die_with(search_pid)
    with contextlib.suppress(OSError, AttributeError):
        os.nice(10)  # background work: the search's own merges and forward passes come first
    faults.set_fault_scope(fault_scope)
    faults.kill_also(search_pid)  # an injected kill mid-logging kills the search, as it did on a thread
    import flows.tracking  # noqa: F401  (MLflow's imports take ~1.5 s: done now, while the search sets up)

    unreachable_since: float | None = None
    while True:
        item = calls.get()
        if item is None:
            return
        sequence, description, payload = item
        attempt = 0
        while True:
            try:
                pickle.loads(payload)()
            except Exception as error:  # noqa: BLE001 - any failure leaves the call queued and retried
                message = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
                reports.put(("failed", sequence, (description, message, unreachable_since is None)))
                if unreachable_since is None:
                    unreachable_since = time.monotonic()
                time.sleep(delays[min(attempt, len(delays) - 1)] if delays else 0.0)
                attempt += 1
                continue
            recovered = None if unreachable_since is None else time.monotonic() - unreachable_since
            unreachable_since = None
            reports.put(("done", sequence, recovered))
            break
