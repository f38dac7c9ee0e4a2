"""Sparsification of task vectors: magnitude (TIES), magnitude outliers (breadcrumbs), random (DARE) and
magnitude-ranked random (DELLA), with mergekit 0.1.5's meaning: the same kept counts, cut-offs, keep
probabilities, work dtypes and L1 rescaling. The random ones draw from a generator the engine seeds per
tensor, so a merge is reproducible.

How it is fast (tests/benchmarks/sparsify_speed.py measures it against the sort-based version):
- nothing sorts floats. For non-negative IEEE floats the bit pattern, read as an integer, grows with the
  value, so magnitudes become integer keys: TIES and breadcrumbs find their cut-offs by a histogram (radix)
  select over the keys, DELLA ranks rows with a radix sort;
- Bernoulli masks take 8 random bits per entry instead of a float each;
- masks are 0/1 factors of the tensor's dtype computed block by block (`_BLOCK` entries) with small
  temporaries and multiplied into the one output tensor (DELLA alone keeps a whole mask, as bytes): on CPU a
  fresh full-size temporary costs as much in page faults as its arithmetic. Comparisons write straight into
  the factors (torch's bool outputs are several times slower). Single whole-tensor ops (abs, sums, copysign)
  stay whole.

Ties at a cut-off: where entries share the cut-off magnitude, mergekit keeps whichever its unstable argsort
happens to put first, an artifact of torch's CPU introsort. We keep the lowest indices, i.e. exactly the set
a stable sort gives: deterministic and the same on every device. Outputs can therefore differ from
mergekit's only at entries whose magnitude equals a cut-off (tests/parity checks exactly that).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from tasks.merge.methods.blocks import block_size, spans

L1_EPS = 1e-7
# Entries per block of the streamed passes: below torch's parallel grain (32768), so each block's ops run
# inline on the calling thread. A block is in L1/L2, and nothing waits on an OpenMP team per block (on a
# busy machine, e.g. beside the engine's writer thread, each parallel region can stall for a time slice).
_BLOCK = 32768 - 8

# Integer type of each float type's bit pattern, and the key one above +inf that every NaN gets.
_KEY_DTYPES = {
    torch.bfloat16: torch.int16,
    torch.float16: torch.int16,
    torch.float32: torch.int32,
    torch.float64: torch.int64,
}
_NAN_KEYS = {
    torch.bfloat16: 0x7F81,
    torch.float16: 0x7C01,
    torch.float32: 0x7F800001,
    torch.float64: 0x7FF0000000000001,
}


def rescale_to_l1(original: Tensor, masked: Tensor, eps: float = L1_EPS) -> Tensor:
    """Scale `masked` so its L1 norm equals the original's (mergekit's `rescale`), unless either is ~0."""
    before = original.abs().sum()
    after = masked.abs().sum()
    if before < eps or after < eps:
        return masked
    return masked * (before / after)


def _block_for(tensor: Tensor) -> int:
    return block_size(tensor, _BLOCK)


def _apply_factors(
    original: Tensor, factors: Iterable[Tensor], *, rescale_l1: bool, out: Tensor | None = None
) -> Tensor:
    """`original · factor`, L1-rescaled if asked: bit for bit `rescale_to_l1(original, original * factor)`,
    where the 0/1 factor (in `original`'s dtype) comes as consecutive blocks of the flattened tensor.

    mergekit multiplies by a 0/1 mask of the tensor's dtype (a dropped −x leaves −0, a dropped ±inf NaN), and
    so do we, block by block into the one output buffer. With rescaling that buffer first holds |original|
    (its sum is the L1 norm before), is multiplied by the factors (|x|·f = |x·f|: its sum is the norm after)
    and gets the signs back by copysign, which turns |x|·1 into x and |x|·0 into x·0 (±0) exactly. The sums
    run over the whole tensor, as in mergekit, so they round alike. `out` may give the output's memory (any
    dtype, as many bytes), e.g. a dead temporary whose pages are already mapped."""
    flat = original.reshape(-1)
    numel = flat.numel()
    out = torch.empty_like(flat) if out is None else out.reshape(-1).view(flat.dtype)
    if rescale_l1:
        before = torch.abs(flat, out=out).sum()
    start = 0
    for factor in factors:
        stop = start + factor.numel()
        if rescale_l1:
            out[start:stop].mul_(factor)
        else:
            torch.mul(flat[start:stop], factor, out=out[start:stop])
        start = stop
    if start != numel:
        raise ValueError(f"the factors cover {start} of {numel} entries")
    if rescale_l1:
        after = out.sum()
        torch.copysign(out, flat, out=out)
        if not (before < L1_EPS or after < L1_EPS):  # not `>=`: a NaN norm scales everything to NaN, as in mergekit
            out.mul_(before / after)
    return out.reshape(original.shape)


# ------------------------------------------------------------------------------------------------
# magnitudes as integer keys
def _magnitude_keys(tensor: Tensor, *, as_float32: bool) -> Tensor:
    """Flat integer keys that order like |tensor|: as float32 when `as_float32` (mergekit ranks TIES and
    breadcrumbs on float32 magnitudes; bf16 and fp16 cast up exactly, so their own 16-bit keys order alike),
    else in the tensor's dtype.

    Clearing the sign bit is abs, and for non-negative IEEE floats the bit pattern read as a signed integer of
    the same width is monotone in the value (subnormals and +inf included). Every NaN gets one key just above
    +inf: torch's sorts treat NaNs as equal to each other and larger than anything."""
    flat = tensor.reshape(-1)
    if as_float32 and flat.dtype not in (torch.bfloat16, torch.float16):
        flat = flat.float()
    key_dtype = _KEY_DTYPES[flat.dtype]
    keys = flat.view(key_dtype) & torch.iinfo(key_dtype).max
    return keys.clamp_(max=_NAN_KEYS[flat.dtype])


