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
import hashlib
import json
import logging
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.errors import EvaluationError
from tasks.lm_eval_reuse import memoizing_hflm, reuse_task_inputs
from tasks.task_sources import REPO_TASKS, TaskSources, registry_root

if TYPE_CHECKING:
    from lm_eval.models.huggingface import HFLM
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

DEFAULT_INCLUDE_PATH = REPO_TASKS
FEWSHOT_SEED = 1234
"""lm-eval's default `fewshot_random_seed` (simple_evaluate and the CLI): the same few-shot examples."""

Scores = dict[str, dict[str, float]]
"""task name -> metric name -> value, e.g. {"evomerge_add": {"exact_match": 0.93}}."""

_TASK_FILE_SUFFIXES = (".yaml", ".jsonl", ".py", "_yaml")
_CACHED_WRAPPERS = 4
"""HFLM wrappers kept: a search evaluates one model object over and over; a few cover A/B comparisons."""


@dataclass(frozen=True)
class TaskOptions:
    """Per-task settings, as the lm_eval CLI's `--limit`, `--num_fewshot` and `--gen_kwargs` set them for
    every task."""

    limit: int | None = None
    num_fewshot: int | None = None
    gen_kwargs: tuple[tuple[str, Any], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"limit": self.limit, "num_fewshot": self.num_fewshot, "gen_kwargs": dict(self.gen_kwargs)}


@dataclass(frozen=True)
class EvaluationConfig:
    """What to score and how; `sha256()` is the key caches of scores are stored under."""

    tasks: tuple[str, ...]
    include_path: Path = DEFAULT_INCLUDE_PATH
    extra_include_paths: tuple[Path, ...] = ()
    """The user's task folders, searched after `include_path` (a later folder overrides an earlier one);
    names no folder defines come from lm-eval's registry."""
    limit: int | None = None
    """Score only the first `limit` prompts of each task (for quick checks; None scores all)."""
    options: tuple[tuple[str, TaskOptions], ...] = ()
    """Per-task settings (name -> TaskOptions); a task's own `limit` wins over `limit`."""
    batch_size: int = 256
    """Prompts generated together. On 2 CPU cores, 2 zoo tasks (400 prompts) took 0.84 s at 16, 0.47 s at
    64, 0.34 s at 128 and 0.33 s at 256; larger gained nothing. Scores were identical at every size."""
    device: str = "cpu"

    def __post_init__(self) -> None:
        # Accept a list or a single name for convenience, but store the hashable, order-preserving form.
        tasks = (self.tasks,) if isinstance(self.tasks, str) else tuple(self.tasks)
        object.__setattr__(self, "tasks", tasks)
        object.__setattr__(self, "include_path", Path(self.include_path))
        object.__setattr__(self, "extra_include_paths", tuple(Path(path) for path in self.extra_include_paths))
        object.__setattr__(self, "options", tuple(self.options))
        if not self.tasks:
            raise EvaluationError("EvaluationConfig.tasks is empty: name at least one lm-eval task")
        if self.limit is not None and self.limit <= 0:
            raise EvaluationError(f"EvaluationConfig.limit must be positive or None, got {self.limit}")
        if self.batch_size <= 0:
            raise EvaluationError(f"EvaluationConfig.batch_size must be positive, got {self.batch_size}")

    def sources(self) -> TaskSources:
        return TaskSources((self.include_path, *self.extra_include_paths))

    def options_for(self, task: str) -> TaskOptions:
        return dict(self.options).get(task, TaskOptions())

    def sha256(self) -> str:
        """Stable across machines and checkouts: the include folder counts by its files' content, not path.

        Every task file in the include folder is hashed (not only the requested tasks' files): a YAML can
        include a template or call a loader, and hashing the folder is the only way to be sure a change to
        any of them changes the key.
        """
        payload: dict[str, Any] = {
            "tasks": list(self.tasks),
            "limit": self.limit,
            "batch_size": self.batch_size,
            "device": self.device,
            "task_files": task_files_digest(self.include_path),
        }
        # only present when used, so the keys of searches that use neither stay what they were
        if self.extra_include_paths:
            payload["extra_task_files"] = [task_files_digest(path) for path in self.extra_include_paths]
        if self.options:
            payload["options"] = {name: options.to_json() for name, options in self.options}
        registry = self.sources().registry_folders_for(self.tasks)
        if registry:
            from importlib.metadata import version

            root = registry_root()
            payload["lm_eval"] = version("lm_eval")
            payload["registry_files"] = {
                folder.relative_to(root).as_posix(): task_files_digest(folder) for folder in registry
            }
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


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


