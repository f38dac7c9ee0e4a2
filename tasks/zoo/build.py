"""Build the demo zoo: a base model and one expert per skill, scored with lm-eval, written atomically.

The base trains first; the experts then train at the same time, one worker process each, since each
depends only on the base's saved weights. Workers run pinned numerics (`tasks/zoo/numerics.py`) on one
thread, so the same seed gives byte-identical weight files on every covered machine, and the build checks
them against the recorded hashes (`tasks/zoo/expected_weights.py`). Everything is written into
`<out>.partial` and renamed at the end: a killed build never leaves a directory that looks like a complete
zoo.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy
import torch
import transformers

from tasks.errors import EvomergeError
from tasks.evaluate import EvaluationConfig, Evaluator, Scores
from tasks.zoo.expected_weights import WeightCheck, check_weights, describe_weight_check
from tasks.zoo.manifest import (
    FORMAT_VERSION,
    MANIFEST_NAME,
    ZooManifest,
    ZooModelEntry,
    directory_size,
    read_manifest,
    weight_file_hashes,
)
from tasks.zoo.numerics import ZooNumerics, numerics_for_this_machine
from tasks.zoo.progress import BuildProgress, ProgressCallback, Stage
from tasks.zoo.recipe import ZooRecipe
from tasks.zoo.skills import SKILLS, SPLITS, task_name
from tasks.zoo.training import TrainingJob, TrainingResult, job_seed
from tasks.zoo.workers import TrainingWorkers

REPO_ROOT = Path(__file__).resolve().parents[2]
ZOO_DIR_ENV = "EVOMERGE_ZOO_DIR"
BASE = "base"
DEFAULT_EXPERTS: tuple[str, ...] = SKILLS
logger = logging.getLogger(__name__)


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

    `workers` is how many experts train at once, by default all of them: on 2 cores three one-thread
    workers finish sooner than two and then one. It changes only the wall time, never the weights.
    """
    experts = _checked_experts(experts)
    recipe = recipe or ZooRecipe()
    out_dir = Path(out_dir)
    _check_replaceable(out_dir)
    workers = workers or max(1, len(experts))
    numerics = numerics_for_this_machine()
    started = time.perf_counter()
    report = _Reporter(progress, total=2 * (1 + len(experts)), started=started)

    partial = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)

    with ThreadPoolExecutor(max_workers=1) as background:
        # Importing lm-eval and loading its tasks takes seconds of CPU; the base trains on one core only.
        evaluator = background.submit(Evaluator, zoo_evaluation_config())
        results = _train_all(partial, seed, experts, recipe, numerics, workers, report)
        weight_check = _check_weights(partial, seed, recipe, numerics, results)
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
        numpy_version=numpy.__version__,
        numerics=numerics,
        weight_check=weight_check,
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

    A zoo matches when its seed, experts, recipe and numerics are the requested ones and every weight file
    still has its recorded hash. A lock file (in the temp folder) serialises concurrent callers, e.g. parallel
    test sessions, so the zoo is built at most once.
    """
    out_dir = Path(out_dir) if out_dir is not None else default_zoo_dir()
    experts = _checked_experts(experts)
    recipe = recipe or ZooRecipe()
    with _exclusive_lock(_lock_path(out_dir)):
        manifest = read_manifest(out_dir)
        if manifest is not None and _matches(manifest, out_dir, seed, experts, recipe):
            return _rechecked(manifest, out_dir)
        return build_zoo(out_dir, seed=seed, experts=experts, progress=progress, recipe=recipe)


def _checked_experts(experts: Sequence[str]) -> tuple[str, ...]:
    experts = tuple(experts)
    unknown = [skill for skill in experts if skill not in SKILLS]
    if unknown:
        raise ValueError(f"unknown expert skills {unknown}; expected some of {SKILLS}")
    if len(set(experts)) != len(experts):
        raise ValueError(f"expert skills repeat: {experts}")
    return experts


def _rechecked(manifest: ZooManifest, zoo_dir: Path) -> ZooManifest:
    # The record in the repository may have changed since the build (a new default recipe, recorded anew):
    # compare the zoo's hashes with the record as it is now, and keep the manifest in step.
    versions = {
        "torch": manifest.torch_version,
        "transformers": manifest.transformers_version,
        "numpy": manifest.numpy_version,
    }
    check = _checked_weights(manifest.seed, manifest.recipe, manifest.numerics, manifest.weight_hashes(), versions)
    if check.status == manifest.weight_check.status and check.mismatches == manifest.weight_check.mismatches:
        return manifest
    rechecked = manifest.model_copy(update={"weight_check": check})
    rechecked.write(zoo_dir)
    return rechecked


def _check_replaceable(out_dir: Path) -> None:
    # The build replaces `out_dir` whole: never delete a folder that is neither empty nor a zoo.
    if out_dir.is_file() or (out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / MANIFEST_NAME).is_file()):
        raise EvomergeError(f"{out_dir} exists and is not a zoo (no {MANIFEST_NAME}); choose another --out")


def _matches(manifest: ZooManifest, zoo_dir: Path, seed: int, experts: tuple[str, ...], recipe: ZooRecipe) -> bool:
    if manifest.format_version != FORMAT_VERSION:
        return False
    if (manifest.seed, manifest.experts, manifest.recipe) != (seed, experts, recipe):
        return False
    if manifest.numerics != numerics_for_this_machine():
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
    numerics: ZooNumerics,
    workers: int,
    report: _Reporter,
) -> list[TrainingResult]:
    base_dir = zoo_dir / BASE
    base_job = TrainingJob(
        name=BASE, stage=recipe.base, recipe=recipe, seed=job_seed(seed, BASE), output_dir=base_dir, numerics=numerics
    )
    expert_jobs = [
        TrainingJob(
            name=skill,
            stage=recipe.expert_stage(skill),
            recipe=recipe,
            seed=job_seed(seed, skill),
            output_dir=zoo_dir / skill,
            numerics=numerics,
            init_dir=base_dir,
        )
        for skill in experts
    ]

    def trained(result: TrainingResult) -> None:
        report("trained", result.name, f"trained {result.name} in {result.seconds:.0f}s", advance=True)

    with TrainingWorkers(numerics, count=1 + min(workers, len(expert_jobs))) as pool:
        report("training", BASE, "training base")
        (base_result,) = pool.run([base_job], parallel=1, on_finished=trained)
        if expert_jobs:
            report("training", None, f"training experts {', '.join(experts)}")
        return [base_result, *pool.run(expert_jobs, parallel=workers, on_finished=trained)]


def _check_weights(
    zoo_dir: Path, seed: int, recipe: ZooRecipe, numerics: ZooNumerics, results: list[TrainingResult]
) -> WeightCheck:
    hashes = {
        f"{result.name}/{file_name}": digest
        for result in results
        for file_name, digest in weight_file_hashes(zoo_dir / result.name).items()
    }
    versions = {"torch": torch.__version__, "transformers": transformers.__version__, "numpy": numpy.__version__}
    return _checked_weights(seed, recipe, numerics, hashes, versions)


def _checked_weights(
    seed: int, recipe: ZooRecipe, numerics: ZooNumerics, hashes: dict[str, str], versions: dict[str, str]
) -> WeightCheck:
    """`check_weights`, logged as a warning when the weights differ from the record."""
    check = check_weights(seed, recipe, numerics, hashes, versions)
    if check.status == "differ":
        logger.warning(describe_weight_check(check))
    return check


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
