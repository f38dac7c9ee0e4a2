"""Rebuild a candidate from its MLflow record alone, and prove it is the same model.

The record holds the recipe, the content hash of every parent model and the hash of the merged tensors.
The parents are resolved as the search resolved them (local path, zoo name, or the Hugging Face cache),
checked against the recorded hashes before anything is computed, merged to disk, and the written tensors
compared with the recorded hash. A mismatch removes the output: nothing that looks like the candidate is
left behind unless it is the candidate.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import yaml
from mlflow.tracking import MlflowClient

from flows.lineage import Lineage, read_lineage
from tasks.download import download_model
from tasks.errors import EvomergeError
from tasks.merge.plan import plan_merge
from tasks.merge.recipe import parse_recipe
from tasks.merge.writer import write_model


@dataclass(frozen=True)
class Reproduction:
    lineage: Lineage
    out: Path
    tensors_sha256: str


def reproduce(client: MlflowClient, run_id: str, out: Path, zoo_dir: Path | None = None) -> Reproduction:
    lineage = read_lineage(client, run_id)
    recorded = lineage.candidate.tensors_sha256
    if not recorded:
        raise EvomergeError(
            f"candidate {lineage.candidate.candidate_id} (run {lineage.candidate.run_id}) has no recorded tensors "
            f"hash (status {lineage.candidate.status}): there is nothing to check a rebuild against"
        )
    recipe = parse_recipe(yaml.safe_load(lineage.recipe_yaml), f"MLflow run {lineage.candidate.run_id}: recipe.yaml")
    config_dir = client.get_run(lineage.search_run_id).data.tags.get("config_dir")
    paths = {}
    for reference in recipe.model_names():
        expected = lineage.parent_models.get(reference)
        resolved = download_model(reference, base_dir=Path(config_dir) if config_dir else None, zoo_dir=zoo_dir)
        if expected is not None and resolved.content_sha256 != expected:
            raise EvomergeError(
                f"parent model {reference!r} at {resolved.path} is not the one the search merged: content sha256 "
                f"{resolved.content_sha256}, recorded {expected}"
            )
        paths[reference] = resolved.path
    written = write_model(plan_merge(recipe, paths, f"MLflow run {lineage.candidate.run_id}"), out)
    if written != recorded:
        shutil.rmtree(out, ignore_errors=True)
        raise EvomergeError(
            f"the rebuilt tensors hash to {written}, the record says {recorded}; {out} was removed "
            f"(different library versions? recorded: {lineage.libraries})"
        )
    return Reproduction(lineage, out, written)
