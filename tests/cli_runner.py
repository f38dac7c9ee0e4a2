"""`evomerge merge` run as a user runs it: its own process, from the repository root, output captured."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]
EVOMERGE = [sys.executable, "-m", "flows.cli"]


def run_merge(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*EVOMERGE, "merge", *args, "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
    )
