"""Running a plan: read the inputs of one tensor job, apply the method, hand the result on.

The engine is method-agnostic and produces tensors one at a time, so the same stream feeds the disk
writer (`evomerge merge`) and the in-memory path of the search (parameters copied into a live model).
"""

from __future__ import annotations

import ctypes
import hashlib
import math
import queue
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor

import torch

from tasks.errors import EvomergeError, ModelMismatchError
from tasks.merge.methods.blocks import spans
from tasks.merge.plan import MergePlan, TensorJob

BLOCK_ELEMENTS = 1 << 18
"""Entries per block for elementwise methods: every intermediate (a float32 up-cast, a weighted sum) then
stays in the CPU caches instead of streaming whole tensors through memory once per operation."""


def check_device(device: str) -> None:
    """Refuse a device this machine cannot run before anything is planned or read."""
    try:
        parsed = torch.device(device)
    except RuntimeError:
        raise EvomergeError(f"--device {device!r} is not a device; use cpu, cuda or cuda:N") from None
    if parsed.type == "cpu":
        return
    if parsed.type != "cuda":
        raise EvomergeError(f"--device {device!r}: merges run on cpu or cuda")
    if not torch.cuda.is_available():
        build = "a CPU-only torch build" if torch.version.cuda is None else f"torch built for CUDA {torch.version.cuda}"
        raise EvomergeError(f"--device {device}: no CUDA GPU is available here ({build}); use --device cpu")
    if parsed.index is not None and parsed.index >= torch.cuda.device_count():
        raise EvomergeError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")


def tune_allocator() -> None:
    """Keep freed memory for reuse instead of handing it back to the kernel after every tensor (glibc's
    default trims the heap and maps big blocks afresh, so each block of each tensor would fault in new
    zeroed pages). Process-wide and idempotent; a no-op where the C library is not glibc."""
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED:
        return
    _ALLOCATOR_TUNED = True
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20)  # the largest glibc allows on 64-bit
    libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30)


_ALLOCATOR_TUNED = False
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


