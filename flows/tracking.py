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
from rich.console import Console

from flows.paths import default_mlflow_dir, evomerge_version
from genetics.candidate import Candidate
from tasks.faults import fault_point

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


LIBRARIES = ("torch", "transformers", "safetensors", "lm_eval", "prefect", "mlflow", "deap", "numpy")


def library_tags() -> dict[str, str]:
    """`library/<name>` -> installed version, plus Python's: what a candidate needs to be rebuilt exactly."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    tags = {"library/python": platform.python_version()}
    for name in LIBRARIES:
        try:
            tags[f"library/{name}"] = version(name.replace("_", "-"))
        except PackageNotFoundError:
            continue
    return tags


def _metric_key(task: str, metric: str) -> str:
    return f"{task}/{metric}".replace(",", "_")


TERMINATED = ("FINISHED", "FAILED")
PAGE_SIZE = 1000


def nested_runs(client: MlflowClient, experiment_id: str, parent_run_id: str) -> list[Any]:
    """Every run nested under `parent_run_id`, page by page (a server may return fewer runs than asked)."""
    runs: list[Any] = []
    token = None
    while True:
        page = client.search_runs(
            [experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'",
            max_results=PAGE_SIZE,
            page_token=token,
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def reconcile_candidate_runs(
    runs: list[tuple[str, str | None, str]], keys: set[str]
) -> tuple[dict[str, str], list[str]]:
    """Runs as (run id, candidate key, status), oldest first -> (key -> the one run kept, runs to delete).

    A key keeps its oldest terminated run (a failed candidate's run is terminated as FAILED); a run still
    RUNNING was cut short mid-logging, and a run whose key the log lacks belongs to a candidate that will be
    evaluated again: both are deleted, so the candidate ends with exactly one run."""
    kept: dict[str, str] = {}
    dropped: list[str] = []
    for run_id, key, status in runs:
        if key is not None and key in keys and key not in kept and status in TERMINATED:
            kept[key] = run_id
        else:
            dropped.append(run_id)
    return kept, dropped


_ATTACHED: dict[tuple[str, str, str], SearchTracker] = {}


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

    @classmethod
    def attach(cls, uri: str, experiment_id: str, run_id: str) -> SearchTracker:
        """The tracker of an existing search run, for this process (the MLflow worker): one per run, and its
        client is built once, not per call."""
        key = (uri, experiment_id, run_id)
        if key not in _ATTACHED:
            tracker = cls.__new__(cls)
            tracker.uri, tracker.experiment_id, tracker.run_id = key
            tracker.client = MlflowClient(uri)
            _ATTACHED[key] = tracker
        return _ATTACHED[key]

    def __reduce__(self) -> tuple[Any, tuple[str, str, str]]:
        """Pickles as a reference to the same search run (the MLflow worker process reattaches to it)."""
        return (SearchTracker.attach, (self.uri, self.experiment_id, self.run_id))

    def candidate_runs(self) -> list[Any]:
        return nested_runs(self.client, self.experiment_id, self.run_id)

    def reconcile(self, records: list[Candidate]) -> tuple[list[Candidate], int]:
        """Bring the nested runs in line with candidates.jsonl, the search's record: per candidate key keep one
        finished run and delete the rest (duplicates, runs cut short by a kill, runs of candidates the log
        does not hold, which will be evaluated again). Returns the records that have no run yet and how
        many runs were deleted."""
        runs = sorted(self.candidate_runs(), key=lambda run: run.info.start_time or 0)
        kept, dropped = reconcile_candidate_runs(
            [(run.info.run_id, run.data.tags.get("candidate_key"), run.info.status) for run in runs],
            {record.key for record in records},
        )
        for run_id in dropped:
            self.client.delete_run(run_id)
        return [record for record in records if record.key not in kept], len(dropped)

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

    def log_candidate(self, record: Candidate, parent_hashes: dict[str, str]) -> None:
        """A finished nested run holding the candidate's genes, scores, recipe and lineage."""
        run = self.client.create_run(
            self.experiment_id,
            run_name=record.candidate_id,
            tags={"mlflow.parentRunId": self.run_id, "candidate_key": record.key},
        )
        run_id = run.info.run_id
        fault_point("record")
        now = int(time.time() * 1000)
        metrics = [
            Metric(_metric_key(task, name), value, now, 0)
            for task, values in record.scores.items()
            for name, value in values.items()
        ]
        if record.fitness is not None:
            metrics.append(Metric("fitness", record.fitness, now, 0))
        if record.retention is not None:
            metrics.append(Metric("retention", record.retention, now, 0))
        metrics.append(Metric("seconds", record.seconds, now, 0))
        tags = {
            "generation": str(record.generation),
            "candidate_id": record.candidate_id,
            "genetic_parents": ",".join(record.genetic_parents),
            "origin": record.origin,
            "recipe_sha256": record.recipe.sha256(),
            "status": record.status,
            "feasible": str(record.feasible).lower(),
            **{f"parent_model_sha256/{name}": digest for name, digest in parent_hashes.items()},
        }
        if record.tensors_sha256:
            tags["tensors_sha256"] = record.tensors_sha256
        if record.worker:
            tags["worker"] = record.worker
        if record.error:
            tags["error"] = record.error[:5000]
        self.client.log_batch(
            run_id,
            metrics=metrics,
            params=[Param(k, repr(v)) for k, v in record.named_genes().items()],
            tags=[RunTag(k, v) for k, v in tags.items()],
        )
        self.client.log_text(run_id, record.recipe.to_yaml(), "recipe.yaml")
        self.client.set_terminated(run_id, "FINISHED" if record.status == "ok" else "FAILED")

    def log_artifact(self, path: Path) -> None:
        self.client.log_artifact(self.run_id, str(path))

    def log_best(self, record: Candidate) -> None:
        now = int(time.time() * 1000)
        metrics = [Metric("best/fitness", record.fitness or 0.0, now, 0)]
        if record.retention is not None:
            metrics.append(Metric("best/retention", record.retention, now, 0))
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

    def register_winner(self, name: str, record: Candidate, model_dir: Path, description: str) -> str:
        """The winner as a version of registered model `name`: its files logged under the search run
        (`best/model`), its recipe and scores in the description and tags. Idempotent per search run and
        candidate (the queue may retry it, a rerun of a finished search calls it again). Returns the version."""
        from mlflow.exceptions import MlflowException

        existing = [
            version
            for version in self.client.search_model_versions(f"name = '{name}' and run_id = '{self.run_id}'")
            if version.tags.get("candidate_key") == record.key
        ]
        if existing:
            return str(existing[0].version)
        self.client.log_artifacts(self.run_id, str(model_dir), "best/model")
        try:
            self.client.create_registered_model(name, description="children bred by evomerge searches")
        except MlflowException as error:
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        tags = {
            "candidate_id": record.candidate_id,
            "candidate_key": record.key,
            "recipe_sha256": record.recipe.sha256(),
            "tensors_sha256": record.tensors_sha256 or "",
            "fitness": f"{record.fitness:.6f}" if record.fitness is not None else "",
            **{_metric_key(t, m): f"{v:.6f}" for t, s in record.scores.items() for m, v in s.items()},
        }
        artifact_uri = self.client.get_run(self.run_id).info.artifact_uri
        version = self.client.create_model_version(
            name, source=f"{artifact_uri}/best/model", run_id=self.run_id, tags=tags, description=description
        )
        return str(version.version)

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


def sync_candidates(tracker: SearchTracker, records: list[Candidate], parent_hashes: dict[str, str]) -> None:
    """Log the candidates that candidates.jsonl holds and MLflow lacks (after a kill or an MLflow outage)."""
    missing, dropped = tracker.reconcile(records)
    for record in missing:
        tracker.log_candidate(record, parent_hashes)
    if missing or dropped:
        Console(stderr=True).print(
            f"MLflow: {len(missing)} candidate(s) synced from candidates.jsonl, {dropped} stale run(s) dropped"
        )