def _key_blocks(flat: Tensor) -> Iterator[Tensor]:
    """`_magnitude_keys(flat, as_float32=True)` block by block (never the whole key tensor at once)."""
    for start, stop in spans(flat.numel(), _block_for(flat)):
        yield _magnitude_keys(flat[start:stop], as_float32=True)


@dataclass(frozen=True)
class _KeyRank:
    key: int  # the key found at a position of the ascending order
    below: int  # how many keys are smaller
    equal: int  # how many keys equal it


def _locate(counts: Tensor, position: int) -> _KeyRank:
    """The bin of a histogram (bins in ascending order) that holds the 0-based `position`."""
    ends = counts.cumsum(0)
    index = int(torch.searchsorted(ends, position, right=True))
    equal = int(counts[index])
    return _KeyRank(index, int(ends[index]) - equal, equal)


def _histogram(values: Iterable[Tensor], bins: int, device: torch.device) -> Tensor:
    """Counts of the non-negative integers in `values` (blocks), over `bins` bins. Each block's bincount only
    spans up to its largest value, so small blocks stay single-threaded ops."""
    counts = torch.zeros(bins, dtype=torch.int64, device=device)
    for block in values:
        block_counts = torch.bincount(block)
        counts[: block_counts.numel()] += block_counts
    return counts


def _keys_at(flat: Tensor, positions: list[int]) -> list[_KeyRank]:
    """The keys at `positions` of the ascending order of `_magnitude_keys(flat, as_float32=True)`, by radix
    select: a histogram of the top 16 bits finds each position's bucket, one of the low 16 bits of that
    bucket's members the key itself. One or two linear passes instead of an O(n log n) sort."""
    if flat.dtype in (torch.bfloat16, torch.float16):  # 16-bit keys: one level
        counts = _histogram(_key_blocks(flat), 1 << 15, flat.device)
        return [_locate(counts, position) for position in positions]
    coarse = _histogram((keys >> 16 for keys in _key_blocks(flat)), 1 << 15, flat.device)
    buckets = [_locate(coarse, position) for position in positions]
    members: dict[int, list[Tensor]] = {bucket.key: [] for bucket in buckets}
    for keys in _key_blocks(flat):
        high = keys >> 16
        for bucket, found in members.items():
            found.append(keys[high == bucket] & 0xFFFF)
    fine = {bucket: torch.bincount(torch.cat(found), minlength=1 << 16) for bucket, found in members.items()}
    ranks = []
    for position, bucket in zip(positions, buckets, strict=True):
        low = _locate(fine[bucket.key], position - bucket.below)
        ranks.append(_KeyRank((bucket.key << 16) | low.key, bucket.below + low.below, low.equal))
    return ranks


