"""What a finished search reports, typed: written to `summary.json`, returned by the flow, printed by
flows/report.py. `to_json` gives the file's layout (unchanged since before the type existed)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class Winner(BaseModel):
    candidate_id: str
    recipe: dict[str, Any]
    scores: dict[str, float]
    """Each search (and guard) task's value as lm-eval reported it, in the config's order."""
    fitness: float
    retention: float | None = None
    tensors_sha256: str | None = None
    model_dir: str


class LeaderboardRow(BaseModel):
    candidate_id: str
    fitness: float
    scores: dict[str, float]
    retention: float | None = None
    feasible: bool = True
    recipe_sha256: str


class FrontMember(BaseModel):
    candidate_id: str
    scores: dict[str, float]


class GuardReport(BaseModel):
    objectives: list[dict[str, Any]]
    max_drop: float
    reference: str
    reference_score: float | None
    objective: bool
    infeasible: int


class HeldOutReport(BaseModel):
    tasks: list[str]
    search_tasks: list[str]
    metrics: dict[str, str]
    higher_is_better: dict[str, bool]
    confidence: float
    bootstrap_iterations: int
    models: dict[str, dict[str, Any]]
    """Model label -> `HeldOutScores.to_json()`: per task and mean, value with its interval."""


class SearchSummary(BaseModel):
    search: str
    seed: int
    algorithm: str
    metric: str
    objectives: list[dict[str, Any]]
    fitness_label: str
    parents: dict[str, dict[str, float]]
    parent_fitness: dict[str, float]
    best: Winner
    evaluations: int
    failed: int
    stop_reason: str | None
    history: list[dict[str, Any]]
    best_set: list[FrontMember]
    """NSGA-II's Pareto front, else the hall of fame (`pareto_front` / `hall_of_fame` in the file)."""
    mlflow_run_id: str
    registered_model: str | None
    mlflow_tracking_uri: str
    prefect_flow_run_id: str
    prefect_flow_run_name: str
    evomerge_version: str
    runner: dict[str, Any] = {"name": "local"}
    """Where candidates were scored, and this run's loop time and candidates; with Dask, per worker its
    candidates and busy seconds, and the share of worker time left idle."""
    guard: GuardReport | None = None
    leaderboard: list[LeaderboardRow] = []
    held_out: HeldOutReport | None = None

    @property
    def best_set_name(self) -> str:
        return "pareto_front" if self.algorithm == "nsga2" else "hall_of_fame"

    @property
    def guard_tasks(self) -> list[str]:
        return [o["task"] for o in self.guard.objectives] if self.guard else []

    def to_json(self) -> dict[str, Any]:
        data = self.model_dump(mode="json", exclude={"best_set", "guard", "held_out", "leaderboard"})
        data[self.best_set_name] = [member.model_dump(mode="json") for member in self.best_set]
        if self.guard is not None:
            data["guard"] = self.guard.model_dump(mode="json")
        data["leaderboard"] = [row.model_dump(mode="json") for row in self.leaderboard]
        if self.held_out is not None:
            data["held_out"] = self.held_out.model_dump(mode="json")
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SearchSummary:
        values = dict(data)
        values["best_set"] = values.pop("pareto_front", None) or values.pop("hall_of_fame", None) or []
        return cls.model_validate(values)
