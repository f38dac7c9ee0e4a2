"""`zoo.json`: what a zoo build produced, so later runs can trust a zoo without rebuilding or rescoring it.

It pins the seed, recipe, experts and numerics (so `ensure_zoo` knows when a rebuild is due), the sha256 of
every weight file and how they compare with the recorded ones (so determinism and tampering are checkable),
and every model's lm-eval accuracy on every skill (so a search knows its parents' scores and tests can
compare lm-eval runs against the build's numbers).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from tasks.zoo.expected_weights import WeightCheck
from tasks.zoo.numerics import ZooNumerics
from tasks.zoo.recipe import ZooRecipe

MANIFEST_NAME = "zoo.json"
FORMAT_VERSION = 2
"""2: zoos trained with pinned numerics (`numerics`) and checked against the recorded hashes
(`weight_check`); a zoo of format 1 is rebuilt."""
WEIGHT_SUFFIX = ".safetensors"


class ZooModelEntry(BaseModel):
    """One model of the zoo: the base (`skill=None`) or an expert fine-tuned from it for one skill."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    skill: str | None
    path: str
    """Directory relative to the zoo directory."""
    weight_sha256: dict[str, str]
    """Weight file name (relative to the model directory) -> sha256 of its bytes."""
    size_bytes: int
    """Bytes of the whole model directory: weights, config and tokenizer."""
    train_seconds: float
    final_loss: float
    accuracy: dict[str, float]
    """Skill -> lm-eval exact match on the search split (task `evomerge_<skill>`)."""
    test_accuracy: dict[str, float]
    """Skill -> lm-eval exact match on the test split (task `evomerge_<skill>_test`)."""


class ZooManifest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    format_version: int = FORMAT_VERSION
    seed: int
    experts: tuple[str, ...]
    skills: tuple[str, ...]
    """Skills every model was scored on (all of them, not only the experts')."""
    recipe: ZooRecipe
    build_seconds: float
    workers: int
    torch_version: str
    transformers_version: str
    numpy_version: str
    numerics: ZooNumerics
    weight_check: WeightCheck
    """How the weights compare with `tasks/zoo/expected_weights.json`."""
    models: dict[str, ZooModelEntry]
    """Model name (`base` or the expert's skill) -> entry; the base comes first."""

    def model_dir(self, zoo_dir: Path, name: str) -> Path:
        return zoo_dir / self.models[name].path

    def weight_hashes(self) -> dict[str, str]:
        """`<model>/<file>` -> sha256 for every weight file in the zoo: what two builds are compared by."""
        return {
            f"{entry.path}/{file_name}": digest
            for entry in self.models.values()
            for file_name, digest in sorted(entry.weight_sha256.items())
        }

    def write(self, zoo_dir: Path) -> Path:
        path = zoo_dir / MANIFEST_NAME
        path.write_text(self.model_dump_json(indent=2) + "\n", encoding="utf-8")
        return path


def read_manifest(zoo_dir: Path) -> ZooManifest | None:
    """The zoo's manifest, or None when there is none or it is unreadable (an old or broken zoo)."""
    path = zoo_dir / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        return ZooManifest.model_validate_json(path.read_text(encoding="utf-8"))
    except ValueError:
        return None


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def weight_file_hashes(model_dir: Path) -> dict[str, str]:
    """sha256 of every safetensors file in a model directory, by name relative to it."""
    return {
        path.relative_to(model_dir).as_posix(): file_sha256(path)
        for path in sorted(model_dir.rglob(f"*{WEIGHT_SUFFIX}"))
    }


def directory_size(directory: Path) -> int:
    return sum(path.stat().st_size for path in directory.rglob("*") if path.is_file())
