"""candidates.jsonl as the search writes it (`CandidateLog`): a line is in the file the moment `append`
returns (a kill -9 right after keeps it), its fsync runs off the search's thread, and `sync` waits for the
fsyncs and raises their error."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from flows.search_state import CANDIDATES_NAME, CandidateLog, read_candidate_log
from genetics.candidate import Candidate
from tasks.merge.recipe import parse_recipe


def record(index: int) -> Candidate:
    recipe = parse_recipe(
        {
            "merge_method": "task_arithmetic",
            "base_model": "zoo:base",
            "models": [{"model": "zoo:add", "parameters": {"weight": 0.1 * index}}],
        },
        "test recipe",
    )
    return Candidate(
        [0.1 * index], f"g00-c{index:02d}", key=f"key-{index}", recipe=recipe, gene_names=("w",), status="ok"
    )


def test_lines_are_readable_at_once_and_round_trip(tmp_path: Path) -> None:
    log = CandidateLog(tmp_path)
    try:
        for index in range(3):
            log.append(record(index))
            assert [r.key for r in read_candidate_log(tmp_path)] == [f"key-{i}" for i in range(index + 1)]
        assert read_candidate_log(tmp_path)[2].recipe.sha256() == record(2).recipe.sha256()
    finally:
        log.close()


def test_fsync_runs_off_the_caller_and_sync_waits_for_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    released = threading.Event()
    synced: list[int] = []

    def slow_fsync(descriptor: int) -> None:
        released.wait(timeout=30)
        synced.append(descriptor)

    monkeypatch.setattr(os, "fsync", slow_fsync)
    log = CandidateLog(tmp_path)
    log.append(record(0))
    log.append(record(1))
    assert synced == []  # append returned while its fsync waits
    waiter = threading.Thread(target=log.sync)
    waiter.start()
    waiter.join(timeout=0.2)
    assert waiter.is_alive()  # sync waits for the fsyncs
    released.set()
    waiter.join(timeout=30)
    assert not waiter.is_alive() and len(synced) == 2
    log.close()


def test_an_fsync_error_is_raised_by_sync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing_fsync(descriptor: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    log = CandidateLog(tmp_path)
    log.append(record(0))
    log.append(record(1))
    with pytest.raises(OSError, match="Input/output error"):
        log.sync()
    log.append(record(2))
    with pytest.raises(OSError):
        log.close()  # closed all the same
    assert log._handle is None


KILLED_AFTER_APPEND = """
import os, signal, sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from flows.search_state import CandidateLog
from test_candidate_log import record
log = CandidateLog(Path(sys.argv[1]))
log.append(record(0))
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_line_survives_a_kill_right_after_append(tmp_path: Path) -> None:
    finished = subprocess.run(
        [sys.executable, "-c", KILLED_AFTER_APPEND, str(tmp_path), str(Path(__file__).parent)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert finished.returncode == -signal.SIGKILL, finished.stderr
    assert (tmp_path / CANDIDATES_NAME).is_file()
    assert [r.key for r in read_candidate_log(tmp_path)] == ["key-0"]
