"""The benchmarks' working folders. A benchmark writes models, MLflow stores and Prefect homes (16 MB to
2 GB a run); left behind in /tmp on every run, they once filled the disk, and CI failed with "No space left
on device". A folder the user names is kept for them to read; otherwise it is temporary and removed at the
end, also on an error or Ctrl-C."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def scratch_dir(prefix: str, keep: Path | None = None) -> Iterator[Path]:
    """KEEP (created if missing, never removed) when given, else a fresh temporary folder removed on exit."""
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep
        return
    with tempfile.TemporaryDirectory(prefix=prefix, ignore_cleanup_errors=True) as path:
        yield Path(path)
