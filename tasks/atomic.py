"""Files that are either whole or absent: written beside their place, fsynced, renamed over it."""

from __future__ import annotations

import os
from pathlib import Path


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file in `path` durable (the directory entry itself is data too)."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_atomically(path: Path, data: bytes, before_rename: object = None) -> None:
    """Replace `path` with `data`: a reader (or a rerun after kill -9 or a crash) sees the old file or
    the new one, never a part."""
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    if callable(before_rename):
        before_rename()
    os.replace(temporary, path)
    fsync_dir(path.parent)
