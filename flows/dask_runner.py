"""The Dask runner: a generation's candidates scored at once, one per Dask worker, each worker with its own
workbench (tasks/dask_worker.py).

The Prefect task runs stay in the flow process: each candidate's `score` task waits for its Dask future
(submitted for the whole batch as soon as the generation is asked for), so Prefect's content-key cache,
persisted results and retries work as with the local runner, and no Prefect code runs in a worker (a
task run executed inside a Dask worker costs ten times as much, ../shared/scaleout-notes.md). Results are
told in the order they were asked, so the search is the same on any number of workers.

A worker killed mid-candidate: the scheduler reruns the candidate elsewhere. When Dask gives up on it
(`KilledWorker`), the task run fails and Prefect retries it, submitting it again.
"""

from __future__ import annotations

import logging
import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distributed import Client, Future, Nanny, Scheduler, SpecCluster
from distributed.scheduler import KilledWorker
from prefect.futures import PrefectFuture
from prefect.utilities.annotations import quote

from flows import stages
from flows.console import console
from genetics.candidate import Candidate, Outcome
from genetics.search_config import RunnerSettings
from tasks.dask_worker import PLUGIN_NAME, BenchSpec, WorkbenchPlugin, score_on_worker
from tasks.errors import CandidateAbandoned, EvomergeError, WorkerSetupError
from tasks.merge.recipe import Recipe

WORKER_START_SECONDS = 120.0
SCHEDULER_CONNECT_SECONDS = 30.0


def local_cluster(settings: RunnerSettings, directory: Path) -> SpecCluster:
    """`settings.workers` worker processes on this machine, every server on 127.0.0.1 (dashboard on a free
    port); with GPUs, worker i sees only GPU i and offers one `GPU` resource."""
    workers = {}
    for index in range(settings.workers):
        options: dict[str, Any] = {
            "nthreads": settings.threads_per_worker,
            "memory_limit": 0,  # the parents are unmanaged memory to Dask: a limit would restart the worker
            "host": "127.0.0.1",
            "name": f"evomerge-{index}",
            "local_directory": str(directory),
        }
        if settings.gpus_per_worker:
            first = index * settings.gpus_per_worker
            devices = ",".join(str(first + gpu) for gpu in range(settings.gpus_per_worker))
            options["env"] = {"CUDA_VISIBLE_DEVICES": devices}
            options["resources"] = {"GPU": settings.gpus_per_worker}
        workers[f"evomerge-{index}"] = {"cls": Nanny, "options": options}
    scheduler = {"cls": Scheduler, "options": {"host": "127.0.0.1", "dashboard_address": "127.0.0.1:0"}}
    return SpecCluster(workers=workers, scheduler=scheduler, name="evomerge")


@contextmanager
def dask_client(settings: RunnerSettings, directory: Path) -> Iterator[Client]:
    """A client of the cluster at `settings.address`, or of a local cluster closed on exit (an existing
    cluster stays up: a killed search resumes on it)."""
    if settings.address:
        try:
            client = Client(settings.address, set_as_default=False, timeout=SCHEDULER_CONNECT_SECONDS)
        except OSError as error:  # nothing listens there, or it is not a Dask scheduler
            raise EvomergeError(
                f"runner address {settings.address}: no Dask scheduler answered ({error}); start one "
                "(dask scheduler --host HOST --port PORT) or leave out --address for a local cluster"
            ) from None
        try:
            yield client
        finally:
            client.close()
        return
    directory.mkdir(parents=True, exist_ok=True)
    # the cluster's INFO lines (every worker joining and leaving) would drown the search's own display
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")  # read by the worker processes
    logging.getLogger("distributed").setLevel(logging.WARNING)
    cluster = local_cluster(settings, directory)
    try:
        with Client(cluster, set_as_default=False) as client:
            yield client
    finally:
        cluster.close()


@dataclass
class WorkerLoad:
    candidates: int = 0
    busy_seconds: float = 0.0


