"""Writing a merged model so that a crash never leaves something that looks finished.

Everything goes into `<out>.partial/`; shards are flushed as soon as they are full (peak memory is one
shard, not a model), fsynced, and only when every file is complete is the directory renamed to `<out>`.
The result is an ordinary Hugging Face model directory: shards and index, config.json, tokenizer,
generation config, the recipe and a model card.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import save_file

from tasks.errors import EvomergeError, RecipeError
from tasks.merge.engine import combine_tensor_hashes, iter_merged_tensors, tensor_sha256, tensors_sha256, verify_finite
from tasks.merge.plan import MergePlan

DEFAULT_SHARD_BYTES = 5_000_000_000
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
    "chat_template.jinja",
)
RECIPE_FILE = "mergekit_config.yml"
ProgressCallback = Callable[[str, int], None]


def _fsync_file(path: Path) -> None:
    with path.open("rb") as handle:
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class ShardWriter:
    """Collects tensors and writes a shard each time `max_bytes` is reached; names them at the end."""

    def __init__(self, directory: Path, max_bytes: int, metadata: dict[str, str]) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.metadata = metadata
        self.pending: dict[str, torch.Tensor] = {}
        self.pending_bytes = 0
        self.shards: list[tuple[Path, list[str]]] = []
        self.total_bytes = 0

    def add(self, name: str, tensor: torch.Tensor) -> None:
        size = tensor.numel() * tensor.element_size()
        if self.pending and self.pending_bytes + size > self.max_bytes:
            self.flush()
        self.pending[name] = tensor
        self.pending_bytes += size
        self.total_bytes += size

    def flush(self) -> None:
        if not self.pending:
            return
        path = self.directory / f"shard-{len(self.shards) + 1:05d}.tmp"
        save_file(self.pending, str(path), metadata=self.metadata)
        _fsync_file(path)
        self.shards.append((path, list(self.pending)))
        self.pending = {}
        self.pending_bytes = 0

    def finish(self) -> None:
        self.flush()
        if len(self.shards) == 1:
            self.shards[0][0].rename(self.directory / "model.safetensors")
            return
        count = len(self.shards)
        weight_map: dict[str, str] = {}
        for number, (path, names) in enumerate(self.shards, start=1):
            final = f"model-{number:05d}-of-{count:05d}.safetensors"
            path.rename(self.directory / final)
            weight_map.update(dict.fromkeys(names, final))
        index = {"metadata": {"total_size": self.total_bytes}, "weight_map": weight_map}
        (self.directory / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))


def _tokenizer_donor(plan: MergePlan) -> str:
    source = plan.recipe.tokenizer_source
    if source in (None, "base"):
        return plan.reference_model
    if source == "union" or plan.recipe.tokenizer is not None:
        raise RecipeError("tokenizer_source: 'union' and `tokenizer:` (vocabulary merging) are not supported yet")
    if source not in plan.sources:
        raise RecipeError(f"tokenizer_source: {source!r} is not one of the recipe's models")
    return source


def _model_card(plan: MergePlan) -> str:
    parents = "\n".join(f"- `{name}`" for name in plan.sources)
    return (
        f"---\nlibrary_name: transformers\ntags:\n- merge\n- evomerge\n---\n# Merged model\n\n"
        f"Made with [evomerge](https://pypi.org/project/evomerge/) using `{plan.method.name}` from:\n\n"
        f"{parents}\n\n## Recipe\n\n```yaml\n{plan.recipe.to_yaml()}```\n"
    )


def _copy_auxiliary_files(plan: MergePlan, directory: Path) -> None:
    (directory / "config.json").write_text(json.dumps(plan.output_config(), indent=2))
    donor = plan.sources[_tokenizer_donor(plan)].path
    for name in TOKENIZER_FILES:
        if (donor / name).exists():
            shutil.copyfile(donor / name, directory / name)
    generation = plan.sources[plan.reference_model].path / "generation_config.json"
    if generation.exists():
        shutil.copyfile(generation, directory / "generation_config.json")
    if plan.recipe.chat_template and plan.recipe.chat_template != "auto":
        (directory / "chat_template.jinja").write_text(plan.recipe.chat_template)
    (directory / RECIPE_FILE).write_text(plan.recipe.to_yaml())
    (directory / "README.md").write_text(_model_card(plan))


def partial_dir(out_dir: Path) -> Path:
    return out_dir.with_name(out_dir.name + ".partial")


def write_model(
    plan: MergePlan,
    out_dir: Path,
    *,
    force: bool = False,
    shard_bytes: int = DEFAULT_SHARD_BYTES,
    device: str = "cpu",
    on_tensor: ProgressCallback | None = None,
) -> str:
    """Merge `plan` into `out_dir` atomically; returns the sha256 of the merged tensors."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not force:
        raise EvomergeError(f"{out_dir} already exists; pass --force to replace it")
    _tokenizer_donor(plan)
    if plan.check_finite:
        verify_finite(plan)
    work = partial_dir(out_dir)
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    metadata = {"format": "pt", "evomerge_recipe_sha256": plan.recipe.sha256()}
    writer = ShardWriter(work, shard_bytes, metadata)
    hashes: dict[str, str] = {}
    for name, tensor in iter_merged_tensors(plan, device):
        writer.add(name, tensor)
        hashes[name] = tensor_sha256(name, tensor)
        if on_tensor is not None:
            on_tensor(name, tensor.numel() * tensor.element_size())
    writer.finish()
    _copy_auxiliary_files(plan, work)
    for path in work.iterdir():
        _fsync_file(path)
    _fsync_dir(work)
    if out_dir.exists():
        replaced = out_dir.with_name(out_dir.name + f".replaced-{os.getpid()}")
        out_dir.rename(replaced)
        work.rename(out_dir)
        shutil.rmtree(replaced)
    else:
        work.rename(out_dir)
    _fsync_dir(out_dir.parent)
    return combine_tensor_hashes(hashes)


def model_dir_sha256(model_dir: Path) -> str:
    """The merged-tensor hash of a model directory on disk (same definition as the in-memory one)."""
    from tasks.merge.tensor_io import ModelSource

    source = ModelSource(str(model_dir), model_dir)
    return tensors_sha256((name, source.get(name)) for name in source.tensors)
