"""kill -9 a merge at several moments: no directory that looks like a finished model may be left behind,
and running the same command again produces the complete model."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tasks.merge.engine import tensors_sha256
from tasks.merge.tensor_io import ModelSource
from tasks.merge.writer import model_dir_sha256, partial_dir

pytestmark = pytest.mark.integration
ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def medium_recipe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three ~50M-parameter models: a merge takes seconds, long enough to be killed mid-write."""
    from tiny_models import make_tiny_llama

    root = tmp_path_factory.mktemp("medium")
    paths = {
        n: make_tiny_llama(root / n, s, layers=8, hidden=512, vocab=32000) for n, s in (("b", 0), ("x", 1), ("y", 2))
    }
    recipe = root / "ties.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "merge_method": "ties",
                "base_model": str(paths["b"]),
                "models": [
                    {"model": str(paths["x"]), "parameters": {"weight": 1.0, "density": 0.5}},
                    {"model": str(paths["y"]), "parameters": {"weight": 0.5, "density": 0.5}},
                ],
            }
        )
    )
    return recipe


@pytest.fixture(scope="module")
def uninterrupted_sha256(medium_recipe: Path) -> str:
    """The merged tensors' hash of the same recipe merged in one go, in this process."""
    from tasks.merge.engine import iter_merged_tensors
    from tasks.merge.plan import plan_merge
    from tasks.merge.recipe_set import load_recipe

    recipe = load_recipe(medium_recipe)
    plan = plan_merge(recipe, {name: Path(name) for name in recipe.model_names()})
    return tensors_sha256(iter_merged_tensors(plan))


def start_merge(recipe: Path, out: Path) -> subprocess.Popen[bytes]:
    # small shards, so several files are being written (and can be caught half-written) before the end
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flows.cli",
            "merge",
            str(recipe),
            str(out),
            "--quiet",
            "--force",
            "--shard-bytes",
            "20000000",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def looks_complete(directory: Path) -> bool:
    return (directory / "config.json").exists() and any(directory.glob("*.safetensors"))


def wait_for(condition: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return False


def bytes_written(work: Path) -> int:
    return sum(path.stat().st_size for path in work.glob("*.safetensors")) if work.exists() else 0


@pytest.mark.parametrize("moment", ["during start-up", "one shard's worth written", "three shards' worth written"])
def test_killed_merge_leaves_nothing_that_looks_finished(
    medium_recipe: Path, uninterrupted_sha256: str, tmp_path: Path, moment: str
) -> None:
    out = tmp_path / "child"
    work = partial_dir(out)
    process = start_merge(medium_recipe, out)
    if moment == "during start-up":
        time.sleep(0.5)
    else:
        wanted = 20_000_000 if moment.startswith("one") else 60_000_000
        assert wait_for(lambda: bytes_written(work) >= wanted, 120), f"merge never wrote {wanted} bytes"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not out.exists(), f"killed {moment}: {out} exists"
    assert not (work.exists() and looks_complete(work) and (work / "README.md").exists())

    rerun = start_merge(medium_recipe, out)
    assert rerun.wait(timeout=300) == 0
    assert looks_complete(out) and not work.exists()
    assert model_dir_sha256(out) == uninterrupted_sha256
    assert len(ModelSource("child", out).tensors) == 75  # 8 layers x 9 tensors + embeddings, final norm, lm_head
