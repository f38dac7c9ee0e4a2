"""A real Dask cluster for tests and benchmarks: `dask scheduler` and `dask worker` processes, as a user
starts them, every server on 127.0.0.1 (free ports, dashboards on 127.0.0.1 too)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

DASK = str(Path(sys.executable).parent / "dask")
"""The `dask` command of this environment: `dask scheduler`, `dask worker`."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Cluster:
    address: str
    directory: Path
    env: dict[str, str]
    scheduler: subprocess.Popen[bytes]
    workers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start_worker(self, name: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """A plain worker as a user starts one (no nanny: a kill is final, as a lost machine is)."""
        log = (self.directory / f"{name}.log").open("wb")
        command = [DASK, "worker", self.address, "--nthreads", "1", "--no-nanny", "--memory-limit", "0"]
        command += ["--host", "127.0.0.1", "--name", name, "--no-dashboard"]
        command += ["--local-directory", str(self.directory / name)]
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env={**self.env, **(env or {})}, start_new_session=True
        )
        self.workers[name] = process
        return process

    def kill_worker(self, name: str) -> None:
        os.killpg(self.workers[name].pid, signal.SIGKILL)
        self.workers[name].wait(timeout=30)

    def wait_for_workers(self, count: int, timeout: float = 120.0) -> None:
        from distributed import Client

        with Client(self.address, set_as_default=False, timeout=30) as client:
            client.wait_for_workers(count, timeout=timeout)

    def log(self, name: str) -> str:
        return (self.directory / f"{name}.log").read_text(errors="replace")


@contextlib.contextmanager
def dask_cluster(
    directory: Path, workers: list[str], env: dict[str, str] | None = None, allowed_failures: int | None = None
) -> Iterator[Cluster]:
    """A scheduler and `workers` (names); `allowed_failures` sets how often a candidate may lose its worker
    before Dask gives up on it (0: at once, `KilledWorker`)."""
    directory.mkdir(parents=True, exist_ok=True)
    environment = {**os.environ, **(env or {})}
    if allowed_failures is not None:
        environment["DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES"] = str(allowed_failures)
    port = free_port()
    log = (directory / "scheduler.log").open("wb")
    scheduler = subprocess.Popen(
        [DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--dashboard-address", "127.0.0.1:0"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=environment,
        start_new_session=True,
    )
    cluster = Cluster(f"tcp://127.0.0.1:{port}", directory, environment, scheduler)
    try:
        deadline = time.monotonic() + 60
        while b"Scheduler at" not in (directory / "scheduler.log").read_bytes():
            if scheduler.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dask scheduler did not start:\n{cluster.log('scheduler')}")
            time.sleep(0.2)
        for name in workers:
            cluster.start_worker(name)
        if workers:
            cluster.wait_for_workers(len(workers))
        yield cluster
    finally:
        for process in [*cluster.workers.values(), scheduler]:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=30)
