"""Writing a merged model so that a crash never leaves something that looks finished.

Everything goes into `<out>.partial/`. The shard files are laid out from the plan before anything is
merged, so each tensor is written to its place as soon as it is merged (memory holds two tensors, never a
shard); the files are fsynced, and only when every file is complete is the directory renamed to `<out>`.
The result is an ordinary Hugging Face model directory: shards and index, config.json, tokenizer,
generation config, the recipe and a model card.
"""

from __future__ import annotations

import ctypes
import json
import math
import os
import queue
import shutil
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch

from tasks.atomic import fsync_dir
from tasks.errors import EvomergeError, RecipeError
from tasks.merge.engine import (
    BlockPool,
    combine_tensor_hashes,
    merged_pieces,
    release_inputs,
    tensor_bytes,
    tensor_hasher,
    tensors_sha256,
    tune_allocator,
    verify_finite,
)
from tasks.merge.plan import MergePlan, TensorJob
from tasks.merge.tensor_io import SAFETENSORS_DTYPES

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


SAFETENSORS_NAMES = {dtype: name for name, dtype in SAFETENSORS_DTYPES.items()}


@dataclass(frozen=True)
class ShardEntry:
    name: str
    dtype: torch.dtype
    shape: tuple[int, ...]
    offset: int
    """Absolute byte offset of the tensor's data in its shard file."""

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


@dataclass(frozen=True)
class Shard:
    file_name: str
    header: bytes
    entries: list[ShardEntry]

    @property
    def size(self) -> int:
        return len(self.header) + sum(entry.nbytes for entry in self.entries)


def plan_shards(jobs: list[TensorJob], max_bytes: int, metadata: dict[str, str]) -> list[Shard]:
    """Every output file laid out before anything is merged (the plan knows each tensor's shape and dtype).
    Tensors fill shards in job order until `max_bytes`; inside a shard, wider dtypes come first, so every
    tensor starts aligned to its element size, as safetensors' own writer arranges them."""
    groups: list[list[TensorJob]] = [[]]
    size = 0
    for job in jobs:
        if groups[-1] and size + job.nbytes > max_bytes:
            groups.append([])
            size = 0
        groups[-1].append(job)
        size += job.nbytes
    groups = [group for group in groups if group]
    shards = []
    for number, group in enumerate(groups, start=1):
        ordered = sorted(group, key=lambda job: -job.dtype.itemsize)
        table: dict[str, Any] = {"__metadata__": metadata}
        starts = []
        cursor = 0
        for job in ordered:
            table[job.output_name] = {
                "dtype": SAFETENSORS_NAMES[job.dtype],
                "shape": list(job.shape),
                "data_offsets": [cursor, cursor + job.nbytes],
            }
            starts.append(cursor)
            cursor += job.nbytes
        text = json.dumps(table, separators=(",", ":")).encode()
        text += b" " * (-len(text) % 8)
        header = struct.pack("<Q", len(text)) + text
        entries = [
            ShardEntry(job.output_name, job.dtype, job.shape, len(header) + start)
            for job, start in zip(ordered, starts, strict=True)
        ]
        count = len(groups)
        file_name = "model.safetensors" if count == 1 else f"model-{number:05d}-of-{count:05d}.safetensors"
        shards.append(Shard(file_name, header, entries))
    return shards


def write_shard_index(directory: Path, shards: list[Shard]) -> None:
    if len(shards) < 2:
        return
    weight_map = {entry.name: shard.file_name for shard in shards for entry in shard.entries}
    total = sum(entry.nbytes for shard in shards for entry in shard.entries)
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (directory / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))


