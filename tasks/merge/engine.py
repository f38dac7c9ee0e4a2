"""Running a plan: read the inputs of one tensor job, apply the method, hand the result on.

The engine is method-agnostic and produces tensors one at a time, so the same stream feeds the disk
writer (`evomerge merge`) and the in-memory path of the search (parameters copied into a live model).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator

import torch

from tasks.errors import ModelMismatchError
from tasks.merge.plan import MergePlan, TensorInput, TensorJob


def _load(plan: MergePlan, item: TensorInput, device: str) -> torch.Tensor:
    tensor = plan.sources[item.model].get(item.tensor).to(device)
    if plan.compute_dtype is not None and tensor.is_floating_point():
        tensor = tensor.to(plan.compute_dtype)
    return tensor


def tensor_seed(random_seed: int, tensor_name: str) -> int:
    """A seed per output tensor: random masks (DARE, DELLA) are reproducible run to run and independent of
    the order tensors are computed in (threads, GPUs, resumed merges)."""
    digest = hashlib.sha256(f"{random_seed}:{tensor_name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def merge_job(plan: MergePlan, job: TensorJob, device: str = "cpu") -> torch.Tensor:
    """The merged value of one output tensor, on the CPU, in the output dtype."""
    base = _load(plan, job.base, device) if job.base else None
    models = [_load(plan, item, device) for item in job.models]
    inputs = ([base] if base is not None else []) + models
    common = inputs[0].dtype
    for tensor in inputs[1:]:
        common = torch.promote_types(common, tensor.dtype)
    if base is not None:
        base = base.to(common)
    models = [tensor.to(common) for tensor in models]
    per_model = {name: list(values) for name, values in job.per_model.items()}
    extra: dict[str, torch.Generator] = {}
    if plan.method.stochastic:
        extra["generator"] = torch.Generator(device).manual_seed(tensor_seed(plan.random_seed, job.output_name))
    with torch.no_grad():
        result = plan.method.function(base, models, **per_model, **job.shared, **extra)
    if plan.out_dtype is not None:
        result = result.to(plan.out_dtype)
    return result.to("cpu").contiguous()


def verify_finite(plan: MergePlan) -> None:
    """Refuse parents holding NaN or infinity before anything is computed (`--check-finite`): a merge would
    spread them silently into the child."""
    seen: set[tuple[str, str]] = set()
    for job in plan.jobs:
        for item in job.inputs:
            if (item.model, item.tensor) in seen:
                continue
            seen.add((item.model, item.tensor))
            tensor = plan.sources[item.model].get(item.tensor)
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                bad = int((~torch.isfinite(tensor)).sum())
                raise ModelMismatchError(f"model {item.model!r}: tensor {item.tensor} holds {bad} non-finite value(s)")


def iter_merged_tensors(plan: MergePlan, device: str = "cpu") -> Iterator[tuple[str, torch.Tensor]]:
    for job in plan.jobs:
        yield job.output_name, merge_job(plan, job, device)


def tensor_sha256(name: str, tensor: torch.Tensor) -> str:
    tensor = tensor.detach().to("cpu").contiguous()
    digest = hashlib.sha256(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
    if tensor.numel():
        digest.update(tensor.view(torch.uint8).numpy().tobytes())
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


def write_into_model(named_tensors: Iterable[tuple[str, torch.Tensor]], model: torch.nn.Module) -> str:
    """Overwrite `model`'s parameters in place; returns the written tensors' sha256. Every tensor must
    match a model parameter in name, shape and dtype, and every parameter must be written, or the model
    would silently keep stale or converted weights that differ from what a disk merge gives."""
    state = model.state_dict(keep_vars=True)
    hashes: dict[str, str] = {}
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
            hashes[name] = tensor_sha256(name, tensor)
    stale = [name for name, value in state.items() if value.data_ptr() not in written]
    if stale:
        raise ModelMismatchError(f"{len(stale)} model tensor(s) were not written, e.g. {stale[0]}")
    return combine_tensor_hashes(hashes)


def load_into_model(plan: MergePlan, model: torch.nn.Module, device: str = "cpu") -> str:
    """The merge result written straight into a live model: no model built, nothing written to disk."""
    return write_into_model(iter_merged_tensors(plan, device), model)
