"""Dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_ set, which makes glibc map every buffer over
128 KiB afresh; a worker's bench undoes it (tasks/dask_worker.py: restore_malloc_thresholds)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tasks.dask_worker import restore_malloc_thresholds

PROBE = """
import ctypes, sys
from tasks.dask_worker import restore_malloc_thresholds

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]

def mapped_by_one_megabyte() -> int:
    before = libc.mallinfo2().hblks
    block = libc.malloc(1 << 20)
    mapped = libc.mallinfo2().hblks - before
    libc.free(block)
    return mapped

first = mapped_by_one_megabyte()
changed = restore_malloc_thresholds()
print(first, int(changed), mapped_by_one_megabyte())
"""


def probe(environment: dict[str, str]) -> list[int]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE], env=environment, capture_output=True, text=True, check=True, timeout=120
    )
    return [int(value) for value in result.stdout.split()]


pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc: Linux only")


def test_a_worker_started_as_dasks_nanny_starts_it_gets_heap_buffers_again() -> None:
    environment = {**os.environ, "MALLOC_TRIM_THRESHOLD_": "65536"}  # what the nanny sets
    assert probe(environment) == [1, 1, 0]  # mapped before; from the heap after


def test_without_dasks_setting_nothing_is_changed() -> None:
    environment = {key: value for key, value in os.environ.items() if key != "MALLOC_TRIM_THRESHOLD_"}
    assert probe(environment)[1] == 0  # glibc's own dynamic thresholds are left alone
    assert restore_malloc_thresholds({}) is False