# ------------------------------------------------------------------------------------------------
# magnitude pruning (TIES, breadcrumbs)
@dataclass
class _Cut:
    """One end of a kept range of positions: keys on the kept side of `key` are in; of the keys equal to it,
    the ones whose ordinal among them (in index order) is in [first, last). `seen` counts the equal keys
    met so far in a pass over the blocks."""

    key: int
    first: int
    last: int
    strict: Callable[..., Tensor]  # torch.gt or torch.lt: the kept side, ties excluded
    inclusive: Callable[..., Tensor]  # torch.ge or torch.le: ties included
    seen: int = 0

    def factors(self, keys: Tensor, out: Tensor) -> None:
        """Writes this cut's 0/1 factors for the next block of keys into `out`."""
        tied = torch.eq(keys, self.key, out=torch.empty(keys.shape, dtype=torch.uint8, device=keys.device))
        count = int(tied.sum())
        low, high = self.seen, self.seen + count  # the ordinals of this block's ties
        self.seen = high
        if count and low >= self.first and high <= self.last:
            self.inclusive(keys, self.key, out=out)
            return
        self.strict(keys, self.key, out=out)
        if count and high > self.first and low < self.last:
            inside = torch.nonzero(tied).squeeze(1)[max(self.first - low, 0) : self.last - low]
            out[inside] = 1


def _cuts(flat: Tensor, start: int, stop: int, *, descending: bool) -> list[_Cut]:
    """The cuts that keep positions [start, stop) of the (descending or ascending) order of the magnitudes,
    equal ones in index order: one where start > 0, one where stop < numel; a tie group spanning both ends
    is bounded by both. A tie group of key k starts, in that order, after the `offset` keys before it."""
    numel = flat.numel()
    ends = ([(start, True)] if start > 0 else []) + ([(stop - 1, False)] if stop < numel else [])
    ranks = _keys_at(flat, [numel - 1 - position if descending else position for position, _ in ends])
    smaller, larger = (torch.lt, torch.le), (torch.gt, torch.ge)  # (ties out, ties in)
    cuts = []
    for (_, is_first), rank in zip(ends, ranks, strict=True):
        offset = numel - rank.below - rank.equal if descending else rank.below
        if is_first:  # the first kept position: the rest of the order lies beyond it
            sides = smaller if descending else larger
            cuts.append(_Cut(rank.key, start - offset, min(stop - offset, rank.equal), *sides))
        else:  # the last kept position: the rest lies before it
            sides = larger if descending else smaller
            cuts.append(_Cut(rank.key, max(start - offset, 0), stop - offset, *sides))
    return cuts


def _rank_range_factors(tensor: Tensor, start: int, stop: int, *, descending: bool) -> Iterator[Tensor]:
    """0/1 factors (in the tensor's dtype), block by block, that keep the entries at positions [start, stop)
    when the magnitudes (as float32) are sorted ascending, or descending, equal ones in index order: i.e.
    `torch.sort(|tensor|.float().flatten(), descending=descending, stable=True).indices[start:stop]`."""
    flat = tensor.reshape(-1)
    cuts = _cuts(flat, start, stop, descending=descending) if start < stop else []
    for keys in _key_blocks(flat):
        factor = torch.empty(keys.shape, dtype=flat.dtype, device=flat.device)
        if start >= stop:
            factor.zero_()
        elif not cuts:
            factor.fill_(1)
        for index, cut in enumerate(cuts):
            if index == 0:
                cut.factors(keys, factor)
            else:
                other = torch.empty_like(factor)
                cut.factors(keys, other)
                factor.mul_(other)
        yield factor


def magnitude_prune(delta: Tensor, density: float, *, rescale_l1: bool = False) -> Tensor:
    """Keep the `max(1, int(density · numel))` entries of largest magnitude, zero the rest (TIES's trim).

    Magnitudes are ranked as float32, NaN counting as the largest (as in torch's sorts). Of the entries equal
    to the cut-off magnitude the lowest indices are kept: the kept set is exactly
    `torch.sort(|delta|.float().flatten(), descending=True, stable=True).indices[:keep]`. mergekit's unstable
    argsort keeps some other subset of those tied entries (an artifact of its sort, not reproducible by any
    selection); every other entry is kept or dropped as in mergekit."""
    numel = delta.numel()
    if density >= 1:
        return delta
    if density <= 0 or numel == 0:
        return torch.zeros_like(delta)
    keep = max(1, int(density * numel))
    return _apply_factors(delta, _rank_range_factors(delta, 0, keep, descending=True), rescale_l1=rescale_l1)


