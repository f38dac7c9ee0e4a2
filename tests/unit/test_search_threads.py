"""How many torch threads a search worker uses: one for small models (their products are too small to
split), torch's default for large ones, and always what the user asked for."""

from __future__ import annotations

import torch

from tasks.workbench import SMALL_MODEL_PARAMETERS, search_torch_threads


def test_small_models_use_one_thread_large_ones_the_default() -> None:
    assert search_torch_threads(865_152) == 1
    assert search_torch_threads(SMALL_MODEL_PARAMETERS - 1) == 1
    assert search_torch_threads(SMALL_MODEL_PARAMETERS) == torch.get_num_threads()


def test_a_requested_count_wins_and_is_at_least_one() -> None:
    assert search_torch_threads(865_152, requested=3) == 3
    assert search_torch_threads(10**10, requested=1) == 1
    assert search_torch_threads(865_152, requested=0) == 1
