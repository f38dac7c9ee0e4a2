"""Fixtures of the mergekit parity suite (tests/parity; run with `.venv/bin/pytest tests/parity`).

The reference is the real mergekit 0.1.5 in its own virtualenv, `.venv-mergekit`
(`bash tests/parity/setup_mergekit.sh`). Without it the suite is skipped, unless EVOMERGE_PARITY_REQUIRED
is set (CI), where a missing reference is a failure. Models are built and both sides run once per session;
set EVOMERGE_PARITY_WORKDIR to keep the work directory (and reuse mergekit's outputs) across sessions.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import MERGEKIT_PYTHON, MERGEKIT_VENV, ParityRun, run_parity  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "parity: compares evomerge with the real mergekit tensor by tensor (needs .venv-mergekit)"
    )


def parity_required() -> bool:
    return os.environ.get("EVOMERGE_PARITY_REQUIRED", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="session")
def mergekit_python() -> Path:
    if MERGEKIT_PYTHON.exists():
        return MERGEKIT_PYTHON
    message = f"{MERGEKIT_VENV} is missing: run `bash tests/parity/setup_mergekit.sh` to install mergekit 0.1.5"
    if parity_required():
        pytest.fail(f"EVOMERGE_PARITY_REQUIRED is set but {message}", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def parity_run(mergekit_python: Path, tmp_path_factory: pytest.TempPathFactory) -> ParityRun:
    workdir = os.environ.get("EVOMERGE_PARITY_WORKDIR")
    work = Path(workdir) if workdir else tmp_path_factory.mktemp("parity")
    return run_parity(work)
