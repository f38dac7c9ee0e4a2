"""RAM and RAM+ (arXiv 2601.13572) against hand-computed values and the paper's invariants."""

from __future__ import annotations

import pytest
import torch

from tasks.merge.methods import ram as ram_module
from tasks.merge.methods.ram import ram, ramplus_tl
from tasks.merge.methods.task_arithmetic import task_arithmetic


def test_ram_keeps_a_lone_update_whole_and_averages_shared_ones() -> None:
    base = torch.zeros(4)
    a = torch.tensor([0.4, 0.2, 0.0, 1e-6])  # entry 0 moved by a alone, entry 1 by a and b, entry 2 by b alone
    b = torch.tensor([0.0, 0.6, -0.3, 0.0])  # entry 3: a's change is below epsilon, nobody moved it
    merged = ram(base, [a, b], epsilon=1e-5)
    assert torch.equal(merged, torch.tensor([0.4, (0.2 + 0.6) / 2, -0.3, 0.0]))


def test_ram_of_models_that_all_move_every_entry_is_their_average_update() -> None:
    torch.manual_seed(0)
    base = torch.randn(32, 8)
    models = [base + 0.1 + torch.rand(32, 8) for _ in range(3)]  # every delta > 0.1 > epsilon
    average = task_arithmetic(base, models, weight=[1 / 3] * 3)
    assert torch.allclose(ram(base, models), average, atol=1e-6)


def test_ram_of_one_model_is_that_model_where_it_moved() -> None:
    torch.manual_seed(1)
    base = torch.randn(100)
    model = base + torch.where(torch.rand(100) < 0.5, 0.01 * torch.randn(100), torch.zeros(100))
    assert torch.equal(ram(base, [model]), base + (model - base) * ((model - base).abs() > 1e-5))


def test_ramplus_scales_each_models_unique_updates_by_its_shared_share() -> None:
    base = torch.zeros(6)
    # a: unique at 0, 1, 2 and shared at 3; b: unique at 4 and shared at 3, 5 with c; c: shared at 5 only
    a = torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0, 0.0])
    b = torch.tensor([0.0, 0.0, 0.0, 3.0, 2.0, 4.0])
    c = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.0, 2.0])
    r, alpha = 0.5, 0.4
    scale_a = 1 + r * min(1 / 3, alpha)  # 1 shared over 3 unique
    scale_b = 1 + r * min(2 / 1, alpha)  # 2 shared over 1 unique: capped at alpha
    expected = torch.tensor([scale_a, scale_a, scale_a, (1.0 + 3.0) / 2, 2.0 * scale_b, (4.0 + 2.0) / 2])
    merged = ramplus_tl(base, [a, b, c], r=r, alpha=alpha)
    assert merged.dtype == torch.float32
    assert torch.allclose(merged, expected, atol=1e-6)


def test_ramplus_with_r_zero_is_ram() -> None:
    torch.manual_seed(2)
    base = torch.randn(64, 16)
    models = [base + torch.where(torch.rand(64, 16) < 0.4, torch.randn(64, 16), torch.zeros(64, 16)) for _ in range(3)]
    assert torch.equal(ramplus_tl(base, models, r=0.0), ram(base, models))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_ramplus_counted_block_by_block_equals_one_block(monkeypatch: pytest.MonkeyPatch, dtype: torch.dtype) -> None:
    """The whole-tensor counts are integers: summed over blocks they are the same, and so is every entry."""
    torch.manual_seed(3)
    base = torch.randn(300, 70).to(dtype)
    models = [(base.float() + 0.02 * torch.randn(300, 70)).to(dtype) for _ in range(3)]
    monkeypatch.setattr(ram_module, "BLOCK", 1 << 30)
    whole = ramplus_tl(base, models, r=0.3, alpha=0.5, epsilon=0.01)
    monkeypatch.setattr(ram_module, "BLOCK", 1000)
    assert torch.equal(ramplus_tl(base, models, r=0.3, alpha=0.5, epsilon=0.01), whole)