class BlockPool:
    """A few reusable buffers of one block each: an elementwise merge fills one while the writer writes
    another, so a tensor of any size costs a few blocks of memory, never its size (and the buffers are
    touched once, not faulted in afresh per tensor). `take` waits while every buffer is with the writer."""

    def __init__(self, count: int = 4, entries: int = BLOCK_ELEMENTS) -> None:
        self.entries = entries
        self._free: queue.Queue[torch.Tensor] = queue.Queue()
        for _ in range(count):
            self._free.put(torch.empty(entries * 8, dtype=torch.uint8))

    def take(self, dtype: torch.dtype, numel: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(buffer, a view of it holding `numel` entries of `dtype`); hand the buffer back with `give`."""
        buffer = self._free.get()
        return buffer, buffer[: numel * dtype.itemsize].view(dtype)

    def give(self, buffer: torch.Tensor) -> None:
        self._free.put(buffer)


def read_inputs(plan: MergePlan, job: TensorJob) -> list[torch.Tensor]:
    """The job's input tensors as stored (base first): views of the mapped files, not copies."""
    return [plan.sources[item.model].read(item.tensor) for item in job.inputs]


def release_inputs(plan: MergePlan, job: TensorJob) -> None:
    """Drop the job's input pages from this process once its result is consumed (keeps the peak memory
    at a few tensors; the data stays in the page cache)."""
    for item in job.inputs:
        plan.sources[item.model].release(item.tensor)


def tensor_seed(random_seed: int, tensor_name: str) -> int:
    """A seed per output tensor: random masks (DARE, DELLA) are reproducible run to run and independent of
    the order tensors are computed in (threads, GPUs, resumed merges)."""
    digest = hashlib.sha256(f"{random_seed}:{tensor_name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def apply_method(
    plan: MergePlan,
    job: TensorJob,
    inputs: list[torch.Tensor],
    device: str = "cpu",
    release: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """The method on `inputs` (base first when the job has one): cast to the recipe's dtype, promoted to a
    common dtype, and the result cast to the job's output dtype. With `release(i)` (drop input i's pages:
    whole tensors read from mapped files), an input converted to another dtype or device is dropped as soon
    as it is converted, and a method that declares `releases_inputs` is handed `release(tensor)` to drop an
    input it is done with."""
    tensors = []
    for tensor in inputs:
        converted = tensor.to(device)
        if plan.compute_dtype is not None and converted.is_floating_point():
            converted = converted.to(plan.compute_dtype)
        tensors.append(converted)
    common = tensors[0].dtype
    for tensor in tensors[1:]:
        common = torch.promote_types(common, tensor.dtype)
    tensors = [tensor.to(common) for tensor in tensors]
    extra: dict[str, object] = {}
    if release is not None:
        for index, (original, converted) in enumerate(zip(inputs, tensors, strict=True)):
            if converted is not original:
                release(index)
        if plan.method.releases_inputs:
            positions = {id(tensor): index for index, tensor in enumerate(tensors)}
            extra["release"] = lambda tensor: release(positions.pop(id(tensor), -1))
    base = tensors.pop(0) if job.base is not None else None
    per_model = {name: list(values) for name, values in job.per_model.items()}
    if plan.method.stochastic:
        extra["generator"] = torch.Generator(device).manual_seed(tensor_seed(plan.random_seed, job.output_name))
    with torch.no_grad():
        result = plan.method.function(base, tensors, **per_model, **job.shared, **extra)
    return result.to(job.dtype)


def input_release(plan: MergePlan, job: TensorJob) -> Callable[[int], None]:
    """`release(i)`: drop the pages of the job's input i (base first; -1 is no input) from this process."""

    def release(index: int) -> None:
        if 0 <= index < len(job.inputs):
            item = job.inputs[index]
            plan.sources[item.model].release(item.tensor)

    return release


def merge_job(plan: MergePlan, job: TensorJob, device: str = "cpu") -> torch.Tensor:
    """The merged value of one output tensor, on the CPU, in the job's dtype. It may be a view of an input."""
    inputs = read_inputs(plan, job)
    if job.row_map is not None:  # parents with other vocabularies: their rows in the output's token order
        inputs = job.row_map.apply([item.model for item in job.inputs], inputs, plan.compute_dtype)
    return merge_inputs(plan, job, inputs, device)


def merge_inputs(plan: MergePlan, job: TensorJob, inputs: list[torch.Tensor], device: str = "cpu") -> torch.Tensor:
    """`merge_job` on inputs already read (and remapped): elementwise methods run block by block."""
    numel = math.prod(job.shape)
    if not _in_blocks(plan, job, device):
        return apply_method(plan, job, inputs, device, input_release(plan, job)).to("cpu").contiguous()
    merged = torch.empty(job.shape, dtype=job.dtype)
    flat_out = merged.view(-1)
    flat_in = [tensor.reshape(-1) for tensor in inputs]
    for start, stop in spans(numel, BLOCK_ELEMENTS):
        flat_out[start:stop] = apply_method(plan, job, [tensor[start:stop] for tensor in flat_in], device)
    return merged


def _in_blocks(plan: MergePlan, job: TensorJob, device: str) -> bool:
    return plan.method.elementwise and device == "cpu" and math.prod(job.shape) > BLOCK_ELEMENTS


MergedPiece = tuple[int, torch.Tensor, torch.Tensor | None]
"""(first entry, the merged entries from there on, the pool buffer holding them or None)."""


def merged_pieces(plan: MergePlan, job: TensorJob, pool: BlockPool, device: str = "cpu") -> Iterator[MergedPiece]:
    """One output tensor as it is merged, in order, for a consumer that writes pieces (the disk writer): an
    elementwise method on the CPU yields block after block, in `pool`'s buffers, and drops each block's
    input pages once merged, so neither its inputs nor its result are ever resident whole; any other method
    yields the whole tensor once. Each piece must be consumed before its buffer is given back."""
    if not _in_blocks(plan, job, device) or job.row_map is not None:
        yield 0, merge_job(plan, job, device), None
        return
    inputs = read_inputs(plan, job)
    flat_in = [tensor.reshape(-1) for tensor in inputs]
    for start, stop in spans(math.prod(job.shape), pool.entries):
        buffer, piece = pool.take(job.dtype, stop - start)
        piece.copy_(apply_method(plan, job, [tensor[start:stop] for tensor in flat_in], device))
        for item, tensor in zip(job.inputs, inputs, strict=True):
            size = tensor.dtype.itemsize
            plan.sources[item.model].release_range(item.tensor, start * size, stop * size)
        yield start, piece, buffer


def verify_finite(plan: MergePlan, skip: frozenset[str] = frozenset()) -> None:
    """Refuse parents holding NaN or infinity before anything is computed (`--check-finite`): a merge would
    spread them silently into the child. Models in `skip` are not read (results of earlier merges of a
    multi-document recipe, not computed yet)."""
    seen: set[tuple[str, str]] = set()
    for job in plan.jobs:
        for item in job.inputs:
            if (item.model, item.tensor) in seen or item.model in skip:
                continue
            seen.add((item.model, item.tensor))
            source = plan.sources[item.model]
            tensor = source.read(item.tensor)
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                bad = int((~torch.isfinite(tensor)).sum())
                raise ModelMismatchError(f"model {item.model!r}: tensor {item.tensor} holds {bad} non-finite value(s)")
            source.release(item.tensor)


def iter_merged_tensors(plan: MergePlan, device: str = "cpu") -> Iterator[tuple[str, torch.Tensor]]:
    for job in plan.jobs:
        yield job.output_name, merge_job(plan, job, device)
        release_inputs(plan, job)


def tensor_bytes(tensor: torch.Tensor) -> memoryview:
    """The raw bytes of a contiguous CPU tensor, without a copy (any dtype, bfloat16 included)."""
    return memoryview(tensor.reshape(-1).view(torch.uint8).numpy())


def tensor_hasher(name: str, dtype: torch.dtype, shape: tuple[int, ...]) -> hashlib._Hash:
    """The running hash of one tensor: its name, dtype and shape, then its bytes (fed whole or in order)."""
    return hashlib.sha256(f"{name}|{dtype}|{tuple(shape)}|".encode())


def tensor_sha256(name: str, tensor: torch.Tensor) -> str:
    tensor = tensor.detach().to("cpu").contiguous()
    digest = tensor_hasher(name, tensor.dtype, tuple(tensor.shape))
    if tensor.numel():
        digest.update(tensor_bytes(tensor))
    return digest.hexdigest()


def combine_tensor_hashes(hashes: dict[str, str]) -> str:
    """Identity of a set of weights from per-tensor hashes, in name order, so it can be computed while
    streaming. Two models with the same value hold bit-identical tensors, from memory or from disk."""
    digest = hashlib.sha256()
    for name in sorted(hashes):
        digest.update(f"{name}={hashes[name]}\n".encode())
    return digest.hexdigest()


def tensors_sha256(named_tensors: Iterable[tuple[str, torch.Tensor]]) -> str:
    return combine_tensor_hashes({name: tensor_sha256(name, tensor) for name, tensor in named_tensors})


_HASHING = ThreadPoolExecutor(max_workers=1, thread_name_prefix="evomerge-tensor-hash")
"""hashlib lets go of the GIL on large buffers: a tensor is hashed here while the next one is merged."""


def write_into_state(named_tensors: Iterable[tuple[str, torch.Tensor]], state: Mapping[str, torch.Tensor]) -> str:
    """Overwrite a model's tensors in place, given by name in `state` (`model.state_dict(keep_vars=True)`;
    they may be shared with another process); returns the written tensors' sha256. Every tensor must match
    a model parameter in name, shape and dtype, and every parameter must be written, or the model would
    silently keep stale or converted weights that differ from what a disk merge gives. The given tensors are
    hashed on a second thread: they must not change before this returns."""
    hashes: dict[str, Future[str]] = {}
    written: set[int] = set()
    with torch.no_grad():
        for name, tensor in named_tensors:
            target = state.get(name)
            if target is None:
                raise ModelMismatchError(f"merged tensor {name} has no parameter in the target model")
            if tuple(target.shape) != tuple(tensor.shape) or target.dtype != tensor.dtype:
                raise ModelMismatchError(
                    f"merged tensor {name} is {tensor.dtype} {list(tensor.shape)}, the model holds "
                    f"{target.dtype} {list(target.shape)}"
                )
            target.data.copy_(tensor)
            written.add(target.data_ptr())
            hashes[name] = _HASHING.submit(tensor_sha256, name, tensor)
    digests = {name: future.result() for name, future in hashes.items()}
    stale = [name for name, value in state.items() if value.data_ptr() not in written]
    if stale:
        raise ModelMismatchError(f"{len(stale)} model tensor(s) were not written, e.g. {stale[0]}")
    return combine_tensor_hashes(digests)


def load_into_model(plan: MergePlan, model: torch.nn.Module, device: str = "cpu") -> str:
    """The merge result written straight into a live model: no model built, nothing written to disk."""
    return write_into_state(iter_merged_tensors(plan, device), model.state_dict(keep_vars=True))
