"""Build the demo zoo: a base model and one expert per skill, scored with lm-eval, written atomically.

The base trains first (one core); the experts then train in parallel, one spawned worker per core, since
each depends only on the base's saved weights. Workers run one torch thread with deterministic kernels, so
the same seed gives byte-identical weight files. Everything is written into `<out>.partial` and renamed at
the end: a killed build never leaves a directory that looks like a complete zoo.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

import torch
import transformers

from tasks.errors import EvomergeError
from tasks.evaluate import EvaluationConfig, Evaluator, Scores
from tasks.zoo.manifest import (
    FORMAT_VERSION,
    MANIFEST_NAME,
    ZooManifest,
    ZooModelEntry,
    directory_size,
    read_manifest,
    weight_file_hashes,
)
from tasks.zoo.progress import BuildProgress, ProgressCallback, Stage
from tasks.zoo.recipe import ZooRecipe
from tasks.zoo.skills import SKILLS, SPLITS, task_name
from tasks.zoo.training import TrainingJob, TrainingResult, job_seed, prepare_worker, run_training_job

REPO_ROOT = Path(__file__).resolve().parents[2]
ZOO_DIR_ENV = "EVOMERGE_ZOO_DIR"
BASE = "base"
DEFAULT_EXPERTS: tuple[str, ...] = SKILLS


def default_zoo_dir() -> Path:
    """`$EVOMERGE_ZOO_DIR`, else `<repo root>/zoo` (git-ignored): where the CLI and the tests share a zoo."""
    configured = os.environ.get(ZOO_DIR_ENV)
    return Path(configured) if configured else REPO_ROOT / "zoo"


def zoo_evaluation_config() -> EvaluationConfig:
    """Both splits of every skill: the manifest records each model's search and test accuracy."""
    return EvaluationConfig(tasks=tuple(task_name(skill, split) for skill in SKILLS for split in SPLITS))


def build_zoo(
    out_dir: Path,
    seed: int = 0,
    experts: Sequence[str] = DEFAULT_EXPERTS,
    progress: ProgressCallback | None = None,
    recipe: ZooRecipe | None = None,
    workers: int | None = None,
) -> ZooManifest:
    """Train, score and write a zoo into `out_dir` (replacing what is there); returns its manifest.

    `workers` defaults to one per CPU core, at most one per expert; it changes only the wall time,
    never the weights. Training runs in spawned processes, so a script calling this needs the usual
    `if __name__ == "__main__":` guard.
    """
    experts = _checked_experts(experts)
    recipe = recipe or ZooRecipe()
    out_dir = Path(out_dir)
    _check_replaceable(out_dir)
    workers = workers or max(1, min(len(experts), _cpu_count()))
    started = time.perf_counter()
    report = _Reporter(progress, total=2 * (1 + len(experts)), started=started)

    partial = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)

    with ThreadPoolExecutor(max_workers=1) as background:
        # Importing lm-eval and loading its tasks takes seconds of CPU; the base trains on one core only.
        evaluator = background.submit(Evaluator, zoo_evaluation_config())
        results = _train_all(partial, seed, experts, recipe, workers, report)
        scores = _score_all(evaluator.result(), results, report)
    manifest = ZooManifest(
        seed=seed,
        experts=experts,
        skills=SKILLS,
        recipe=recipe,
        build_seconds=round(time.perf_counter() - started, 3),
        workers=workers,
        torch_version=torch.__version__,
        transformers_version=transformers.__version__,
        models={result.name: _entry(partial, result, scores[result.name]) for result in results},
    )
    manifest.write(partial)
    _replace_dir(partial, out_dir)
    report("done", None, f"zoo ready in {manifest.build_seconds:.0f}s: {out_dir}", advance=False)
    return manifest


def ensure_zoo(
    out_dir: Path | None = None,
    seed: int = 0,
    experts: Sequence[str] = DEFAULT_EXPERTS,
    progress: ProgressCallback | None = None,
    recipe: ZooRecipe | None = None,
) -> ZooManifest:
    """The zoo at `out_dir` (default: `default_zoo_dir()`), built first unless an intact matching one exists.

    A zoo matches when its seed, experts and recipe are the requested ones and every weight file still
    has its recorded hash. A lock file (in the temp folder) serialises concurrent callers, e.g. parallel
    test sessions, so the zoo is built at most once.
    """
    out_dir = Path(out_dir) if out_dir is not None else default_zoo_dir()
    experts = _checked_experts(experts)
    recipe = recipe or ZooRecipe()
    with _exclusive_lock(_lock_path(out_dir)):
        manifest = read_manifest(out_dir)
        if manifest is not None and _matches(manifest, out_dir, seed, experts, recipe):
            return manifest
        return build_zoo(out_dir, seed=seed, experts=experts, progress=progress, recipe=recipe)


def _checked_experts(experts: Sequence[str]) -> tuple[str, ...]:
    experts = tuple(experts)
    unknown = [skill for skill in experts if skill not in SKILLS]
    if unknown:
        raise ValueError(f"unknown expert skills {unknown}; expected some of {SKILLS}")
    if len(set(experts)) != len(experts):
        raise ValueError(f"expert skills repeat: {experts}")
    return experts


