"""The demo zoo: tiny Llama models (a base and one expert per skill) built locally, since nothing can be
downloaded, so merges and searches have real parents to work on.

The names load on first use: a training worker imports `tasks.zoo.training` alone, without the build's
evaluator (lm-eval), which costs seconds of CPU per worker.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tasks.zoo.build import DEFAULT_EXPERTS, build_zoo, default_zoo_dir, ensure_zoo
    from tasks.zoo.manifest import ZooManifest, ZooModelEntry, read_manifest
    from tasks.zoo.progress import BuildProgress, ProgressCallback, rich_progress_callback
    from tasks.zoo.recipe import ZooRecipe
    from tasks.zoo.skills import SKILLS, task_name

_HOMES = {
    "DEFAULT_EXPERTS": "build",
    "build_zoo": "build",
    "default_zoo_dir": "build",
    "ensure_zoo": "build",
    "ZooManifest": "manifest",
    "ZooModelEntry": "manifest",
    "read_manifest": "manifest",
    "BuildProgress": "progress",
    "ProgressCallback": "progress",
    "rich_progress_callback": "progress",
    "ZooRecipe": "recipe",
    "SKILLS": "skills",
    "task_name": "skills",
}

__all__ = [
    "DEFAULT_EXPERTS",
    "SKILLS",
    "BuildProgress",
    "ProgressCallback",
    "ZooManifest",
    "ZooModelEntry",
    "ZooRecipe",
    "build_zoo",
    "default_zoo_dir",
    "ensure_zoo",
    "read_manifest",
    "rich_progress_callback",
    "task_name",
]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"tasks.zoo.{_HOMES[name]}"), name)
    globals()[name] = value
    return value