def magnitude_outliers(delta: Tensor, density: float, gamma: float, *, rescale_l1: bool = False) -> Tensor:
    """Breadcrumbs (Davari & Belilovsky 2023): drop the `gamma` share of largest-magnitude entries (outliers)
    and the smallest ones, keeping `int(density · numel)` entries just below the outliers.

    In ascending order of float32 magnitude the kept positions are [bottom, bottom + keep) with
    bottom = max(0, numel − keep − int(gamma · numel)), equal magnitudes in index order: exactly
    `torch.sort(|delta|.float().flatten(), stable=True).indices[bottom : bottom + keep]`. mergekit differs only
    in which of the entries tied at either cut-off it keeps."""
    numel = delta.numel()
    if density >= 1:
        return delta
    if density <= 0 or numel == 0:
        return torch.zeros_like(delta)
    keep = int(density * numel)
    top = int(gamma * numel)
    bottom = max(0, numel - keep - top)
    factors = _rank_range_factors(delta, bottom, min(bottom + keep, numel), descending=False)
    return _apply_factors(delta, factors, rescale_l1=rescale_l1)


# ------------------------------------------------------------------------------------------------
# random pruning (DARE, DELLA)
def _work_dtype(tensor: Tensor) -> torch.dtype:
    return tensor.dtype if tensor.device.type != "cpu" or tensor.dtype == torch.bfloat16 else torch.float32


