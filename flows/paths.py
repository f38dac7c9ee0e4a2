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


@cache
def evomerge_version() -> str:
    """The git commit of the code that ran (a candidate is only reproducible with the code that made it)."""
    from importlib.metadata import version

    try:
        sha = subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        return f"{version('evomerge')}+g{sha}{'.dirty' if dirty else ''}"
    except (OSError, subprocess.SubprocessError):
        return version("evomerge")
