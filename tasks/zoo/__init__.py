"""The demo zoo: tiny Llama models (a base and one expert per skill) built locally, since nothing can be
downloaded, so merges and searches have real parents to work on."""

from tasks.zoo.build import DEFAULT_EXPERTS, build_zoo, default_zoo_dir, ensure_zoo
from tasks.zoo.manifest import ZooManifest, ZooModelEntry, read_manifest
from tasks.zoo.progress import BuildProgress, ProgressCallback, rich_progress_callback
from tasks.zoo.recipe import ZooRecipe
from tasks.zoo.skills import SKILLS, task_name

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
