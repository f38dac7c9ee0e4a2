"""What a search keeps on disk so that a kill -9 at any moment loses nothing and repeats nothing.

- `candidates.jsonl`: one line per evaluated candidate, appended and flushed the moment it finishes, and
  fsynced before the next checkpoint (`CandidateLog`). It is the evaluated-candidate index: a key found
  there is never evaluated again.
- `checkpoint.pkl`: after every generation, the whole algorithm (population, strategy, its random states,
  hall of fame or Pareto front) plus the search's own progress, written to a temporary file, fsynced and
  renamed over the previous one. It is evomerge's own file, read back only from the output directory
  evomerge wrote it to.

Resuming restores the checkpoint and replays the generation that was running: the algorithm asks for the
same individuals (same seed, same state), their keys are found in the log, and only the candidates that
had not finished are evaluated.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from genetics.algorithm import SearchAlgorithm
from genetics.candidate import Candidate
from genetics.loop import GenerationStats
from genetics.search_config import SearchConfig
from tasks.atomic import write_atomically
from tasks.errors import EvomergeError
from tasks.faults import fault_point

CHECKPOINT_NAME = "checkpoint.pkl"
CANDIDATES_NAME = "candidates.jsonl"
CHECKPOINT_VERSION = 2
"""2: the algorithms hold `genetics.candidate.Candidate`s."""


def config_identity(config: SearchConfig) -> str:
    """What must not change for a search to be resumed: everything but the budget, the runner, the output
    place and the registry name (raising the budget and rerunning continues the same search, on any runner)."""
    data = config.model_dump(mode="json", exclude={"budget", "runner", "output_dir", "registered_model"})
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


@dataclass
class Checkpoint:
    config_identity: str
    algorithm: SearchAlgorithm
    mlflow_run_id: str
    parent_hashes: dict[str, str]
    """Content sha256 of each parent model: a search never continues on parents that changed."""
    parents: dict[str, dict[str, float]]
    history: list[GenerationStats] = field(default_factory=list)
    stop_reason: str | None = None
    """Set once the search loop has ended; a rerun then only finishes the report."""
    version: int = CHECKPOINT_VERSION


def save_checkpoint(directory: Path, checkpoint: Checkpoint) -> None:
    write_checkpoint(directory, checkpoint_bytes(checkpoint))


def checkpoint_bytes(checkpoint: Checkpoint) -> bytes:
    """The checkpoint as it is now, to be written later by `write_checkpoint` (the state may move on meanwhile)."""
    return pickle.dumps(checkpoint, protocol=pickle.HIGHEST_PROTOCOL)


def write_checkpoint(directory: Path, data: bytes) -> None:
    """Replace the checkpoint atomically with `data` (from `checkpoint_bytes`)."""
    write_atomically(directory / CHECKPOINT_NAME, data, before_rename=lambda: fault_point("checkpoint"))


def load_checkpoint(directory: Path, config: SearchConfig) -> Checkpoint | None:
    """The checkpoint of this same search in `directory`, None when there is none; a checkpoint of another
    search (a changed config) is an error, so that one search never continues from another's state."""
    path = directory / CHECKPOINT_NAME
    if not path.is_file():
        return None
    try:
        with path.open("rb") as handle:
            checkpoint = pickle.load(handle)  # noqa: S301 - our own file, written by save_checkpoint
    except Exception as error:  # noqa: BLE001 - any unreadable checkpoint gets the same message
        raise EvomergeError(f"{path}: unreadable checkpoint ({type(error).__name__}: {error})") from None
    if not isinstance(checkpoint, Checkpoint) or checkpoint.version != CHECKPOINT_VERSION:
        raise EvomergeError(f"{path}: not a checkpoint this evomerge version can resume")
    if checkpoint.config_identity != config_identity(config):
        raise EvomergeError(
            f"{directory} holds a search with a different config (only `budget` may change between runs); "
            "use another output directory (--out) to start a new search"
        )
    return checkpoint


def read_candidate_log(directory: Path) -> list[Candidate]:
    """Every finished candidate in the log. A line cut short by a kill is dropped (and cut from the file),
    since its candidate will simply be evaluated again."""
    path = directory / CANDIDATES_NAME
    if not path.is_file():
        return []
    data = path.read_bytes()
    complete = data[: data.rfind(b"\n") + 1]
    if len(complete) != len(data):
        with path.open("r+b") as handle:
            handle.truncate(len(complete))
    return [Candidate.from_json(json.loads(line)) for line in complete.decode().splitlines() if line]


class CandidateLog:
    """`candidates.jsonl`, appended one line per finished candidate.

    A line is written and flushed at once, so a search killed (kill -9) right after keeps it: the kernel
    holds it. The fsync that also makes it survive a crash of the machine runs on a thread, off the search
    loop, where it cost ~1 ms per candidate. `sync` waits for those fsyncs (and raises their error), and the
    search calls it before every checkpoint: a checkpoint on disk never names a generation whose candidates
    are not on disk too."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / CANDIDATES_NAME
        self._handle: IO[str] | None = None
        self._fsyncs = ThreadPoolExecutor(max_workers=1, thread_name_prefix="evomerge-fsync")
        self._pending: list[Future[None]] = []

    def append(self, candidate: Candidate) -> None:
        if self._handle is None:
            self._handle = self.path.open("a")
        self._handle.write(json.dumps(candidate.to_json()) + "\n")
        self._handle.flush()
        self._pending = [future for future in self._pending if not future.done() or future.exception()]
        self._pending.append(self._fsyncs.submit(os.fsync, self._handle.fileno()))

    def sync(self) -> None:
        pending, self._pending = self._pending, []
        for future in pending:
            future.result()

    def close(self) -> None:
        try:
            self.sync()
        finally:
            if self._handle is not None:
                self._handle.close()
                self._handle = None
            self._fsyncs.shutdown()


def write_json_atomically(path: Path, data: Any) -> None:
    write_atomically(path, json.dumps(data, indent=2).encode())