def _check_replaceable(out_dir: Path) -> None:
    # The build replaces `out_dir` whole: never delete a folder that is neither empty nor a zoo.
    if out_dir.is_file() or (out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / MANIFEST_NAME).is_file()):
        raise EvomergeError(f"{out_dir} exists and is not a zoo (no {MANIFEST_NAME}); choose another --out")


def _matches(manifest: ZooManifest, zoo_dir: Path, seed: int, experts: tuple[str, ...], recipe: ZooRecipe) -> bool:
    if manifest.format_version != FORMAT_VERSION:
        return False
    if (manifest.seed, manifest.experts, manifest.recipe) != (seed, experts, recipe):
        return False
    return all(
        weight_file_hashes(manifest.model_dir(zoo_dir, name)) == entry.weight_sha256
        for name, entry in manifest.models.items()
    )


def _train_all(
    zoo_dir: Path,
    seed: int,
    experts: tuple[str, ...],
    recipe: ZooRecipe,
    workers: int,
    report: _Reporter,
) -> list[TrainingResult]:
    base_dir = zoo_dir / BASE
    base_job = TrainingJob(BASE, recipe.base, recipe, job_seed(seed, BASE), base_dir)
    expert_jobs = [
        TrainingJob(skill, recipe.expert_stage(skill), recipe, job_seed(seed, skill), zoo_dir / skill, base_dir)
        for skill in experts
    ]
    # Spawned (not forked) workers: a fork of a process that already ran torch can deadlock or inherit
    # its thread pools; a spawned worker starts clean and pins itself to one thread.
    context = get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=prepare_worker) as pool:
        report("training", BASE, "training base")
        base_result = pool.submit(run_training_job, base_job).result()
        report("trained", BASE, f"trained base in {base_result.seconds:.0f}s", advance=True)
        futures = [pool.submit(run_training_job, job) for job in expert_jobs]
        if expert_jobs:
            report("training", None, f"training experts {', '.join(experts)}")
        finished = {}
        for future in as_completed(futures):
            result = future.result()
            finished[result.name] = result
            report("trained", result.name, f"trained {result.name} in {result.seconds:.0f}s", advance=True)
    return [base_result, *(finished[skill] for skill in experts)]


def _score_all(evaluator: Evaluator, results: list[TrainingResult], report: _Reporter) -> dict[str, Scores]:
    # Scored after training, not alongside it: sharing the cores with training workers makes torch's
    # thread pool spin and slowed generation tenfold.
    from transformers import AutoModelForCausalLM, AutoTokenizer

    scores = {}
    for result in results:
        report("evaluating", result.name, f"scoring {result.name}")
        with _quiet_stderr():
            model = AutoModelForCausalLM.from_pretrained(result.output_dir)
            tokenizer = AutoTokenizer.from_pretrained(result.output_dir)
        scores[result.name] = evaluator.evaluate(model, tokenizer)
        report("evaluated", result.name, f"scored {result.name}", advance=True)
    return scores


def _entry(zoo_dir: Path, result: TrainingResult, scores: Scores) -> ZooModelEntry:
    def accuracy(split: str) -> dict[str, float]:
        return {skill: scores[task_name(skill, split)]["exact_match"] for skill in SKILLS}

    model_dir = zoo_dir / result.name
    return ZooModelEntry(
        name=result.name,
        skill=None if result.name == BASE else result.name,
        path=result.name,
        weight_sha256=weight_file_hashes(model_dir),
        size_bytes=directory_size(model_dir),
        train_seconds=round(result.seconds, 3),
        final_loss=round(result.final_loss, 6),
        accuracy=accuracy("search"),
        test_accuracy=accuracy("test"),
    )


def _replace_dir(source: Path, target: Path) -> None:
    # Two renames: between them `target` is missing (looks "not built"), never half-written.
    previous = target.with_name(target.name + ".old")
    shutil.rmtree(previous, ignore_errors=True)
    if target.exists():
        target.rename(previous)
    source.rename(target)
    shutil.rmtree(previous, ignore_errors=True)


def _lock_path(zoo_dir: Path) -> Path:
    # In the temp folder, keyed by the zoo's absolute path: a lock file beside the zoo would litter the
    # repository root, and one inside it would be renamed away with the old zoo.
    digest = hashlib.sha256(str(zoo_dir.resolve()).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"evomerge-zoo-{digest}.lock"


@contextlib.contextmanager
def _exclusive_lock(lock_path: Path) -> Iterator[None]:
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    # transformers draws a "Loading weights" bar per model; the build reports through `progress` instead.
    with open(os.devnull, "w") as sink, contextlib.redirect_stderr(sink):
        yield


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class _Reporter:
    """Counts completed units and forwards events to the optional callback."""

    def __init__(self, callback: ProgressCallback | None, total: int, started: float) -> None:
        self._callback = callback
        self._total = total
        self._started = started
        self._completed = 0

    def __call__(self, stage: Stage, model: str | None, message: str, advance: bool = False) -> None:
        if advance:
            self._completed += 1
        if self._callback is not None:
            elapsed = time.perf_counter() - self._started
            self._callback(BuildProgress(stage, model, self._completed, self._total, elapsed, message))
