"""Merging ahead puts two models in shared memory; a /dev/shm too small for them must be caught before a
page write dies of SIGBUS (tasks/merge_ahead.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

from tasks.merge_ahead import shared_memory_shortfall


def test_models_that_fit_twice_over_go_to_shared_memory(tmp_path: Path) -> None:
    free = shutil.disk_usage(tmp_path).free
    assert shared_memory_shortfall(free // 2, tmp_path) is None
    assert shared_memory_shortfall(0, tmp_path) is None


def test_models_that_do_not_fit_twice_over_are_refused_with_the_numbers(tmp_path: Path) -> None:
    free = shutil.disk_usage(tmp_path).free
    reason = shared_memory_shortfall(free // 2 + 2**30, tmp_path)
    assert reason is not None
    assert f"{free / 2**20:.0f} MiB free" in reason and "--shm-size" in reason


def test_no_shared_memory_folder_is_not_a_reason_to_refuse(tmp_path: Path) -> None:
    assert shared_memory_shortfall(10**15, tmp_path / "missing") is None
