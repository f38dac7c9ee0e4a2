"""Where lm-eval task names come from: the repository's tasks, the user's folders, and lm-eval's own registry.

lm-eval's `TaskManager` indexes every folder it is given by parsing each YAML with its includes; over the
built-in registry (about 14,000 files) that takes seconds. Most searches name only local tasks, and a
misspelt name must be reported at once, so the registry is consulted only for names no local folder
defines, and then only the registry folders that can define them are indexed: a plain text scan of the
registry's YAML files (their `task:`, `group:` and `tag:` lines, no YAML parsing) says which ones. A name
that the scan misses but lm-eval would still find (one defined only through an `include`) falls back to
indexing the whole registry, so the answer is always lm-eval's own.
"""

from __future__ import annotations

import difflib
import importlib.util
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from tasks.errors import EvaluationError

if TYPE_CHECKING:
    from lm_eval.tasks import TaskManager

REPO_TASKS = Path(__file__).resolve().parent.parent / "configs" / "lm_eval_tasks"

_NAME_LINE = re.compile(r"^(?:task|group|tag)\s*:\s*['\"]?([A-Za-z0-9_.\-]+)['\"]?\s*(?:#.*)?$", re.MULTILINE)
_TAG_LIST = re.compile(r"^tag\s*:\s*\n((?:[ \t]+-[^\n]*\n?)+)", re.MULTILINE)
_LIST_ITEM = re.compile(r"-\s*['\"]?([A-Za-z0-9_.\-]+)")


def registry_root() -> Path:
    """lm-eval's built-in task folder, found without importing lm-eval (which takes most of a second)."""
    spec = importlib.util.find_spec("lm_eval")
    if spec is None or not spec.submodule_search_locations:
        raise EvaluationError("lm-eval is not installed in this environment")
    return Path(next(iter(spec.submodule_search_locations))) / "tasks"


@lru_cache(maxsize=1)
def registry_names() -> dict[str, frozenset[Path]]:
    """Every name the registry's YAML files declare (task, group, tag) -> the top-level registry folders
    declaring it. A top-level folder (tasks/gsm8k, tasks/mmlu) holds a benchmark with its groups and
    templates, which is what lm-eval needs indexed to build it."""
    root = registry_root()
    found: dict[str, set[Path]] = {}
    for directory, subdirectories, files in os.walk(root):
        subdirectories[:] = [name for name in subdirectories if name not in {"__pycache__", ".ipynb_checkpoints"}]
        relative = Path(directory).relative_to(root)
        if not relative.parts:
            continue  # files directly in tasks/ are not tasks
        top = root / relative.parts[0]
        for name in files:
            if not name.endswith(".yaml"):
                continue
            with open(os.path.join(directory, name), encoding="utf-8", errors="replace") as handle:
                text = handle.read()
            names = _NAME_LINE.findall(text)
            for block in _TAG_LIST.findall(text):
                names += _LIST_ITEM.findall(block)
            for task in names:
                found.setdefault(task, set()).add(top)
    return {name: frozenset(folders) for name, folders in found.items()}


