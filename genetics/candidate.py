"""One candidate of a search, from the genes an algorithm asks for to the scores it is told back.

The same object travels the whole path: the algorithm breeds it (genes, lineage, origin), the loop decodes
it once into its recipe and content key, a scorer records its outcome (status, scores, tensors hash), the
fitness policy judges it (fitness, objectives, guard), the log and MLflow store it, and the algorithm ranks
it. A scorer on another machine receives only its recipe and key and sends back an `Outcome`.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from tasks.merge.recipe import Recipe, parse_recipe

Status = Literal["pending", "ok", "failed"]

LOGGED_FIELDS = (
    "candidate_id",
    "generation",
    "key",
    "recipe",
    "genes",
    "genetic_parents",
    "origin",
    "status",
    "scores",
    "fitness",
    "retention",
    "feasible",
    "tensors_sha256",
    "error",
    "seconds",
    "worker",
)
"""A line of candidates.jsonl, in this order; what the algorithms alone use (objectives, violation) is
derived again from the scores on resume."""


def content_key(recipe: Recipe, parent_hashes: dict[str, str], evaluation_key: str | None = None) -> str:
    """The identity of a merge result (the canonical recipe and the content of the parents it reads) or,
    given how it is scored, of a candidate. Paths play no part, so a moved parent or a renamed output keeps
    the key."""
    payload: dict[str, Any] = {
        "recipe": recipe.canonical_dict(),
        "parents": {name: parent_hashes[name] for name in sorted(recipe.model_names())},
    }
    if evaluation_key is not None:
        payload["evaluation"] = evaluation_key
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass
class Outcome:
    """What scoring a candidate produced, wherever it ran: the only thing a worker sends back."""

    status: Literal["ok", "failed"] = "ok"
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    tensors_sha256: str | None = None
    error: str | None = None
    seconds: float = 0.0
    worker: str = ""
    """Who scored it: empty for the search's own process, else the Dask worker's name."""


@dataclass
class Candidate:
    genes: list[float]
    candidate_id: str = ""
    genetic_parents: tuple[str, ...] = ()
    fitness: float | None = None
    """None until judged, and for a failed candidate."""
    objectives: tuple[float, ...] = ()
    """One score per task (NSGA-II's objectives); the other algorithms rank on `fitness` alone."""
    origin: str = "random"
    feasible: bool = True
    """False for a candidate that failed or broke the forgetting guard: it ranks below every feasible one
    (Deb's constraint rule, 2000), whatever its fitness."""
    violation: float = 0.0
    """How far an infeasible candidate is from feasible (inf for a failed one); less ranks higher."""
    generation: int = 0
    gene_names: tuple[str, ...] = ()
    recipe: Recipe | None = None
    key: str = ""
    status: Status = "pending"
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    retention: float | None = None
    """Guard score minus the reference's (a search with a guard); below -max_drop the candidate is infeasible."""
    tensors_sha256: str | None = None
    error: str | None = None
    seconds: float = 0.0
    worker: str = ""

    @property
    def scored(self) -> bool:
        return self.status != "pending"

    def copy(self) -> Candidate:
        twin = copy.copy(self)
        twin.genes = list(self.genes)
        return twin

    def rank(self) -> tuple[int, float]:
        """What the algorithms sort on: feasible ones by fitness, above infeasible ones by violation."""
        return (1, self.fitness or 0.0) if self.feasible else (0, -self.violation)

    def record(self, outcome: Outcome) -> None:
        self.status = outcome.status
        self.scores = outcome.scores
        self.tensors_sha256 = outcome.tensors_sha256
        self.error = outcome.error
        self.seconds = outcome.seconds
        self.worker = outcome.worker

    def take_result(self, scored: Candidate) -> None:
        """Take the identity and result of `scored`, an earlier candidate with the same key (its genes,
        lineage and origin stay this candidate's own)."""
        for name in (
            "candidate_id",
            "generation",
            "recipe",
            "key",
            "status",
            "scores",
            "tensors_sha256",
            "error",
            "seconds",
            "worker",
            "fitness",
            "retention",
            "feasible",
            "objectives",
            "violation",
        ):
            setattr(self, name, getattr(scored, name))

    def named_genes(self) -> dict[str, float]:
        return dict(zip(self.gene_names, self.genes, strict=True))

    def to_json(self) -> dict[str, Any]:
        assert self.recipe is not None, "a candidate is logged once it is decoded"
        values: dict[str, Any] = {name: getattr(self, name) for name in LOGGED_FIELDS}
        values["recipe"] = self.recipe.canonical_dict()
        values["genes"] = self.named_genes()
        values["genetic_parents"] = list(self.genetic_parents)
        return values

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Candidate:
        values = {name: data[name] for name in LOGGED_FIELDS if name in data}
        values["recipe"] = parse_recipe(values["recipe"], f"candidate {values.get('candidate_id')}")
        named = dict(values.pop("genes", None) or {})
        values["genetic_parents"] = tuple(values.get("genetic_parents") or ())
        return cls(genes=list(named.values()), gene_names=tuple(named), **values)
