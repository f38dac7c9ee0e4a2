"""Training worker processes, each started with the numerics' environment.

A worker is `python -m tasks.zoo.training`: a process of its own, so its environment is set before torch,
MKL or OpenBLAS load (they read it once), and the parent's own environment stays as it is. Importing
torch and transformers costs a worker seconds of CPU, so workers start ahead of their jobs, one after
another (each once the previous one is ready): the experts' workers import on the core the base's
training leaves free, and wait for their job on stdin.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from types import TracebackType
from typing import IO

from tasks.errors import EvomergeError
from tasks.zoo.numerics import ZooNumerics, worker_environment
from tasks.zoo.training import READY_LINE, RESULT_PREFIX, TrainingJob, TrainingResult

SOURCE_ROOT = Path(__file__).resolve().parents[2]
"""The folder holding this `tasks` package: workers import the same code as the parent."""

_STDERR_TAIL = 3000
SHORTER_JOB_NICENESS = 5
"""Niceness of jobs shorter than the longest one running beside them (Linux gives nice 0 three times the
CPU share of nice 5)."""


class TrainingWorkerError(EvomergeError):
    """A training worker exited without a result; the message carries the end of its stderr."""


class _Worker:
    def __init__(self, environment: dict[str, str]) -> None:
        # A file, not a pipe: a worker that writes much before its job arrives never blocks on a full pipe.
        self.stderr: IO[str] = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115 (closed in kill)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tasks.zoo.training"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
            env=environment,
        )
        self.ready = threading.Event()

    def wait_ready(self) -> None:
        """Until the worker has imported everything (or died: `run` then reports why)."""
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.rstrip("\n") == READY_LINE:
                break
        self.ready.set()

    def run(self, job: TrainingJob, niceness: int = 0) -> TrainingResult:
        self.ready.wait()
        if niceness:
            with contextlib.suppress(OSError):  # a lower priority is only a wish: never fail a job for it
                os.setpriority(os.PRIO_PROCESS, self.process.pid, niceness)
        try:
            stdout, _ = self.process.communicate(job.model_dump_json())
        except BrokenPipeError:
            stdout = ""
            self.process.wait()
        lines = [line for line in stdout.splitlines() if line.startswith(RESULT_PREFIX)]
        if self.process.returncode == 0 and lines:
            return TrainingResult.model_validate_json(lines[-1][len(RESULT_PREFIX) :])
        self.stderr.seek(0)
        tail = self.stderr.read().strip()[-_STDERR_TAIL:] or "(no output)"
        raise TrainingWorkerError(f"training {job.name} failed (worker exit code {self.process.returncode}):\n{tail}")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.stderr.close()


class TrainingWorkers:
    """`count` workers started ahead, one after another; `run` hands each job to the next free one."""

    def __init__(self, numerics: ZooNumerics, count: int) -> None:
        self._environment = _environment(numerics)
        self._idle: list[_Worker] = []
        self._all: list[_Worker] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        first = self._spawn()
        self._starter = threading.Thread(target=self._start, args=(first, count - 1), daemon=True)
        self._starter.start()

    def _start(self, worker: _Worker | None, more: int) -> None:
        while worker is not None:
            worker.wait_ready()
            if more <= 0:
                break
            more -= 1
            worker = self._spawn()
        # Linux kills a worker when the thread that started it ends (the worker's parent-death signal is
        # tied to that thread), so this thread lives as long as its workers.
        self._closed.wait()

    def _spawn(self) -> _Worker | None:
        with self._lock:
            if self._closed.is_set():
                return None
            worker = _Worker(self._environment)
            self._idle.append(worker)
            self._all.append(worker)
            return worker

    def _take(self) -> _Worker:
        with self._lock:
            if self._idle:
                return self._idle.pop(0)
        worker = self._spawn()
        if worker is None:
            raise TrainingWorkerError("training workers were closed")
        with self._lock:
            self._idle.remove(worker)
        threading.Thread(target=worker.wait_ready, daemon=True).start()
        return worker

    def run(
        self,
        jobs: Sequence[TrainingJob],
        parallel: int,
        on_finished: Callable[[TrainingResult], None] | None = None,
    ) -> list[TrainingResult]:
        """Run `jobs`, at most `parallel` at a time; results in the order of `jobs`. The first failure is
        raised (close the workers to stop the others).

        Jobs shorter than the longest run at a lower priority: when there are more jobs than cores, the
        longest (the add expert's 600 steps) keeps a core to itself and the others share the rest, so they
        all end at about the same time instead of the longest one running alone at the end.
        """
        longest = max((job.stage.steps for job in jobs), default=0)

        def run(job: TrainingJob) -> TrainingResult:
            return self._take().run(job, niceness=SHORTER_JOB_NICENESS if job.stage.steps < longest else 0)

        with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
            futures = {pool.submit(run, job): index for index, job in enumerate(jobs)}
            results: dict[int, TrainingResult] = {}
            try:
                for future in as_completed(futures):
                    results[futures[future]] = future.result()
                    if on_finished is not None:
                        on_finished(results[futures[future]])
            except BaseException:
                self.close()
                raise
        return [results[index] for index in range(len(jobs))]

    def close(self) -> None:
        """Kill every worker still running (idle ones, and busy ones after a failure or an interrupt)."""
        with self._lock:
            self._closed.set()
            workers = list(self._all)
        for worker in workers:
            worker.kill()
        self._starter.join()

    def __enter__(self) -> TrainingWorkers:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


def _environment(numerics: ZooNumerics) -> dict[str, str]:
    environment = worker_environment(numerics)
    paths = [str(SOURCE_ROOT), *filter(None, environment.get("PYTHONPATH", "").split(os.pathsep))]
    environment["PYTHONPATH"] = os.pathsep.join(paths)
    environment["EVOMERGE_TRAINING_PARENT"] = str(os.getpid())
    environment.setdefault("TOKENIZERS_PARALLELISM", "false")
    return environment