class TensorSink:
    """Writes merged tensors, whole or piece by piece, into their planned place on a thread of its own, so
    that writing and hashing one piece overlap merging the next (the kernel and hashlib release the GIL)."""

    def __init__(
        self,
        directory: Path,
        shards: list[Shard],
        on_tensor: ProgressCallback | None,
        hash_tensors: bool = True,
        durable: bool = True,
    ) -> None:
        self.hash_tensors = hash_tensors
        self.durable = durable
        self.places = {entry.name: (index, entry) for index, shard in enumerate(shards) for entry in shard.entries}
        self.descriptors: list[int] = []
        for shard in shards:
            descriptor = os.open(directory / shard.file_name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            self.descriptors.append(descriptor)
            _write_all(descriptor, memoryview(shard.header), 0)
        self.on_tensor = on_tensor
        self.writeback = EarlyWriteback()
        self.hashes: dict[str, str] = {}
        self._hashing: dict[str, Any] = {}
        self.error: BaseException | None = None
        self.queue: queue.Queue[tuple[str, int, torch.Tensor, Callable[[], None]] | None] = queue.Queue()
        self.thread = threading.Thread(target=self._run, name="evomerge-writer", daemon=True)
        self.thread.start()

    def put(self, name: str, tensor: torch.Tensor, release: Callable[[], None], start: int = 0) -> None:
        """Queue `tensor`, the entries of output `name` from entry `start` on (the whole tensor by default);
        pieces of one tensor come in order. `release` is called once its bytes are written (its buffers may
        then be reused)."""
        if self.error is not None:
            raise self.error
        self.queue.put((name, start, tensor, release))

    def _run(self) -> None:
        while (item := self.queue.get()) is not None:
            name, start, tensor, release = item
            try:
                if self.error is None:
                    self._write(name, start, tensor)
            except BaseException as error:  # noqa: BLE001 - handed to the merging thread, which raises it
                self.error = error
            finally:
                release()

    def _write(self, name: str, start: int, tensor: torch.Tensor) -> None:
        index, entry = self.places[name]
        numel = math.prod(entry.shape)
        whole = start == 0 and tensor.numel() == numel
        if (
            tensor.dtype != entry.dtype
            or (whole and tuple(tensor.shape) != entry.shape)
            or start + tensor.numel() > numel
        ):
            raise EvomergeError(
                f"internal error: {name} was planned as {entry.dtype} {list(entry.shape)}, merged as "
                f"{tensor.dtype} {list(tensor.shape)} from entry {start}"
            )
        data = tensor_bytes(tensor) if tensor.numel() else memoryview(b"")
        offset = entry.offset + start * entry.dtype.itemsize
        _write_all(self.descriptors[index], data, offset)
        if self.durable:
            self.writeback.written(self.descriptors[index], offset, len(data))
        if self.hash_tensors:
            if start == 0:
                self._hashing[name] = tensor_hasher(name, entry.dtype, entry.shape)
            self._hashing[name].update(data)
        if start + tensor.numel() < numel:
            return
        if self.hash_tensors:
            self.hashes[name] = self._hashing.pop(name).hexdigest()
        if self.on_tensor is not None:
            self.on_tensor(name, entry.nbytes)

    def finish(self) -> str | None:
        """Wait for every queued tensor, fsync the shards (when durable), and return the tensors' sha256 (if
        hashed)."""
        self.queue.put(None)
        self.thread.join()
        try:
            if self.error is not None:
                raise self.error
            for descriptor in self.descriptors if self.durable else []:
                os.fsync(descriptor)
        finally:
            self.close()
        return combine_tensor_hashes(self.hashes) if self.hash_tensors else None

    def close(self) -> None:
        if self.thread.is_alive():
            self.queue.put(None)
            self.thread.join()
        for descriptor in self.descriptors:
            os.close(descriptor)
        self.descriptors = []


class EarlyWriteback:
    """Starts the disk write of what was just written, without waiting for it (Linux `sync_file_range`
    with SYNC_FILE_RANGE_WRITE), every WRITEBACK_BYTES: the final fsync then finds most pages already on
    disk. Without it the kernel starts writing only once dirty pages pass a share of memory, so a merged
    model smaller than that was written to disk after the merge, not during it, and the fsync waited for
    all of it. A no-op where the C library lacks the call."""

    def __init__(self) -> None:
        self.pending: dict[int, tuple[int, int]] = {}
        self.call = _sync_file_range()

    def written(self, descriptor: int, offset: int, size: int) -> None:
        if self.call is None or not size:
            return
        low, high = self.pending.get(descriptor, (offset, offset))
        low, high = min(low, offset), max(high, offset + size)
        if high - low < WRITEBACK_BYTES:
            self.pending[descriptor] = (low, high)
            return
        self.pending.pop(descriptor, None)
        self.call(descriptor, ctypes.c_int64(low), ctypes.c_int64(high - low), _SYNC_FILE_RANGE_WRITE)


WRITEBACK_BYTES = 64 << 20
_SYNC_FILE_RANGE_WRITE = 2


def _sync_file_range() -> Callable[..., int] | None:
    try:
        function = ctypes.CDLL("libc.so.6", use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    return function  # type: ignore[no-any-return]


def _write_all(descriptor: int, data: memoryview, offset: int) -> None:
    done = 0
    while done < len(data):
        done += os.pwrite(descriptor, data[done:], offset + done)


def _tokenizer_donor(plan: MergePlan) -> str:
    """The model whose tokenizer the output gets when the plan built none (no `tokenizer_source` or
    `tokenizer:`): the reference model (the base, else the first model), as mergekit copies it."""
    if plan.vocabulary is None and (plan.recipe.tokenizer_source is not None or plan.recipe.tokenizer is not None):
        raise RecipeError("tokenizer_source: the plan has no output tokenizer; plan the recipe with plan_merge")
    return plan.reference_model


def _model_card(plan: MergePlan, recipe_text: str) -> str:
    parents = "\n".join(f"- `{name}`" for name in plan.sources)
    return (
        f"---\nlibrary_name: transformers\ntags:\n- merge\n- evomerge\n---\n# Merged model\n\n"
        f"Made with [evomerge](https://pypi.org/project/evomerge/) using `{plan.method.name}` from:\n\n"
        f"{parents}\n\n## Recipe\n\n```yaml\n{recipe_text}```\n"
    )


def copy_auxiliary_files(plan: MergePlan, directory: Path, recipe_text: str | None = None) -> None:
    """config.json, the tokenizer, generation config, recipe and model card. The tokenizer is the one the
    plan built (saved with transformers), else the donor's files copied as they are; with a `chat_template`
    the donor's tokenizer is loaded, given the template and saved (as mergekit re-serialises it).
    `recipe_text` is what rebuilds the model, when more than the plan's own recipe (a multi-document file)."""
    (directory / "config.json").write_text(json.dumps(plan.output_config(), indent=2))
    tokenizer = plan.vocabulary.tokenizer if plan.vocabulary is not None else None
    donor = plan.sources[_tokenizer_donor(plan)].path
    if tokenizer is None and plan.recipe.chat_template is not None:
        from tasks.merge.output_tokenizer import load_tokenizer

        tokenizer = load_tokenizer(donor)
    if tokenizer is not None:
        if plan.chat_template is not None:
            tokenizer.chat_template = plan.chat_template
        tokenizer.save_pretrained(str(directory))
    else:
        for name in TOKENIZER_FILES:
            if (donor / name).exists():
                shutil.copyfile(donor / name, directory / name)
    generation = plan.sources[plan.reference_model].path / "generation_config.json"
    if generation.exists():
        shutil.copyfile(generation, directory / "generation_config.json")
    recipe_text = recipe_text or plan.recipe.to_yaml()
    (directory / RECIPE_FILE).write_text(recipe_text)
    (directory / "README.md").write_text(_model_card(plan, recipe_text))


def partial_dir(out_dir: Path) -> Path:
    return out_dir.with_name(out_dir.name + ".partial")


def _check_free_space(directory: Path, needed: int) -> None:
    """Checked on the nearest existing ancestor, before anything is created."""
    while not directory.exists():
        directory = directory.parent
    free = shutil.disk_usage(directory).free
    if free < needed:
        raise EvomergeError(
            f"not enough disk space in {directory}: the merged model needs {needed / 1e9:.2f} GB, "
            f"{free / 1e9:.2f} GB are free"
        )


def _merge_into(
    plan: MergePlan,
    work: Path,
    shards: list[Shard],
    device: str,
    on_tensor: ProgressCallback | None,
    hash_tensors: bool,
    durable: bool,
) -> str | None:
    """Merge on this thread while a writer thread writes and hashes. Elementwise methods merge on one core
    (their cache-sized blocks gain little from a second) and leave the other to the writer."""
    tune_allocator()
    threads = torch.get_num_threads()
    if plan.method.elementwise and device == "cpu":
        torch.set_num_threads(1)
    sink = TensorSink(work, shards, on_tensor, hash_tensors, durable)
    pool = BlockPool()
    # whole results in flight: one being merged while the writer still holds the previous one
    whole = threading.Semaphore(2)

    def written(job: TensorJob, buffer: torch.Tensor | None, last: bool) -> None:
        if buffer is not None:
            pool.give(buffer)
        else:
            whole.release()
        if last:
            release_inputs(plan, job)

    try:
        for job in plan.jobs:
            numel = math.prod(job.shape)
            whole.acquire()
            for start, piece, buffer in merged_pieces(plan, job, pool, device):
                if buffer is not None and start == 0:
                    whole.release()  # streamed in pool buffers: no whole result
                last = start + piece.numel() >= numel
                sink.put(job.output_name, piece, partial(written, job, buffer, last), start)
        return sink.finish()
    finally:
        sink.close()
        torch.set_num_threads(threads)


def write_model(
    plan: MergePlan,
    out_dir: Path,
    *,
    force: bool = False,
    shard_bytes: int = DEFAULT_SHARD_BYTES,
    device: str = "cpu",
    on_tensor: ProgressCallback | None = None,
    hash_tensors: bool = True,
) -> str | None:
    """Merge `plan` into `out_dir` atomically; returns the sha256 of the merged tensors (the identity the
    search records), or None without `hash_tensors` (hashing costs ~0.5 s of CPU per GB written)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not force:
        raise EvomergeError(f"{out_dir} already exists; pass --force to replace it")
    _tokenizer_donor(plan)
    if plan.check_finite:
        verify_finite(plan)
    work = fresh_partial_dir(out_dir)
    digest = write_files(
        plan, work, shard_bytes=shard_bytes, device=device, on_tensor=on_tensor, hash_tensors=hash_tensors
    )
    publish(work, out_dir)
    return digest


def fresh_partial_dir(out_dir: Path) -> Path:
    """`<out>.partial`, emptied of what an earlier, interrupted run left there."""
    work = partial_dir(out_dir)
    if work.exists():
        shutil.rmtree(work)
    return work


def write_files(
    plan: MergePlan,
    directory: Path,
    *,
    shard_bytes: int = DEFAULT_SHARD_BYTES,
    device: str = "cpu",
    on_tensor: ProgressCallback | None = None,
    hash_tensors: bool = True,
    durable: bool = True,
    recipe_text: str | None = None,
) -> str | None:
    """Merge `plan` into the model files of `directory` (created here; nothing renamed). `durable` fsyncs
    every file and the directory; a scratch model that lives only as long as the run needs no fsync."""
    metadata = {"format": "pt", "evomerge_recipe_sha256": plan.recipe.sha256()}
    shards = plan_shards(plan.jobs, shard_bytes, metadata)
    _check_free_space(directory, sum(shard.size for shard in shards))
    directory.mkdir(parents=True, exist_ok=True)
    digest = _merge_into(plan, directory, shards, device, on_tensor, hash_tensors, durable)
    write_shard_index(directory, shards)
    copy_auxiliary_files(plan, directory, recipe_text)
    if durable:
        written = {shard.file_name for shard in shards}  # the writer fsynced these already
        for path in directory.iterdir():
            if path.is_file() and path.name not in written:
                _fsync_file(path)
        fsync_dir(directory)
    return digest


def publish(work: Path, out_dir: Path) -> None:
    """Rename the finished `work` directory to `out_dir` (replacing an old one), durably."""
    if out_dir.exists():
        replaced = out_dir.with_name(out_dir.name + f".replaced-{os.getpid()}")
        out_dir.rename(replaced)
        work.rename(out_dir)
        shutil.rmtree(replaced)
    else:
        work.rename(out_dir)
    fsync_dir(out_dir.parent)


def model_dir_sha256(model_dir: Path) -> str:
    """The merged-tensor hash of a model directory on disk (same definition as the in-memory one)."""
    from tasks.merge.tensor_io import ModelSource

    source = ModelSource(str(model_dir), model_dir)
    return tensors_sha256((name, source.get(name)) for name in source.tensors)
