"""A candidate's family tree, read back from MLflow alone: its genetic parents back to generation 0, the
parent models it was merged from (with their content hashes), its recipe, the search's seed, and the code
and library versions that made it.

Everything here comes from what the search logged (flows/tracking.py), so `evomerge lineage` works on any
machine that reaches the tracking server, long after the run's output directory is gone.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mlflow.tracking import MlflowClient
from rich.tree import Tree

from flows.tracking import nested_runs
from tasks.errors import EvomergeError

PARENT_MODEL_TAG = "parent_model_sha256/"
LIBRARY_TAG = "library/"


@dataclass
class CandidateNode:
    run_id: str
    candidate_id: str
    generation: int
    origin: str
    status: str
    genetic_parents: list[str]
    fitness: float | None
    recipe_sha256: str
    tensors_sha256: str | None


@dataclass
class Lineage:
    search_run_id: str
    search_name: str
    seed: str
    algorithm: str
    evomerge_version: str
    libraries: dict[str, str]
    parent_models: dict[str, str]
    """Model reference -> sha256 of its content, as the search read it."""
    candidate: CandidateNode
    recipe_yaml: str
    ancestors: dict[str, CandidateNode] = field(default_factory=dict)
    """Every candidate reachable through genetic parents, by candidate id."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _node(run: Any) -> CandidateNode:
    tags = run.data.tags
    parents = [name for name in tags.get("genetic_parents", "").split(",") if name]
    return CandidateNode(
        run_id=run.info.run_id,
        candidate_id=tags.get("candidate_id", run.info.run_name or run.info.run_id),
        generation=int(tags.get("generation", "0")),
        origin=tags.get("origin", ""),
        status=tags.get("status", run.info.status),
        genetic_parents=parents,
        fitness=run.data.metrics.get("fitness"),
        recipe_sha256=tags.get("recipe_sha256", ""),
        tensors_sha256=tags.get("tensors_sha256"),
    )


def read_lineage(client: MlflowClient, run_id: str) -> Lineage:
    """The lineage of a candidate's run, or of a search run's winner."""
    try:
        run = client.get_run(run_id)
    except Exception as error:  # noqa: BLE001 - MLflow raises its own exception types for a missing run
        raise EvomergeError(f"MLflow run {run_id!r} not found in {client.tracking_uri}: {error}") from None
    search_run_id = run.data.tags.get("mlflow.parentRunId")
    search_run = client.get_run(search_run_id) if search_run_id else run
    members = nested_runs(client, search_run.info.experiment_id, search_run.info.run_id)
    by_id = {node.candidate_id: node for node in map(_node, members)}
    if search_run_id:
        candidate = _node(run)
    else:
        best = search_run.data.tags.get("best.candidate_id")
        if best is None or best not in by_id:
            raise EvomergeError(f"MLflow run {run_id} is a search run without a recorded winner (did it finish?)")
        candidate = by_id[best]
    ancestors: dict[str, CandidateNode] = {}
    waiting = list(candidate.genetic_parents)
    while waiting:
        name = waiting.pop()
        if name in ancestors or name not in by_id:
            continue
        ancestors[name] = by_id[name]
        waiting.extend(by_id[name].genetic_parents)
    search_tags, params = search_run.data.tags, search_run.data.params
    return Lineage(
        search_run_id=search_run.info.run_id,
        search_name=search_tags.get("search.name", search_run.info.run_name or ""),
        seed=params.get("seed", ""),
        algorithm=params.get("algorithm", ""),
        evomerge_version=search_tags.get("evomerge.version", ""),
        libraries={k.removeprefix(LIBRARY_TAG): v for k, v in search_tags.items() if k.startswith(LIBRARY_TAG)},
        parent_models={
            k.removeprefix(PARENT_MODEL_TAG): v for k, v in search_tags.items() if k.startswith(PARENT_MODEL_TAG)
        },
        candidate=candidate,
        recipe_yaml=_text_artifact(client, candidate.run_id, "recipe.yaml"),
        ancestors=ancestors,
    )


def _text_artifact(client: MlflowClient, run_id: str, path: str) -> str:
    with tempfile.TemporaryDirectory() as directory:
        try:
            local = client.download_artifacts(run_id, path, directory)
        except Exception as error:  # noqa: BLE001 - a missing artifact or an unreachable artifact store
            raise EvomergeError(f"MLflow run {run_id}: cannot read artifact {path}: {error}") from None
        return Path(local).read_text()


def _label(node: CandidateNode) -> str:
    fitness = f"{node.fitness:.3f}" if node.fitness is not None else "-"
    return f"{node.candidate_id} (generation {node.generation}, {node.origin or 'start'}, fitness {fitness})"


def lineage_tree(lineage: Lineage) -> Tree:
    """The candidate at the root, each candidate's genetic parents below it (a shared ancestor is expanded
    once, then referred to), then the provenance every candidate of the search shares."""
    root = Tree(f"[bold]{_label(lineage.candidate)}[/]  run {lineage.candidate.run_id}")
    expanded: set[str] = set()

    def add(branch: Tree, node: CandidateNode) -> None:
        for name in node.genetic_parents:
            parent = lineage.ancestors.get(name)
            if parent is None:
                branch.add(f"{name} (not in MLflow)")
            elif name in expanded:
                branch.add(f"{_label(parent)} [dim](shown above)[/]")
            else:
                expanded.add(name)
                add(branch.add(_label(parent)), parent)

    add(root, lineage.candidate)
    models = root.add("parent models")
    for reference, digest in sorted(lineage.parent_models.items()):
        models.add(f"{reference}  sha256 {digest}")
    root.add(f"tensors sha256 {lineage.candidate.tensors_sha256 or '-'}")
    root.add(f"recipe sha256 {lineage.candidate.recipe_sha256}")
    root.add(
        f"search {lineage.search_name!r} run {lineage.search_run_id}: seed {lineage.seed}, {lineage.algorithm}, "
        f"evomerge {lineage.evomerge_version}"
    )
    if lineage.libraries:
        root.add("libraries: " + ", ".join(f"{k} {v}" for k, v in sorted(lineage.libraries.items())))
    return root


def lineage_dot(lineage: Lineage) -> str:
    """Graphviz: an edge from each genetic parent to its child; parent models feed generation 0."""
    nodes = {lineage.candidate.candidate_id: lineage.candidate, **lineage.ancestors}
    lines = ["digraph lineage {", "  rankdir=LR;", "  node [shape=box];"]
    for name, node in sorted(nodes.items()):
        fitness = f"\\n{node.fitness:.3f}" if node.fitness is not None else ""
        lines.append(f"  {json.dumps(name)} [label={json.dumps(name + fitness)}];")
        for parent in node.genetic_parents:
            lines.append(f"  {json.dumps(parent)} -> {json.dumps(name)};")
    for reference in sorted(lineage.parent_models):
        lines.append(f"  {json.dumps(reference)} [shape=ellipse];")
        for name, node in sorted(nodes.items()):
            if not node.genetic_parents:
                lines.append(f"  {json.dumps(reference)} -> {json.dumps(name)} [style=dashed];")
    lines.append("}")
    return "\n".join(lines) + "\n"