def _row_block(period: int, block: int) -> int:
    """Block size for entries laid out in rows of `period`: whole rows, about `block` entries."""
    return max(1, block // period) * period


@dataclass(frozen=True)
class _BernoulliDraws:
    """Independent keep draws for a flat run of entries: entry i keeps iff `draws[i] < threshold[i % period]`
    (period = len(threshold)), or i is in `extra` (ascending)."""

    draws: Tensor  # uint8, one uniform byte per entry
    threshold: Tensor  # uint8
    extra: Tensor  # int64

    def factor_blocks(self, dtype: torch.dtype) -> Iterator[Tensor]:
        """The 0/1 keep factors (in `dtype`), block by block (whole rows of the period)."""
        numel, period = self.draws.numel(), self.threshold.numel()
        block = _row_block(period, _block_for(self.draws))
        starts = list(range(0, numel, block))
        bounds = torch.searchsorted(self.extra, torch.tensor([*starts, numel], device=self.extra.device)).tolist()
        for index, start in enumerate(starts):
            stop = min(start + block, numel)
            factor = torch.empty(stop - start, dtype=dtype, device=self.draws.device)
            torch.lt(self.draws[start:stop].view(-1, period), self.threshold, out=factor.view(-1, period))
            low, high = bounds[index], bounds[index + 1]
            if high > low:
                factor[self.extra[low:high] - start] = 1
            yield factor


def _bernoulli_positions(rate: Tensor, numel: int, generator: torch.Generator) -> Tensor:
    """The ascending positions in [0, numel) of a Bernoulli process: position i is in independently with
    probability `rate[i % len(rate)]`. Drawn by its gaps (geometric: ⌊ln V / ln(1 − q)⌋ failures before
    each success, V uniform in (0, 1]) at the largest rate q, then thinned to each position's own rate, so
    the cost follows the number of successes, not `numel`."""
    device = rate.device
    top = float(rate.max())
    if top <= 0 or numel == 0:
        return torch.zeros(0, dtype=torch.int64, device=device)
    if top >= 1:
        candidates = torch.arange(numel, device=device)
    else:
        log_stay, found, start = math.log1p(-top), [], 0
        while start < numel:
            expected = (numel - start) * top
            count = int(expected + 6 * math.sqrt(expected) + 16)
            uniform = torch.rand(count, generator=generator, dtype=torch.float64, device=device)
            gaps = (torch.log1p(-uniform) / log_stay).floor_().clamp_(max=numel)
            positions = start + torch.cumsum(gaps.to(torch.int64) + 1, 0) - 1
            found.append(positions[positions < numel])
            start = int(positions[-1]) + 1
        candidates = torch.cat(found)
    if rate.numel() > 1:  # thin to each position's rate
        accept = torch.rand(candidates.numel(), generator=generator, dtype=torch.float64, device=device) * top
        candidates = candidates[accept < rate[candidates % rate.numel()]]
    return candidates


def _bernoulli_draws(probability: Tensor, numel: int, generator: torch.Generator) -> _BernoulliDraws:
    """Keep draws for `numel` entries, entry i with probability p = `probability[i % len(probability)]` (one
    value, or one per position along rows of that length).

    8 random bits per entry: a uniform byte keeps the entry when below t = ⌊256·p⌋ (probability t/256); the
    rest, 256·p − t, is made up by a sparse Bernoulli process at rate q = (256·p − t) / (256 − t) over all
    entries (its positions drawn directly, see `_bernoulli_positions`): P(keep) = t/256 + (1 − t/256)·q = p,
    to double precision, from a quarter of the random bits (and time) of torch.rand or torch.bernoulli. The
    draws depend only on the generator's state."""
    device = probability.device
    if numel % probability.numel():
        raise ValueError(f"{numel} entries are not whole rows of {probability.numel()}")
    scaled = probability.double().reshape(-1) * 256
    whole = scaled.floor().clamp_(max=255)
    rate = (scaled - whole) / (256 - whole)  # p = 1: t = 255 and rate 1, so all keep
    words = torch.empty((numel + 7) // 8, dtype=torch.int64, device=device)
    words.random_(-(2**63), None, generator=generator)  # the full 64-bit range: every byte uniform
    draws = words.view(torch.uint8)[:numel]
    return _BernoulliDraws(draws, whole.to(torch.uint8), _bernoulli_positions(rate, numel, generator))


def bernoulli_prune(delta: Tensor, density: float, generator: torch.Generator, *, rescale_l1: bool = True) -> Tensor:
    """DARE (Yu et al. 2024): drop each entry with probability 1 − density. mergekit rescales by matching
    the L1 norm (not the paper's 1/density), and so do we.

    The keep probability is the density as the work dtype holds it (mergekit fills a work-dtype tensor with
    it, so on bf16 0.3 means 0.30078125); the work dtype is mergekit's (bf16 stays bf16 on CPU, other CPU
    dtypes compute in float32)."""
    if density >= 1:
        return delta
    if density < 0:
        raise ValueError(f"dare needs a density >= 0 (got {density})")
    work = _work_dtype(delta)
    probability = torch.tensor(density, dtype=work, device=delta.device)
    draws = _bernoulli_draws(probability, delta.numel(), generator)
    return _apply_factors(delta.to(work), draws.factor_blocks(work), rescale_l1=rescale_l1).to(delta.dtype)


def _radix_argsort(keys: np.ndarray) -> list[Tensor]:
    """The stable argsort of each row of non-negative integer `keys` as a chain of permutations [p₁, p₂, …]
    whose composition p₁[p₂[…]] is the argsort (left uncomposed: scattering through it is cheaper).

    An LSD radix sort over 16-bit digits: each pass stably sorts the next more significant digit, laid out in
    the order the earlier passes left, so rows end ordered by the whole key, then by column. numpy's stable
    argsort of uint16 is itself a radix sort, about 4x faster than torch's per-row merge sort; 16-bit keys
    take one pass."""
    per_key = keys.itemsize // 2
    digits = keys.view(np.uint16)
    chain: list[np.ndarray] = []
    for index in range(per_key):
        digit = digits[:, (index if sys.byteorder == "little" else per_key - 1 - index) :: per_key]
        for step in chain:
            digit = np.take_along_axis(digit, step, axis=1)
        chain.append(np.argsort(digit, axis=1, kind="stable"))
    return [torch.from_numpy(step) for step in chain]


def _unrank(keys: Tensor, by_rank: Tensor) -> Tensor:
    """Values laid out by rank put back at their entries: `out[r, order[r, j]] = by_rank[r, j]`, where order[r]
    is the stable ascending argsort of row r of the 2-D non-negative integer `keys` (equal keys in column
    order), i.e. `torch.sort(keys, dim=1, stable=True).indices`.

    On CPU the rows go in parts of about _BLOCK entries to as many threads as torch's intra-op setting allows
    (numpy and small torch ops release the GIL): each part is radix-sorted and scattered back on its own, so
    its temporaries stay in cache instead of faulting in fresh pages for whole-tensor index arrays."""
    out = torch.empty_like(by_rank)
    if keys.device.type != "cpu":
        return out.scatter_(1, torch.sort(keys, dim=1, stable=True).indices, by_rank)
    rows, length = keys.shape
    per_part = max(1, _BLOCK // length)
    parts = [slice(start, min(start + per_part, rows)) for start in range(0, rows, per_part)]
    array = keys.numpy()

    def put_back(part: slice) -> None:
        chain = _radix_argsort(array[part])
        values = by_rank[part]
        for step in reversed(chain[1:]):
            values = torch.empty_like(values).scatter_(1, step, values)
        out[part].scatter_(1, chain[0], values)

    workers = max(1, min(torch.get_num_threads(), len(parts)))
    if workers == 1:
        for part in parts:
            put_back(part)
    else:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(put_back, parts))
    return out


def _mask_factors(mask: Tensor, dtype: torch.dtype) -> Iterator[Tensor]:
    """A flat 0/1 uint8 mask as blocks of 0/1 factors in `dtype` (a comparison writes them straight in that
    dtype; a cast from uint8 is several times slower)."""
    for start, stop in spans(mask.numel(), _block_for(mask)):
        yield torch.ne(mask[start:stop], 0, out=torch.empty(stop - start, dtype=dtype, device=mask.device))


def _rank_probabilities(length: int, density: float, epsilon: float, work: torch.dtype, device: torch.device) -> Tensor:
    """Keep probability of the entry of ascending rank j (0-based) in a row of `length`: mergekit's arithmetic
    in the work dtype (ranks 1..n cast to it, so bf16 rounds the ranks of long rows), once per row length
    rather than once per entry, since every row holds the same ranks."""
    ranks = torch.arange(length, device=device).to(work) + 1
    low, high = ranks.min(), ranks.max()
    normalised = ((ranks - low) / (high - low)).clamp(0, 1)
    return (density - epsilon) + normalised * 2 * epsilon


def della_prune(
    delta: Tensor, density: float, epsilon: float, generator: torch.Generator, *, rescale_l1: bool = True
) -> Tensor:
    """DELLA (Deep et al. 2024): keep each entry with a probability that grows with its magnitude rank in its
    row, from density − ε (smallest) to density + ε (largest).

    Ranks run along dim 1 (a 1-D tensor is one row) over magnitudes in the tensor's own dtype, as in mergekit;
    equal magnitudes are ranked by index (the lower index gets the lower rank), where mergekit's unstable
    argsort orders them arbitrarily. The draws are made in rank order and scattered back to the entries."""
    if density >= 1:
        return delta
    if density <= 0:
        return torch.zeros_like(delta)
    if density + epsilon >= 1 or density - epsilon <= 0:
        raise ValueError(f"della needs 0 < density - epsilon and density + epsilon < 1 (got {density}, {epsilon})")
    if delta.numel() == 0:
        return delta
    work = _work_dtype(delta)
    rows = delta.unsqueeze(0) if delta.dim() < 2 else delta
    lines = rows.movedim(1, -1)  # the ranked dimension last (a no-op for 2-D tensors)
    length = lines.shape[-1]
    if length < 2:
        raise ValueError(f"della ranks entries along dim 1, which needs at least 2 of them (shape {list(delta.shape)})")
    keys = _magnitude_keys(lines, as_float32=False)
    probabilities = _rank_probabilities(length, density, epsilon, work, delta.device)
    draws = _bernoulli_draws(probabilities, lines.numel(), generator)
    keep_by_rank = torch.cat(list(draws.factor_blocks(torch.uint8)))
    keep = _unrank(keys.view(-1, length), keep_by_rank.view(-1, length))
    keep = keep.reshape(lines.shape).movedim(-1, 1).reshape(-1)  # back to the layout of `rows`
    reuse = keys if keys.element_size() == torch.finfo(work).bits // 8 else None  # the keys are dead by now
    result = _apply_factors(rows.to(work), _mask_factors(keep, work), rescale_l1=rescale_l1, out=reuse)
    return result.to(delta.dtype).reshape(delta.shape)
