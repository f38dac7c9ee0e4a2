"""What the search knows about one candidate: its recipe, where it came from, how it scored."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from tasks.merge.recipe import Recipe, parse_recipe


def merge_key(recipe: Recipe, parent_hashes: dict[str, str]) -> str:
    """The identity of a merge result: the canonical recipe and the content of the parents it reads."""
    payload = {
        "recipe": recipe.canonical_dict(),
        "parents": {name: parent_hashes[name] for name in sorted(recipe.model_names())},
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def candidate_key(recipe: Recipe, parent_hashes: dict[str, str], evaluation_key: str) -> str:
    """A candidate's identity: its canonical recipe, the content of the parents it reads, and how it is
    scored. Paths play no part, so a moved parent or a renamed output keeps the key."""
    payload = {
        "recipe": recipe.canonical_dict(),
        "parents": {name: parent_hashes[name] for name in sorted(recipe.model_names())},
        "evaluation": evaluation_key,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass
class CandidateRecord:
    candidate_id: str
    generation: int
    key: str
    recipe: Recipe
    genes: dict[str, float]
    genetic_parents: tuple[str, ...] = ()
    origin: str = "random"
    status: Literal["ok", "failed"] = "ok"
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    fitness: float | None = None
    retention: float | None = None
    """Guard score minus the reference's (a search with a guard); below -max_drop the candidate is infeasible."""
    feasible: bool = True
    tensors_sha256: str | None = None
    error: str | None = None
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["recipe"] = self.recipe.canonical_dict()
        data["genetic_parents"] = list(self.genetic_parents)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CandidateRecord:
        fields = {name: value for name, value in data.items() if name in cls.__dataclass_fields__}
        fields["recipe"] = parse_recipe(fields["recipe"], f"candidate {fields.get('candidate_id')}")
        fields["genetic_parents"] = tuple(fields.get("genetic_parents") or ())
        return cls(**fields)
