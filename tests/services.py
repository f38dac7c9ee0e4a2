"""Real Prefect and MLflow servers for integration tests, started with `infra/services.sh` (the way users
start them) on free loopback ports, with their state under a temporary folder."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).parents[1]
SCRIPT = ROOT / "infra" / "services.sh"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class Services:
    state: Path
    prefect_port: int
    mlflow_port: int

    @classmethod
    def under(cls, state: Path) -> Services:
        return cls(state, free_port(), free_port())

    @property
    def mlflow_uri(self) -> str:
        return f"http://127.0.0.1:{self.mlflow_port}"

    @property
    def prefect_api_url(self) -> str:
        return f"http://127.0.0.1:{self.prefect_port}/api"

    def script(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`infra/services.sh ARGS` with this instance's ports and state folder."""
        env = {
            **os.environ,
            "EVOMERGE_SERVICES_DIR": str(self.state),
            "PREFECT_PORT": str(self.prefect_port),
            "MLFLOW_PORT": str(self.mlflow_port),
        }
        return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=300, env=env)


@contextmanager
def prefect_api(url: str) -> Iterator[None]:
    """Point this process at the Prefect server `url`: the environment (for subprocesses such as the
    `prefect` CLI) and Prefect's settings context (for in-process clients: Prefect reads its settings once,
    so a later change of the environment alone would leave them on the previous server)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    previous = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = url
    try:
        with temporary_settings(updates={PREFECT_API_URL: url}):
            yield
    finally:
        if previous is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = previous
