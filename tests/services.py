"""Real Prefect and MLflow servers for integration tests, started with `infra/services.sh` (the way users
start them) on free loopback ports, with their state under a temporary folder."""

from __future__ import annotations

import os
import socket
import subprocess
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
