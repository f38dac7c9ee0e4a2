"""MLflow: one run per search, one nested run per candidate, holding everything needed to rebuild it.

Uses `MlflowClient` with explicit run ids rather than the fluent API's global active run, so a failed
candidate can never end or corrupt the search's run, and each candidate costs one batched call.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from flows.paths import default_mlflow_dir, evomerge_version
from tasks.candidate import CandidateRecord

MAX_PARAM_LENGTH = 6000


def tracking_uri() -> str:
    """`MLFLOW_TRACKING_URI` when set (a real `mlflow server`), else a local SQLite store."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    store = default_mlflow_dir()
    store.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{store / 'mlflow.db'}"


def ui_command(uri: str) -> str:
    if uri.startswith("sqlite:"):
        return f"mlflow ui --backend-store-uri {uri}"
    return f"browse to {uri} (the MLflow server's UI)"


def _metric_key(task: str, metric: str) -> str:
    return f"{task}/{metric}".replace(",", "_")


class SearchTracker:
    def __init__(
        self, experiment: str, run_name: str, uri: str | None = None, resume_run_id: str | None = None
    ) -> None:
        self.uri = uri or tracking_uri()
        self.client = MlflowClient(self.uri)
        found = self.client.get_experiment_by_name(experiment)
        if found is not None:
            self.experiment_id = found.experiment_id
        else:
            location = None
            if self.uri.startswith("sqlite:"):
                location = (default_mlflow_dir() / "artifacts").as_uri()
            self.experiment_id = self.client.create_experiment(experiment, artifact_location=location)
        if resume_run_id is not None:
            self.run_id = resume_run_id
            self.client.update_run(resume_run_id, status="RUNNING")
        else:
            self.run_id = self.client.create_run(
                self.experiment_id, run_name=run_name, tags={"evomerge.version": evomerge_version()}
            ).info.run_id

    def candidate_runs(self) -> list[Any]:
        return list(
            self.client.search_runs(
                [self.experiment_id],
                filter_string=f"tags.mlflow.parentRunId = '{self.run_id}'",
                max_results=50_000,
            )
        )

    def drop_unrecorded_candidates(self, recorded_run_ids: set[str]) -> int:
        """Delete the nested runs that candidates.jsonl does not hold (a kill between logging a candidate and
        recording it, or mid-logging): the candidate is evaluated again and logged once, so MLflow keeps
        exactly one nested run per candidate key. Returns how many were dropped."""
        dropped = 0
        for run in self.candidate_runs():
            if run.info.run_id not in recorded_run_ids:
                self.client.delete_run(run.info.run_id)
                dropped += 1
        return dropped

    def log_search(self, config_text: str, params: dict[str, Any], tags: dict[str, str]) -> None:
        self.client.log_text(self.run_id, config_text, "search.yaml")
        self.client.log_batch(
            self.run_id,
            params=[Param(k, str(v)[:MAX_PARAM_LENGTH]) for k, v in params.items()],
            tags=[RunTag(k, v) for k, v in tags.items()],
        )

    def log_parent_scores(self, name: str, scores: dict[str, float]) -> None:
        now = int(time.time() * 1000)
        metrics = [Metric(f"parent/{name}/{task}", value, now, 0) for task, value in scores.items()]
        self.client.log_batch(self.run_id, metrics=metrics)

    def log_candidate(self, record: CandidateRecord, parent_hashes: dict[str, str]) -> str:
        """A finished nested run holding the candidate's genes, scores, recipe and lineage."""
        run = self.client.create_run(
            self.experiment_id, run_name=record.candidate_id, tags={"mlflow.parentRunId": self.run_id}
        )
        run_id = run.info.run_id
        now = int(time.time() * 1000)
        metrics = [
            Metric(_metric_key(task, name), value, now, 0)
            for task, values in record.scores.items()
            for name, value in values.items()
        ]
        if record.fitness is not None:
            metrics.append(Metric("fitness", record.fitness, now, 0))
        metrics.append(Metric("seconds", record.seconds, now, 0))
        tags = {
            "generation": str(record.generation),
            "candidate_id": record.candidate_id,
            "candidate_key": record.key,
            "genetic_parents": ",".join(record.genetic_parents),
            "origin": record.origin,
            "recipe_sha256": record.recipe.sha256(),
            "status": record.status,
            **{f"parent_model_sha256/{name}": digest for name, digest in parent_hashes.items()},
        }
        if record.tensors_sha256:
            tags["tensors_sha256"] = record.tensors_sha256
        if record.error:
            tags["error"] = record.error[:5000]
        self.client.log_batch(
            run_id,
            metrics=metrics,
            params=[Param(k, repr(v)) for k, v in record.genes.items()],
            tags=[RunTag(k, v) for k, v in tags.items()],
        )
        self.client.log_text(run_id, record.recipe.to_yaml(), "recipe.yaml")
        self.client.set_terminated(run_id, "FINISHED" if record.status == "ok" else "FAILED")
        return run_id

    def log_artifact(self, path: Path) -> None:
        self.client.log_artifact(self.run_id, str(path))

    def log_best(self, record: CandidateRecord) -> None:
        now = int(time.time() * 1000)
        metrics = [Metric("best/fitness", record.fitness or 0.0, now, 0)]
        metrics += [
            Metric(f"best/{_metric_key(t, m)}", v, now, 0) for t, s in record.scores.items() for m, v in s.items()
        ]
        self.client.log_batch(
            self.run_id,
            metrics=metrics,
            tags=[
                RunTag("best.candidate_id", record.candidate_id),
                RunTag("best.recipe_sha256", record.recipe.sha256()),
            ],
        )
        self.client.log_text(self.run_id, record.recipe.to_yaml(), "best/recipe.yaml")

    def log_held_out(self, name: str, scores: dict[str, dict[str, float]]) -> None:
        """`held_out/<model>/<task or mean>` with its bootstrap interval as `.../low` and `.../high`."""
        now = int(time.time() * 1000)
        metrics = [
            Metric(f"held_out/{name}/{part}{suffix}".replace(" ", "_"), interval[key], now, 0)
            for part, interval in scores.items()
            for key, suffix in (("value", ""), ("low", "/low"), ("high", "/high"))
        ]
        self.client.log_batch(self.run_id, metrics=metrics)

    def finish(self, ok: bool) -> None:
        self.client.set_terminated(self.run_id, "FINISHED" if ok else "FAILED")
