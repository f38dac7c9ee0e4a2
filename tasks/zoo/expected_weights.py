"""The weight hashes the default zoo must have, and the check every build runs against them.

`expected_weights.json` records, for the default recipe and seed 0 built with pinned numerics, the sha256
of every model's weight file and the library versions they were computed with. The demo's promise and the
tests' thresholds were measured on exactly these bytes, so a build that computes other bytes says so
loudly: which file, both hashes, and what on this machine decides its numerics.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from tasks.zoo.numerics import ZooNumerics, machine_description, unsupported_reason
from tasks.zoo.recipe import ZooRecipe

EXPECTED_WEIGHTS_PATH = Path(__file__).with_name("expected_weights.json")


class ExpectedWeights(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    seed: int
    recipe: ZooRecipe
    numerics: ZooNumerics
    torch_version: str
    transformers_version: str
    numpy_version: str
    """numpy carries the OpenBLAS that computes the pinned matrix products."""
    weight_sha256: dict[str, str]
    """`<model>/<file>` -> sha256, as `ZooManifest.weight_hashes()` lists them."""


class WeightMismatch(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    file: str
    expected: str
    actual: str


class WeightCheck(BaseModel):
    """How a build's weights compare with the recorded ones."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    status: Literal["match", "differ", "not recorded"]
    mismatches: tuple[WeightMismatch, ...] = ()
    reason: str | None = None
    """Why no record applies, or what differs from the record's conditions (numerics, versions)."""
    machine: dict[str, str] = {}
    """What decides the numerics here (`numerics.machine_description`), filled in when the weights differ."""


@cache
def expected_weights() -> ExpectedWeights:
    return ExpectedWeights.model_validate_json(EXPECTED_WEIGHTS_PATH.read_text(encoding="utf-8"))


def check_weights(
    seed: int, recipe: ZooRecipe, numerics: ZooNumerics, hashes: Mapping[str, str], versions: Mapping[str, str]
) -> WeightCheck:
    """Compare a build's weight hashes with the record; `versions` holds torch, transformers and numpy's.

    Only the default recipe and seed have a record. Every model the build holds is compared (a build of
    fewer experts still has each model's recorded bytes: a model's seed depends on its name only).
    """
    record = expected_weights()
    if seed != record.seed or recipe != record.recipe:
        return WeightCheck(status="not recorded", reason="only the default recipe with seed 0 has recorded hashes")
    unknown = sorted(set(hashes) - set(record.weight_sha256))
    if unknown:
        return WeightCheck(status="not recorded", reason=f"no recorded hash for {', '.join(unknown)}")
    mismatches = tuple(
        WeightMismatch(file=file, expected=record.weight_sha256[file], actual=digest)
        for file, digest in sorted(hashes.items())
        if record.weight_sha256[file] != digest
    )
    if not mismatches:
        return WeightCheck(status="match")
    return WeightCheck(
        status="differ",
        mismatches=mismatches,
        reason=_likely_cause(record, numerics, versions),
        machine=machine_description(),
    )


def _likely_cause(record: ExpectedWeights, numerics: ZooNumerics, versions: Mapping[str, str]) -> str:
    if not numerics.pinned:
        return f"trained with this machine's own numerics: {unsupported_reason() or 'pinning was turned off'}"
    expected = {
        "torch": record.torch_version,
        "transformers": record.transformers_version,
        "numpy": record.numpy_version,
    }
    changed = [
        f"{name} {versions[name]} (recorded with {version})"
        for name, version in expected.items()
        if versions.get(name) != version
    ]
    if changed:
        return "other library versions than requirements.lock installs: " + ", ".join(changed)
    if numerics != record.numerics:
        return "other pinned numerics than the record's"
    return "same libraries and pinned numerics: a kernel on this machine computes other bits (please report it)"


def describe_weight_check(check: WeightCheck) -> str:
    """The loud message for a build whose weights are not the recorded ones (empty when they match)."""
    if check.status != "differ":
        return ""
    lines = [
        "the zoo's weights differ from the hashes recorded in tasks/zoo/expected_weights.json; the demo's "
        "scores and the tests' thresholds were measured on the recorded weights and may not hold here.",
        f"cause: {check.reason}",
    ]
    lines += [f"  {item.file}: expected {item.expected}, built {item.actual}" for item in check.mismatches]
    lines += [f"  {name}: {value}" for name, value in check.machine.items()]
    return "\n".join(lines)


def record_expected_weights(zoo_dir: Path, path: Path = EXPECTED_WEIGHTS_PATH) -> ExpectedWeights:
    """Write the record from a built zoo: after a deliberate change of the default recipe or the pinned
    numerics (`python -m tasks.zoo.expected_weights ZOO_DIR`), reviewed like any other change."""
    from tasks.zoo.manifest import read_manifest

    manifest = read_manifest(zoo_dir)
    if manifest is None:
        raise SystemExit(f"{zoo_dir} holds no readable zoo.json")
    if manifest.seed != 0 or manifest.recipe != ZooRecipe() or not manifest.numerics.pinned:
        raise SystemExit(f"{zoo_dir} is not the default zoo (seed 0, default recipe, pinned numerics)")
    record = ExpectedWeights(
        seed=manifest.seed,
        recipe=manifest.recipe,
        numerics=manifest.numerics,
        torch_version=manifest.torch_version,
        transformers_version=manifest.transformers_version,
        numpy_version=manifest.numpy_version,
        weight_sha256=manifest.weight_hashes(),
    )
    path.write_text(record.model_dump_json(indent=2) + "\n", encoding="utf-8")
    expected_weights.cache_clear()
    return record


if __name__ == "__main__":
    import sys

    written = record_expected_weights(Path(sys.argv[1]))
    print("\n".join(f"{file} {digest}" for file, digest in written.weight_sha256.items()))
