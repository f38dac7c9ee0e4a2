"""Where evomerge keeps things by default, all under the project (or `EVOMERGE_HOME`)."""

from __future__ import annotations

import os
import subprocess
from functools import cache
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def home() -> Path:
    return Path(os.environ.get("EVOMERGE_HOME", PROJECT_ROOT)).resolve()


def configs_dir() -> Path:
    return PROJECT_ROOT / "configs"


def runs_dir() -> Path:
    return home() / "runs"


def default_mlflow_dir() -> Path:
    return home() / "mlruns"


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(PROJECT_ROOT), *args], capture_output=True, text=True, timeout=5, check=True
    ).stdout.strip()


@cache
def evomerge_version() -> str:
    """The git commit of the code that ran (a candidate is only reproducible with the code that made it)."""
    from importlib.metadata import version

    try:
        sha = _git("rev-parse", "--short=12", "HEAD")
        dirty = _git("status", "--porcelain", "--untracked-files=no")
        return f"{version('evomerge')}+g{sha}{'.dirty' if dirty else ''}"
    except (OSError, subprocess.SubprocessError):
        return version("evomerge")
