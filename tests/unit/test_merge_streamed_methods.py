"""Methods that run their elementwise passes a block at a time (to bound their memory) give, bit for bit,
what their formula gives on whole tensors, written here as mergekit 0.1.5 writes it, for tensors of many
blocks, in bf16 and float32, on one thread and on two (a whole-tensor reduction's order depends on the
thread count, so the streamed versions keep those reductions whole)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tasks.merge.methods.arcee_fusion import SAMPLE_LIMIT, arcee_fusion
from tasks.merge.methods.karcher import karcher
from tasks.merge.methods.model_stock import model_stock
from tasks.merge.methods.multislerp import multislerp
from tasks.merge.methods.nuslerp import nuslerp
from tasks.merge.methods.sce import sce
from tasks.merge.methods.slerp import CHUNK, slerp

SHAPE = (700, 1000)  # 700,000 entries: a few blocks of 2^18


@pytest.fixture(params=[1, 2], ids=["1 thread", "2 threads"])
def threads(request: pytest.FixtureRequest):
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(before)


def parents(dtype: torch.dtype, count: int = 3, shape: tuple[int, ...] = SHAPE, seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    base = torch.randn(shape, generator=generator) * 0.02
    return [base.to(dtype)] + [(base + 0.01 * torch.randn(shape, generator=generator)).to(dtype) for _ in range(count)]


# --- the formulas on whole tensors ------------------------------------------------------------------
def nuslerp_whole(t: float, v0: torch.Tensor, v1: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    shape = v0.shape
    v0, v1 = v0.reshape(-1), v1.reshape(-1)
    u0 = v0 / torch.norm(v0, dim=-1, keepdim=True).clamp(min=1e-7)
    u1 = v1 / torch.norm(v1, dim=-1, keepdim=True).clamp(min=1e-7)
    cos = torch.sum(u0 * u1, dim=-1, keepdim=True).clamp(-1, 1)
    colinear = (1 - cos.square()) <= eps**2
    theta = torch.acos(torch.where(colinear, 0, cos))
    result = (torch.sin((1 - t) * theta) * v0 + torch.sin(t * theta) * v1) / torch.sin(theta)
    return torch.where(colinear, (1 - t) * v0 + t * v1, result).reshape(shape)


def multislerp_whole(base: torch.Tensor | None, models: list[torch.Tensor], weight: list[float], eps: float = 1e-8):
    tensors = torch.stack(models, dim=0)
    if base is not None:
        tensors -= base
    flat = tensors.view(len(models), -1)
    weights = torch.tensor(weight, dtype=tensors.dtype)
    weights = weights / weights.sum()
    norms = torch.norm(flat, dim=-1, keepdim=True)
    unit = flat / (norms + eps)
    mean = (unit * weights.view(-1, 1)).sum(0)
    mean = mean / torch.norm(mean)
    dots = (unit * mean).sum(-1, keepdim=True)
    tangent = ((unit - dots * mean) * weights.view(-1, 1)).sum(0)
    tangent_norm = torch.norm(tangent) + eps
    result = mean * torch.cos(tangent_norm) + tangent * (torch.sin(tangent_norm) / tangent_norm)
    result = (result * (norms.squeeze(-1) * weights).sum()).view(tensors.shape[1:])
    return result if base is None else result + base


def model_stock_whole(base: torch.Tensor, models: list[torch.Tensor], filter_wise: bool) -> torch.Tensor:
    anchor = base if filter_wise else base.reshape(-1)
    others = models if filter_wise else [m.reshape(-1) for m in models]
    offsets = [m - anchor for m in others]
    cosines = []
    for i in range(len(offsets)):
        for j in range(i + 1, len(offsets)):
            dot = (offsets[i] * offsets[j]).sum(-1)
            norms = (torch.linalg.norm(offsets[i], dim=-1) * torch.linalg.norm(offsets[j], dim=-1)).clamp(min=1e-6)
            cosines.append((dot / norms).clamp(-1, 1))
    cosine = torch.stack(cosines).mean(dim=0).unsqueeze(-1)
    n = len(others)
    ratio = torch.where((1 + (n - 1) * cosine).abs() < 1e-6, 0, (n * cosine) / (1 + (n - 1) * cosine))
    return (ratio * (sum(others) / n) + (1 - ratio) * anchor).reshape(base.shape)


def karcher_whole(models: list[torch.Tensor], max_iter: int = 10, tol: float = 1e-5) -> torch.Tensor:
    dtype = torch.float32
    norms = [torch.linalg.vector_norm(m.to(dtype)) for m in models]
    units = [(m / n).to(m.dtype) for m, n in zip(models, norms, strict=True)]
    alphas = [1 / len(models)] * len(models)
    mean = torch.zeros_like(units[0])
    for a, u in zip(alphas, units, strict=True):
        mean += a * u
    mean = (mean / torch.linalg.vector_norm(mean.to(dtype))).to(mean.dtype)
    for _ in range(max_iter):
        tangent = torch.zeros_like(mean)
        for a, u in zip(alphas, units, strict=True):
            dot = torch.clamp(torch.dot(mean.flatten(), u.flatten()), -1.0, 1.0)
            theta = torch.arccos(dot)
            if theta < tol:
                continue
            tangent += a * (theta / torch.sin(theta)) * (u - dot * mean)
        tangent_norm = torch.linalg.vector_norm(tangent.to(dtype))
        if tangent_norm < tol:
            break
        mean = (torch.cos(tangent_norm) * mean + torch.sin(tangent_norm) * (tangent / tangent_norm)).to(mean.dtype)
        mean = (mean / torch.linalg.vector_norm(mean.to(dtype))).to(mean.dtype)
    return (sum(a * n for a, n in zip(alphas, norms, strict=True)) * mean).to(models[0].dtype)


def sce_whole(base: torch.Tensor, models: list[torch.Tensor], select_topk: float) -> torch.Tensor:
    tvs = torch.stack([m - base for m in models], dim=0)
    variance = torch.var(tvs, dim=0, unbiased=False)
    keep = int(torch.count_nonzero(variance) * select_topk)
    mask = torch.zeros_like(variance)
    mask.view(-1)[torch.topk(variance.abs().view(-1), k=keep, largest=True).indices] = 1
    tvs = tvs * mask.unsqueeze(0)
    sign = tvs.sign()
    majority = (tvs.sum(dim=0) >= 0).to(tvs.dtype) * 2 - 1
    erase = sign == majority
    weights = tvs.square().reshape(tvs.shape[0], -1).mean(dim=1)
    weights = (weights / torch.sum(weights).item()).reshape(-1, *([1] * (tvs.dim() - 1)))
    erased = weights * erase
    return base + (tvs * erased).sum(dim=0) / torch.sum(erased, dim=0).clamp(min=1e-6)


def arcee_whole(base: torch.Tensor, other: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    diff = (other - base).abs()
    p = F.softmax(other, dim=-1) + 1e-8
    q = F.softmax(base, dim=-1) + 1e-8
    importance = diff * torch.sum(p * torch.log(p / q), dim=-1, keepdim=True)
    flat = importance.reshape(-1)
    if flat.numel() > SAMPLE_LIMIT:
        flat = flat[torch.randint(0, flat.numel(), (SAMPLE_LIMIT,), generator=generator)]
    ordered = torch.sort(flat).values
    q1, median, q3 = (ordered[int(q * (ordered.numel() - 1))] for q in (0.25, 0.5, 0.75))
    mask = (importance >= median + 1.5 * (q3 - q1)).float()
    return base + (other - base) * mask


# --- the streamed methods equal them -----------------------------------------------------------------
DTYPES = pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=["bf16", "fp32"])


def same(got: torch.Tensor, expected: torch.Tensor) -> None:
    assert got.dtype == expected.dtype and got.shape == expected.shape
    assert torch.equal(got, expected), f"{int((got != expected).sum())} of {got.numel()} entries differ"


@DTYPES
def test_nuslerp(threads: int, dtype: torch.dtype) -> None:
    base, a, b, _ = parents(dtype)
    same(nuslerp(base, [a, b], weight=[0.3, 0.5]), base + nuslerp_whole(0.5 / 0.8, a - base, b - base))
    same(nuslerp(None, [a, b], weight=[0.7, 0.2]), nuslerp_whole(0.2 / 0.9, a, b))


@DTYPES
def test_multislerp(threads: int, dtype: torch.dtype) -> None:
    base, a, b, c = parents(dtype)
    same(multislerp(base, [a, b, c], weight=[0.2, 0.5, 0.3]), multislerp_whole(base, [a, b, c], [0.2, 0.5, 0.3]))
    same(multislerp(None, [a, b], weight=[0.6, 0.4]), multislerp_whole(None, [a, b], [0.6, 0.4]))


@DTYPES
@pytest.mark.parametrize("filter_wise", [False, True])
def test_model_stock(threads: int, dtype: torch.dtype, filter_wise: bool) -> None:
    base, a, b, c = parents(dtype)
    same(model_stock(base, [a, b, c], filter_wise=filter_wise), model_stock_whole(base, [a, b, c], filter_wise))


@DTYPES
def test_karcher(threads: int, dtype: torch.dtype) -> None:
    _, a, b, c = parents(dtype)
    same(karcher(None, [a, b, c]), karcher_whole([a, b, c]))


@DTYPES
def test_sce(threads: int, dtype: torch.dtype) -> None:
    base, a, b, c = parents(dtype)
    same(sce(base, [a, b, c], select_topk=0.4), sce_whole(base, [a, b, c], 0.4))


@DTYPES
@pytest.mark.parametrize("shape", [(64, 300), (1100, 1000)], ids=["whole", "sampled"])
def test_arcee_fusion(threads: int, dtype: torch.dtype, shape: tuple[int, int]) -> None:
    base, other = parents(dtype, count=1, shape=shape)
    got = arcee_fusion(base, [other], generator=torch.Generator().manual_seed(7))
    same(got, arcee_whole(base, other, torch.Generator().manual_seed(7)))


def test_slerp_sums_its_statistics_in_chunks_of_a_million_as_mergekit_does() -> None:
    """Up to a chunk the norms and the dot are one reduction each (the whole-tensor formula); past it they are
    norms of chunk norms and sums of chunk dots, so the result still interpolates between the endpoints."""
    base, other = parents(torch.float32, count=1, shape=(CHUNK // 1000 + 50, 1000))
    merged = slerp(base, [other], t=0.3)
    assert merged.dtype == base.dtype
    flat_base, flat_other = base.reshape(-1), other.reshape(-1)
    direction = flat_base / flat_base.norm() * (flat_other / flat_other.norm())
    theta = torch.acos(direction.sum())
    expected = (torch.sin(0.7 * theta) * flat_base + torch.sin(0.3 * theta) * flat_other) / torch.sin(theta)
    assert torch.allclose(merged.reshape(-1), expected, atol=1e-6)
    small_base, small_other = parents(torch.float32, count=1, shape=(64, 64))
    assert torch.equal(slerp(small_base, [small_other], t=0.0), small_base)