@dataclass(frozen=True)
class TaskSources:
    """The task folders of one search, in order: the repository's, then the user's (`evaluation.include_path`;
    a later folder overrides an earlier one, as in lm-eval), then lm-eval's registry for any other name."""

    local_folders: tuple[Path, ...] = (REPO_TASKS,)

    def __post_init__(self) -> None:
        folders = tuple(dict.fromkeys(Path(path).resolve() for path in self.local_folders))
        missing = [str(path) for path in folders if not path.is_dir()]
        if missing:
            raise EvaluationError(f"lm-eval task folder not found: {', '.join(missing)}")
        object.__setattr__(self, "local_folders", folders)

    def local_manager(self) -> TaskManager:
        return _manager(tuple(str(path) for path in self.local_folders))

    def registry_folders_for(self, names: Iterable[str], local: TaskManager | None = None) -> list[Path]:
        """The registry folders that the names no local folder defines need indexed ([] when all are local);
        a name found nowhere raises the did-you-mean error."""
        local = local or self.local_manager()
        missing = [name for name in names if name not in local.task_index]
        if not missing:
            return []
        index = registry_names()
        unknown = [name for name in missing if name not in index]
        if unknown:
            raise EvaluationError(unknown_tasks_message(unknown, [*local.task_index, *index], self))
        return sorted({folder for name in missing for folder in index[name]})

    def manager_for(self, names: Sequence[str]) -> TaskManager:
        """A TaskManager that knows every name in `names` (and the subtasks of the groups among them), or the
        error naming the unknown ones with the closest known names."""
        local = self.local_manager()
        folders = self.registry_folders_for(names, local)
        if not folders:
            return local
        manager = _manager(tuple(str(path) for path in (*folders, *self.local_folders)))
        if all(name in manager.task_index for name in names) and _groups_complete(manager, names):
            return manager
        full = _manager(tuple(str(path) for path in self.local_folders), include_defaults=True)
        unknown = [name for name in names if name not in full.task_index]
        if unknown:
            raise EvaluationError(unknown_tasks_message(unknown, [*local.task_index, *registry_names()], self))
        return full

    def describe(self) -> str:
        return ", ".join(str(path) for path in self.local_folders) + " and lm-eval's registry"


def _manager(paths: tuple[str, ...], include_defaults: bool = False) -> TaskManager:
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=list(paths), include_defaults=include_defaults)


def _groups_complete(manager: TaskManager, names: Sequence[str]) -> bool:
    """Whether every task a named group lists (recursively) is in the index: a group may list tasks that
    another registry folder defines."""
    seen: set[str] = set()
    pending = list(names)
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        entry = manager.task_index.get(name)
        if entry is None:
            return False
        members = (entry.cfg or {}).get("task") if entry.cfg and "group" in entry.cfg else None
        for member in members if isinstance(members, list) else []:
            if isinstance(member, str):  # an inline dict defines its task itself
                pending.append(member)
    return True


def unknown_tasks_message(unknown: Sequence[str], known: Iterable[str], where: TaskSources | Path | str) -> str:
    """One line a user can act on: the names not found and the closest known name for each (a misspelling
    is the usual cause); the full list only when it is short enough to read."""
    known = sorted(set(known))
    guesses = []
    for name in unknown:
        close = difflib.get_close_matches(name, known, n=2, cutoff=0.75)
        guesses.append(f"{name}: did you mean {' or '.join(close)}?" if close else f"{name}: no close name")
    place = where.describe() if isinstance(where, TaskSources) else str(where)
    listing = f"; known: {', '.join(known)}" if len(known) <= 40 else f"; {len(known)} names known"
    return f"unknown lm-eval tasks {list(unknown)} in {place} ({'; '.join(guesses)}){listing}"


def reported_metrics(manager: TaskManager, name: str) -> set[str] | None:
    """The metric keys lm-eval will report for a task or group (`acc`, `exact_match,strict-match`), read from
    its YAML alone; None where the YAML cannot say (a Python task class). A tag, or a group that does not
    aggregate, reports none of its own."""
    from lm_eval.api.registry import DEFAULT_METRIC_REGISTRY

    entry = manager.task_index.get(name)
    if entry is None or entry.cfg is None:
        return set() if entry is not None else None  # a tag: only its tasks report
    cfg = entry.cfg
    if "class" in cfg:
        return None
    if "group" in cfg:
        pairs = [
            (item.get("metric"), filter_name)
            for item in cfg.get("aggregate_metric_list") or []
            for filter_name in (item.get("filter_list") or ["none"])
        ]
    else:
        metrics = [item.get("metric") for item in cfg.get("metric_list") or []]
        if not metrics:
            metrics = list(DEFAULT_METRIC_REGISTRY.get(cfg.get("output_type", "generate_until"), []))
        filters = [item.get("name") for item in cfg.get("filter_list") or []] or ["none"]
        pairs = [(metric, filter_name) for metric in metrics for filter_name in filters]
    return {
        str(metric) if filter_name == "none" else f"{metric},{filter_name}"
        for metric, filter_name in pairs
        if isinstance(metric, str)
    }
