"""A process that merges the search's next candidate while the current one is being scored.

On the demo zoo a candidate's merge costs ~14 ms against ~190 ms of forward passes, and in the search
process it can only run between two evaluations: on a thread it would fight the forward passes for the
GIL (measured: the forward passes slowed by what the merge saved). This worker process holds its own
copy of the parents and writes each merge straight into the workbench's spare model, whose tensors live
in shared memory; the search only sends the recipe and reads back the merged tensors' sha256.

It works on whichever of the workbench's two models is spare (both are shared), one merge at a time, and
dies with the search.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import shutil
from pathlib import Path
from typing import Any

import torch
import torch.multiprocessing

from tasks.child_process import die_with
from tasks.errors import EvomergeError
from tasks.merge.recipe import Recipe


class MergeWorkerLost(EvomergeError):
    """The worker process is gone (killed, out of memory): the workbench merges in-process from then on."""


SHARED_MEMORY = Path("/dev/shm")


def shared_memory_shortfall(needed_bytes: int, folder: Path = SHARED_MEMORY) -> str | None:
    """Why `needed_bytes` of models should not go to shared memory here, or None when they fit twice over.
    A full /dev/shm (64 MB in a default Docker container) does not fail cleanly: the process writing a page
    that does not fit dies of SIGBUS, so the room is checked first."""
    if not folder.is_dir():
        return None  # no tmpfs to check (not Linux): torch shares through its own files
    free = shutil.disk_usage(folder).free
    if free >= 2 * needed_bytes:
        return None
    return (
        f"{folder} has {free / 2**20:.0f} MiB free, the spare and live models need {needed_bytes / 2**20:.0f} MiB "
        "there (twice that free, for headroom); a larger --shm-size would allow it"
    )


class MergeAheadWorker:
    def __init__(self, paths: dict[str, Path], slots: list[dict[str, torch.Tensor]]) -> None:
        """`slots`: each model's tensors by name; moved to shared memory here (in place: the models keep
        working on them)."""
        for state in slots:
            for tensor in state.values():
                tensor.share_memory_()
        context = torch.multiprocessing.get_context("spawn")  # never fork a process holding torch threads
        self._connection, child = context.Pipe()
        shared = [{name: tensor.detach() for name, tensor in state.items()} for state in slots]
        self._process = context.Process(
            target=_serve,
            args=(child, {name: str(path) for name, path in paths.items()}, shared, os.getpid()),
            name="evomerge-merge-ahead",
            daemon=True,
        )
        self._process.start()
        child.close()
        self._pending = False
        self._ready = False

    def ready(self, timeout: float = 0.0) -> bool:
        """Whether the worker has imported what it needs and opened the parents (waiting up to `timeout`
        seconds): until then the search merges in-process rather than wait for it."""
        if not self._ready and self._connection.poll(timeout):
            try:
                self._ready = self._connection.recv() == ("ready", None)
            except (OSError, EOFError) as error:
                raise MergeWorkerLost(f"the merge-ahead worker is gone: {error}") from error
        return self._ready

    def start(self, slot: int, recipe: Recipe) -> None:
        """Begin merging `recipe` into model `slot`; one merge at a time (`result` collects it)."""
        if self._pending:
            raise RuntimeError("a merge is already running ahead: collect its result first")
        try:
            self._connection.send((slot, recipe))
        except (OSError, EOFError) as error:
            raise MergeWorkerLost(f"the merge-ahead worker is gone: {error}") from error
        self._pending = True

    def result(self) -> str:
        """Wait for the merge started last: the merged tensors' sha256, or the merge's error raised."""
        self._pending = False
        try:
            status, value = self._connection.recv()
        except (OSError, EOFError) as error:
            raise MergeWorkerLost(
                f"the merge-ahead worker is gone (exit code {self._process.exitcode}): {error}"
            ) from error
        if status == "error":
            raise value
        return str(value)

    def close(self) -> None:
        with contextlib.suppress(OSError, EOFError):
            self._connection.send(None)
        self._process.join(timeout=5)
        if self._process.is_alive():
            self._process.kill()
        self._connection.close()


def _serve(connection: Any, paths: dict[str, str], slots: list[dict[str, torch.Tensor]], parent_pid: int) -> None:
    """The worker: the parents opened once and laid flat, then one merge per request."""
    die_with(parent_pid)
    torch.set_num_threads(1)
    from tasks.merge.spans import ResidentParents

    parents = ResidentParents({name: Path(path) for name, path in paths.items()})
    connection.send(("ready", None))
    while True:
        try:
            request = connection.recv()
        except (OSError, EOFError):
            return
        if request is None:
            return
        slot, recipe = request
        try:
            reply: tuple[str, Any] = ("ok", parents.merge_into(recipe, slots[slot]))
        except Exception as error:  # noqa: BLE001 - every failure goes back to the search, which decides
            reply = ("error", error)
            try:
                pickle.dumps(error)
            except Exception:  # noqa: BLE001
                reply = ("error", EvomergeError(f"{type(error).__name__}: {error}"))
        connection.send(reply)