@dataclass(frozen=True)
class ItemScores:
    """One task's per-prompt values of one metric, in document order, and lm-eval's aggregation of them
    (a mean for accuracies; perplexities aggregate (log-likelihood, length) pairs): what a confidence
    interval resamples."""

    values: list[Any]
    aggregate: Callable[[list[Any]], float]
    higher_is_better: bool

    @property
    def is_mean(self) -> bool:
        from lm_eval.api.metrics import mean

        return self.aggregate is mean


@dataclass
class Evaluator:
    """Build once per search; `evaluate` may then be called for every candidate (from one thread at a time:
    lm-eval keeps each call's requests on the shared task objects)."""

    config: EvaluationConfig
    _task_dict: dict[Any, Any] = field(init=False, repr=False)
    _leaf_tasks: tuple[str, ...] = field(init=False, repr=False)
    _leaves_of: dict[str, tuple[str, ...]] = field(init=False, repr=False)
    _tasks: dict[str, Any] = field(init=False, repr=False)
    _samples: dict[str, list[int]] | None = field(init=False, repr=False)
    """Document indices per task when tasks have different limits (lm-eval's `samples`)."""
    _limit: int | None = field(init=False, repr=False)
    """One limit for every task (lm-eval's own `limit`)."""
    _wrappers: list[_CachedWrapper] = field(init=False, repr=False, default_factory=list)

    def __post_init__(self) -> None:
        quiet_lm_eval_logging()
        from lm_eval.tasks import get_task_dict

        manager = self.config.sources().manager_for(self.config.tasks)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                self._task_dict = get_task_dict(list(self.config.tasks), manager)
        except Exception as error:  # lm-eval raises bare exceptions for broken YAML or data
            raise EvaluationError(f"could not load lm-eval tasks {list(self.config.tasks)}: {error}") from error
        self._leaves_of = {}
        for key, value in self._task_dict.items():
            name = key if isinstance(key, str) else key.group_name
            self._leaves_of[name] = tuple(_leaf_task_names({key: value}))
        self._leaf_tasks = tuple(dict.fromkeys(leaf for leaves in self._leaves_of.values() for leaf in leaves))
        self._tasks = {_task_name(task): task for task in _leaf_task_objects(self._task_dict)}
        self._configure_tasks()
        for task in self._tasks.values():
            reuse_task_inputs(task)

    def _configure_tasks(self) -> None:
        """What the lm_eval CLI does to each task before evaluating (simple_evaluate): its `--num_fewshot`
        and `--gen_kwargs`, a task without a few-shot setting scored zero-shot, and the few-shot sampler seeded;
        and each task's `limit` as the prompts to score."""
        limits: dict[str, int] = {}
        for requested, leaves in self._leaves_of.items():
            options = self.config.options_for(requested)
            limit = options.limit or self.config.limit
            for leaf in leaves:
                task = self._tasks[leaf]
                if options.gen_kwargs and task.get_config("output_type") == "generate_until":
                    task.set_config(key="generation_kwargs", value=dict(options.gen_kwargs), update=True)
                if options.num_fewshot is not None and task.get_config("num_fewshot") != 0:
                    task.set_config(key="num_fewshot", value=options.num_fewshot)
                elif task.get_config("num_fewshot") is None:
                    task.set_config(key="num_fewshot", value=0)
                task.set_fewshot_seed(seed=FEWSHOT_SEED)
                if limit is not None:
                    limits[leaf] = limit
        # one limit for every task is lm-eval's own `limit`; different ones are its `samples` (document indices)
        self._samples = None
        self._limit = None
        if limits and len(set(limits.values())) == 1 and len(limits) == len(self._tasks):
            self._limit = next(iter(limits.values()))
        elif limits:
            self._samples = {
                leaf: list(range(min(limit, len(self._tasks[leaf].eval_docs)))) for leaf, limit in limits.items()
            }

    @property
    def task_names(self) -> tuple[str, ...]:
        """The tasks scores come back for: requested tasks, with tags and groups expanded to their tasks."""
        return self._leaf_tasks

    @property
    def requested(self) -> tuple[str, ...]:
        return tuple(self._leaves_of)

    def output_type(self, task: str) -> str:
        """The lm-eval output type of a task (a group's: its tasks' types, joined by "+" when they differ)."""
        types = dict.fromkeys(
            self._tasks[leaf].get_config("output_type") for leaf in self._leaves_of.get(task, (task,))
        )
        return "+".join(types)

    def higher_is_better(self, task: str, metric: str) -> bool:
        """lm-eval's direction of `metric` (a key as `Scores` has it: `acc`, `exact_match,strict-match`)."""
        base = metric.partition(",")[0]
        for leaf in self._leaves_of.get(task, (task,)):
            direction = self._tasks[leaf].higher_is_better().get(base)
            if direction is not None:
                return bool(direction)
        raise EvaluationError(f"task {task} does not say whether a higher {base!r} is better")

    def evaluate(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> Scores:
        """Scores of `model` as it is now (weights changed in place since the last call are seen): every
        requested task (a group with lm-eval's aggregate) and every task under a group or tag."""
        output = self._run(model, tokenizer, log_samples=False)
        return flatten_results(output["results"], tuple(dict.fromkeys((*self._leaves_of, *self._leaf_tasks))))

    def item_scores(
        self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, metric: str | dict[str, str]
    ) -> dict[str, ItemScores]:
        """Per requested task, `metric` (one for all, or per task) of every prompt in document order."""
        output = self._run(model, tokenizer, log_samples=True)
        per_task: dict[str, ItemScores] = {}
        for requested, leaves in self._leaves_of.items():
            key = metric if isinstance(metric, str) else metric[requested]
            base, _, filter_name = key.partition(",")
            if leaves != (requested,):
                raise EvaluationError(
                    f"{requested} is a group or tag of {len(leaves)} tasks: per-prompt scores are kept per task; "
                    "name a task, not a group, for a held-out report"
                )
            samples = [
                sample
                for sample in output.get("samples", {}).get(requested, [])
                if sample.get("filter") == (filter_name or "none")
            ]
            samples.sort(key=lambda sample: sample["doc_id"])
            if not samples or base not in samples[0]:
                raise EvaluationError(f"task {requested} logged no per-prompt {key!r}")
            task = self._tasks[requested]
            per_task[requested] = ItemScores(
                [sample[base] for sample in samples],
                task.aggregation()[base],
                self.higher_is_better(requested, key),
            )
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
                    limit=self._limit,
                    samples=self._samples,
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


def _task_name(task: Any) -> str:
    return str(task.config.task)


def _leaf_task_objects(task_dict: dict[Any, Any]) -> list[Any]:
    tasks: list[Any] = []
    for value in task_dict.values():
        tasks.extend(_leaf_task_objects(value) if isinstance(value, dict) else [value])
    return tasks


def available_tasks(include_path: Path = DEFAULT_INCLUDE_PATH) -> set[str]:
    """Names of the lm-eval tasks defined in an include folder (no data is loaded)."""
    quiet_lm_eval_logging()
    return set(TaskSources((include_path,)).local_manager().all_tasks)


def evaluate_model_dir(path: Path, config: EvaluationConfig) -> Scores:
    """Load a saved model directory (offline) and score it: for one-off checks, not for search loops."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not (path / "config.json").is_file():
        raise EvaluationError(f"not a model directory (no config.json): {path}")
    model = AutoModelForCausalLM.from_pretrained(path).to(config.device)
    tokenizer = AutoTokenizer.from_pretrained(path)
    return Evaluator(config).evaluate(model, tokenizer)
