"""MLflow calls on one background thread, in order, retried while the tracking server is unreachable.

A search never waits on MLflow (logging a candidate costs ~0.05-0.1 s, a fifth of scoring one on the demo
zoo) and never dies of its outage: `candidates.jsonl` is the record of what was evaluated, and MLflow is
brought up to date with it. What is still unsynced when the search ends is reported, and the next run on
the same output directory syncs it (`SearchTracker.reconcile`).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rich.console import Console

RETRY_DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0)
"""Seconds between attempts of a failing call; the last repeats until the call succeeds or the queue closes."""


@dataclass(frozen=True)
class _Call:
    description: str
    function: Callable[[], Any]


class TrackingQueue:
    def __init__(self, console: Console, retry_delays: Sequence[float] = RETRY_DELAYS) -> None:
        self._console = console
        self._delays = tuple(retry_delays)
        self._calls: queue.Queue[_Call | None] = queue.Queue()
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._waiting: list[_Call] = []
        self._unreachable_since: float | None = None
        self.errors: list[str] = []
        self._thread = threading.Thread(target=self._work, name="evomerge-mlflow", daemon=True)
        self._thread.start()

    def submit(self, description: str, function: Callable[[], Any]) -> None:
        """Run `function` in the background after everything submitted before it."""
        call = _Call(description, function)
        with self._lock:
            self._waiting.append(call)
        self._calls.put(call)

    def pending(self) -> list[str]:
        """Descriptions of the calls not yet done, oldest first."""
        with self._lock:
            return [call.description for call in self._waiting]

    def close(self, timeout: float) -> list[str]:
        """Wait up to `timeout` seconds for every call to finish, then stop; returns what is left undone."""
        deadline = time.monotonic() + timeout
        while self.pending() and time.monotonic() < deadline:
            time.sleep(0.02)
        self._closing.set()
        self._calls.put(None)
        left = self.pending()
        if not left:
            self._thread.join(timeout=max(0.0, deadline - time.monotonic()) + 1.0)
        return left

    def _work(self) -> None:
        while True:
            call = self._calls.get()
            if call is None:
                return
            if self._run_until_done(call):
                with self._lock:
                    self._waiting.remove(call)

    def _run_until_done(self, call: _Call) -> bool:
        attempt = 0
        while not self._closing.is_set():
            try:
                call.function()
            except Exception as error:  # noqa: BLE001 - any failure leaves the call queued and retried
                self._note_failure(call, error)
                delay = self._delays[min(attempt, len(self._delays) - 1)] if self._delays else 0.0
                attempt += 1
                if self._closing.wait(delay):
                    return False
                continue
            if self._unreachable_since is not None:
                seconds = time.monotonic() - self._unreachable_since
                self._console.print(f"MLflow reachable again after {seconds:.0f} s: syncing the kept results")
                self._unreachable_since = None
            return True
        return False

    def _note_failure(self, call: _Call, error: Exception) -> None:
        message = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        self.errors.append(f"{call.description}: {message}")
        if self._unreachable_since is None:
            self._unreachable_since = time.monotonic()
            self._console.print(
                f"[yellow]MLflow call failed ({call.description}): {message[:300]}[/]\n"
                "the search goes on; results are kept in candidates.jsonl and logged when MLflow answers again"
            )