@dataclass
class DaskRunner:
    client: Client
    resources: dict[str, float] | None = None
    function: Callable[..., Outcome] = score_on_worker
    """What a worker runs per candidate: (recipe, label, parent=None) -> Outcome."""
    pending: dict[str, Future] = field(default_factory=dict)
    """Candidate key -> its Dask future, from `start` until its outcome is taken."""
    load: dict[str, WorkerLoad] = field(default_factory=lambda: defaultdict(WorkerLoad))
    started: float | None = None
    """When the first batch was submitted; `finished`: when the last outcome was taken."""
    finished: float | None = None
    workers_seen: int = 0
    resubmitted: int = 0
    """Candidates submitted again by a retry of their task run (their worker was lost)."""
    abandoned: set[str] = field(default_factory=set)
    """Keys of candidates cancelled because the loop stopped before taking them (nothing to retry)."""
    lost: dict[str, str] = field(default_factory=dict)
    """Candidate key -> why its last attempt failed (for the retry's message)."""

    def prepare(self, spec: BenchSpec | None) -> None:
        """Register the workbench plugin (every worker builds its bench, now or when it joins) and wait
        for a worker."""
        if spec is not None:
            self.client.register_plugin(WorkbenchPlugin(spec), name=PLUGIN_NAME)
        try:
            self.client.wait_for_workers(1, timeout=WORKER_START_SECONDS)
        except TimeoutError:
            raise EvomergeError(
                f"Dask scheduler {self.client.scheduler.address}: no worker joined within "
                f"{WORKER_START_SECONDS:.0f} s (a scheduler given by --address needs workers of its own: "
                f"dask worker {self.client.scheduler.address} --nthreads 1 --memory-limit 0)"
            ) from None

    def start(self, batch: Sequence[Candidate]) -> None:
        if self.started is None:
            self.started = time.perf_counter()
        for candidate in batch:
            self.pending[candidate.key] = self._submit(candidate.recipe, candidate.candidate_id)

    def score(self, batch: Sequence[Candidate]) -> Iterator[Outcome]:
        """Every candidate's task run waits on its own thread, so that the flow's per-candidate work
        (Prefect's task run, the result) overlaps the workers' instead of following the last of them."""
        runs = [
            stages.score.submit(quote(self), quote(candidate.recipe), candidate.candidate_id, key=candidate.key)
            for candidate in batch
        ]
        try:
            for candidate, run in zip(batch, runs, strict=True):
                yield self._outcome(candidate, run)
        finally:
            for candidate in batch:  # a stopped loop abandons the rest
                future = self.pending.pop(candidate.key, None)
                if future is not None:
                    self.abandoned.add(candidate.key)
                    future.cancel()

    def score_parent(self, name: str, attempts: int = 3) -> Outcome:
        """A parent scored on a worker; a worker lost meanwhile costs another attempt."""
        for attempt in range(attempts):
            try:
                return self._submit(None, name, parent=name).result()
            except KilledWorker:
                if attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    def result_of(self, recipe: Recipe, label: str, key: str) -> Outcome:
        """One attempt of a candidate's `score` task. Whatever Dask gave up on (`KilledWorker`: the workers
        running it died) fails this attempt; Prefect's retry then submits the candidate again."""
        future = self.pending.get(key)
        reason = self.lost.pop(key, None)
        if future is None or reason is not None:
            if reason is not None:
                self.resubmitted += 1
                console.print(f"[yellow]{label}: Dask gave up on it ({reason}); Prefect retries it[/]", soft_wrap=True)
            future = self.pending[key] = self._submit(recipe, label)
        try:
            return future.result()
        except Exception as error:
            if key in self.abandoned:
                raise CandidateAbandoned(f"{label}: the search stopped before its result was taken") from None
            self.lost[key] = f"{type(error).__name__}: {error}"
            raise

    def _submit(self, recipe: Recipe | None, label: str, parent: str | None = None) -> Future:
        return self.client.submit(
            self.function,
            recipe,
            label,
            parent,
            pure=False,
            key=f"score-{label}-{time.time_ns()}",
            resources=self.resources,
        )

    def _outcome(self, candidate: Candidate, run: PrefectFuture[Outcome]) -> Outcome:
        try:
            outcome = run.result()
        except WorkerSetupError:
            raise
        except EvomergeError:
            raise
        except Exception as error:  # noqa: BLE001 - Dask gave up after Prefect's retries: the candidate's failure
            outcome = Outcome("failed", error=f"{type(error).__name__}: {error}")
        finally:
            self.pending.pop(candidate.key, None)
            self.lost.pop(candidate.key, None)
        return self._counted(outcome)

    def _counted(self, outcome: Outcome) -> Outcome:
        self.finished = time.perf_counter()
        if outcome.worker:
            self.load[outcome.worker].candidates += 1
            self.load[outcome.worker].busy_seconds += outcome.seconds
        self.workers_seen = max(self.workers_seen, len(self.client.scheduler_info().get("workers", {})))
        return outcome

    def busy_line(self) -> str:
        """`busy/workers` as the scheduler sees them now."""
        processing = self.client.processing()
        busy = sum(1 for tasks in processing.values() if tasks)
        return f"workers {busy}/{len(processing)} busy"

    def report(self) -> dict[str, Any]:
        """Per-worker candidates and busy time, and the share of worker time left idle since the first
        batch was submitted (the generation barrier, start-up, the flow's own work)."""
        wall = self.finished - self.started if self.started is not None and self.finished is not None else 0.0
        busy = sum(load.busy_seconds for load in self.load.values())
        workers = max(self.workers_seen, len(self.load), 1)
        return {
            "name": "dask",
            "workers": {
                name: {"candidates": load.candidates, "busy_seconds": round(load.busy_seconds, 3)}
                for name, load in sorted(self.load.items())
            },
            "resubmitted": self.resubmitted,
            "idle_share": round(max(0.0, 1 - busy / (workers * wall)), 4) if wall > 0 else None,
        }
