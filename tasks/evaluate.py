"""Score in-memory models with lm-eval, cheaply enough to run hundreds of times in one search.

lm-eval's `simple_evaluate` rebuilds the task manager, the tasks and the model wrapper on every call
(~0.7 s of fixed cost, more than scoring a zoo model takes). An `Evaluator` pays for the tasks once and
reuses an HFLM wrapper per model object, because a search overwrites one model's weights in place between
candidates; each call then only runs `lm_eval.evaluator.evaluate` on fresh request objects, so nothing of
one candidate's answers leaks into the next candidate's scores. Requests and prompt tokenizations are built
once per search (tasks/lm_eval_reuse.py).
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import json
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.errors import EvaluationError
from tasks.lm_eval_reuse import memoizing_hflm, reuse_task_inputs

if TYPE_CHECKING:
    from lm_eval.models.huggingface import HFLM
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_INCLUDE_PATH = REPO_ROOT / "configs" / "lm_eval_tasks"

Scores = dict[str, dict[str, float]]
"""task name -> metric name -> value, e.g. {"evomerge_add": {"exact_match": 0.93}}."""

_TASK_FILE_SUFFIXES = (".yaml", ".jsonl", ".py", "_yaml")
_CACHED_WRAPPERS = 4
"""HFLM wrappers kept: a search evaluates one model object over and over; a few cover A/B comparisons."""


@dataclass(frozen=True)
class EvaluationConfig:
    """What to score and how; `sha256()` is the key caches of scores are stored under."""

    tasks: tuple[str, ...]
    include_path: Path = DEFAULT_INCLUDE_PATH
    limit: int | None = None
    """Score only the first `limit` prompts of each task (for quick checks; None scores all)."""
    batch_size: int = 256
    """Prompts generated together. On 2 CPU cores, 2 zoo tasks (400 prompts) took 0.84 s at 16, 0.47 s at
    64, 0.34 s at 128 and 0.33 s at 256; larger gained nothing. Scores were identical at every size."""
    device: str = "cpu"

    def __post_init__(self) -> None:
        # Accept a list or a single name for convenience, but store the hashable, order-preserving form.
        tasks = (self.tasks,) if isinstance(self.tasks, str) else tuple(self.tasks)
        object.__setattr__(self, "tasks", tasks)
        object.__setattr__(self, "include_path", Path(self.include_path))
        if not self.tasks:
            raise EvaluationError("EvaluationConfig.tasks is empty: name at least one lm-eval task")
        if self.limit is not None and self.limit <= 0:
            raise EvaluationError(f"EvaluationConfig.limit must be positive or None, got {self.limit}")
        if self.batch_size <= 0:
            raise EvaluationError(f"EvaluationConfig.batch_size must be positive, got {self.batch_size}")

    def sha256(self) -> str:
        """Stable across machines and checkouts: the include folder counts by its files' content, not path.

        Every task file in the include folder is hashed (not only the requested tasks' files): a YAML can
        include a template or call a loader, and hashing the folder is the only way to be sure a change to
        any of them changes the key.
        """
        payload = {
            "tasks": list(self.tasks),
            "limit": self.limit,
            "batch_size": self.batch_size,
            "device": self.device,
            "task_files": task_files_digest(self.include_path),
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def task_files_digest(include_path: Path) -> dict[str, str]:
    """Relative path -> sha256 of each task file (YAML, templates, JSONL data, loader code) under a folder."""
    if not include_path.is_dir():
        raise EvaluationError(f"lm-eval task folder not found: {include_path}")
    digests = {}
    for path in sorted(include_path.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.name.endswith(_TASK_FILE_SUFFIXES):
            digests[path.relative_to(include_path).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


def quiet_lm_eval_logging() -> None:
    """lm-eval logs at INFO per call and warns about custom datasets per task; a search wants silence."""
    for name in ("lm_eval", "lm-eval", "transformers.generation", "datasets"):
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("lm_eval.api.task").setLevel(logging.ERROR)
    logging.getLogger("lm_eval.models.huggingface").setLevel(logging.ERROR)


def flatten_results(results: dict[str, dict[str, Any]], task_names: tuple[str, ...]) -> Scores:
    """lm-eval's `results` section as plain floats: `exact_match,none` -> `exact_match`, no stderr."""
    scores: Scores = {}
    for task_name in task_names:
        metrics = {}
        for key, value in results.get(task_name, {}).items():
            metric, _, filter_name = key.partition(",")
            if not filter_name or metric.endswith("_stderr") or isinstance(value, str):
                continue
            name = metric if filter_name == "none" else key
            metrics[name] = float(value)
        scores[task_name] = metrics
    return scores


@dataclass
class _CachedWrapper:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    lm: HFLM


@dataclass
class Evaluator:
    """Build once per search; `evaluate` may then be called for every candidate (from one thread at a time:
    lm-eval keeps each call's requests on the shared task objects)."""

    config: EvaluationConfig
    _task_dict: dict[str, Any] = field(init=False, repr=False)
    _leaf_tasks: tuple[str, ...] = field(init=False, repr=False)
    _wrappers: list[_CachedWrapper] = field(init=False, repr=False, default_factory=list)

    def __post_init__(self) -> None:
        quiet_lm_eval_logging()
        from lm_eval.tasks import TaskManager, get_task_dict

        if not self.config.include_path.is_dir():
            raise EvaluationError(f"lm-eval task folder not found: {self.config.include_path}")
        manager = TaskManager(include_path=str(self.config.include_path), include_defaults=False)
        unknown = [name for name in self.config.tasks if name not in manager.all_tasks]
        if unknown:
            raise EvaluationError(unknown_tasks_message(unknown, manager.all_tasks, self.config.include_path))
        try:
            self._task_dict = get_task_dict(list(self.config.tasks), manager)
        except Exception as error:  # lm-eval raises bare exceptions for broken YAML or data
            raise EvaluationError(f"could not load lm-eval tasks {list(self.config.tasks)}: {error}") from error
        self._leaf_tasks = tuple(_leaf_task_names(self._task_dict))
        for task in _leaf_task_objects(self._task_dict):
            reuse_task_inputs(task)

    @property
    def task_names(self) -> tuple[str, ...]:
        """The tasks scores come back for: requested tasks, with tags and groups expanded to their tasks."""
        return self._leaf_tasks

    def evaluate(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> Scores:
        """Scores of `model` as it is now (weights changed in place since the last call are seen)."""
        output = self._run(model, tokenizer, log_samples=False)
        return flatten_results(output["results"], self._leaf_tasks)

    def item_scores(
        self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, metric: str
    ) -> dict[str, list[float]]:
        """Per task, `metric` of every prompt in document order: what a confidence interval resamples."""
        output = self._run(model, tokenizer, log_samples=True)
        per_task: dict[str, list[float]] = {}
        for task in self._leaf_tasks:
            samples = sorted(output.get("samples", {}).get(task, []), key=lambda sample: sample["doc_id"])
            if not samples or metric not in samples[0]:
                raise EvaluationError(f"task {task} logged no per-prompt {metric!r}")
            per_task[task] = [float(sample[metric]) for sample in samples]
        return per_task

    def _run(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, *, log_samples: bool) -> Any:
        from lm_eval.evaluator import evaluate

        if any(module.training for module in model.modules()):
            model.eval()  # a walk that sets every module's flag: not on every call
        lm = self._wrapper_for(model, tokenizer)
        try:
            with _progress_bars_hidden():
                output = evaluate(
                    lm=lm,
                    task_dict=self._task_dict,
                    limit=self.config.limit,
                    bootstrap_iters=0,
                    log_samples=log_samples,
                )
        except Exception as error:
            raise EvaluationError(f"lm-eval failed on tasks {list(self.config.tasks)}: {error}") from error
        if output is None:
            raise EvaluationError("lm-eval returned no results (not rank 0?)")
        return output

    def _wrapper_for(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> HFLM:
        import torch

        for cached in self._wrappers:
            if cached.model is model and cached.tokenizer is tokenizer:
                return cached.lm
        if model.device.type != torch.device(self.config.device).type:
            raise EvaluationError(
                f"model is on {model.device}, but the evaluation config says device={self.config.device!r}"
            )
        lm = memoizing_hflm(model, tokenizer, self.config.batch_size)
        self._wrappers = [_CachedWrapper(model, tokenizer, lm), *self._wrappers][:_CACHED_WRAPPERS]
        return lm


@contextlib.contextmanager
def _progress_bars_hidden() -> Iterator[None]:
    """lm-eval draws tqdm bars (building requests, generating) on stderr with no per-call switch.

    tqdm resolves `sys.stderr` when a bar starts, so redirecting it here hides only this call's bars;
    logging handlers keep the stream they were created with and still report warnings.
    """
    with open(os.devnull, "w") as sink, contextlib.redirect_stderr(sink):
        yield


def _leaf_task_names(task_dict: dict[Any, Any]) -> list[str]:
    # get_task_dict nests groups as {ConfigurableGroup: {...}}; tags expand to plain task entries.
    names: list[str] = []
    for key, value in task_dict.items():
        if isinstance(value, dict):
            names.extend(_leaf_task_names(value))
        else:
            names.append(key if isinstance(key, str) else key.group_name)
    return names


def _leaf_task_objects(task_dict: dict[Any, Any]) -> list[Any]:
    tasks: list[Any] = []
    for value in task_dict.values():
        tasks.extend(_leaf_task_objects(value) if isinstance(value, dict) else [value])
    return tasks


def unknown_tasks_message(unknown: list[str], known: Iterable[str], include_path: Path) -> str:
    """One line a user can act on: the names not found, the closest known name for each (a misspelling is
    the usual cause), then every known name."""
    known = sorted(known)
    guesses = []
    for name in unknown:
        close = difflib.get_close_matches(name, known, n=2, cutoff=0.75)
        guesses.append(f"{name}: did you mean {' or '.join(close)}?" if close else f"{name}: no close name")
    return f"unknown lm-eval tasks {unknown} in {include_path} ({'; '.join(guesses)}); known: {', '.join(known)}"


def available_tasks(include_path: Path = DEFAULT_INCLUDE_PATH) -> set[str]:
    """Names of the lm-eval tasks defined in an include folder (no data is loaded)."""
    quiet_lm_eval_logging()
    from lm_eval.tasks import TaskManager

    return set(TaskManager(include_path=str(include_path), include_defaults=False).all_tasks)


def evaluate_model_dir(path: Path, config: EvaluationConfig) -> Scores:
    """Load a saved model directory (offline) and score it: for one-off checks, not for search loops."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not (path / "config.json").is_file():
        raise EvaluationError(f"not a model directory (no config.json): {path}")
    model = AutoModelForCausalLM.from_pretrained(path).to(config.device)
    tokenizer = AutoTokenizer.from_pretrained(path)
    return Evaluator(config).evaluate(model, tokenizer)
