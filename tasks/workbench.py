"""The search's workbench: parents opened once, one live model overwritten in place per candidate.

Building a model, reloading a tokenizer or writing a candidate to disk would cost more than scoring it on
the demo zoo; a candidate here costs one pass over the weights. A candidate is still its recipe: the
tensors loaded here are bit-identical to what `evomerge merge` writes for the same recipe.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from tasks.errors import ModelMismatchError
from tasks.merge.engine import load_into_model, write_into_model
from tasks.merge.plan import MergePlan, plan_merge
from tasks.merge.recipe import Recipe
from tasks.merge.spans import FlatModel, flatten_parents, iter_span_tensors
from tasks.merge.tensor_io import ModelSource


class Workbench:
    def __init__(self, parents: dict[str, Path], reference: str, device: str = "cpu") -> None:
        self.paths = dict(parents)
        self.device = device
        self.sources = {name: ModelSource(name, path) for name, path in self.paths.items()}
        for source in self.sources.values():
            source.resident = True
        self.model: PreTrainedModel = AutoModelForCausalLM.from_pretrained(self.paths[reference]).to(device)
        self.model.eval()
        self.tokenizer: PreTrainedTokenizerBase = AutoTokenizer.from_pretrained(self.paths[reference])
        self.holds: str | None = f"parent:{reference}"
        """What the live model holds now: a recipe's sha256, or `parent:NAME`."""
        self._parameters = sum(parameter.numel() for parameter in self.model.parameters())
        self._state = self.model.state_dict(keep_vars=True)
        self._flat: dict[str, FlatModel] | None = None
        """The parents laid end to end (tasks/merge/spans.py), for small models: there a merge costs its
        per-tensor overhead, not its arithmetic. Built on the first merge, in the order its plan reads."""

    def parameter_count(self) -> int:
        return self._parameters

    def plan(self, recipe: Recipe) -> MergePlan:
        return plan_merge(recipe, self.paths, "candidate recipe", opened=self.sources)

    def load_recipe(self, recipe: Recipe) -> str:
        """Merge `recipe` into the live model; returns the merged tensors' sha256."""
        self.holds = None
        plan = self.plan(recipe)
        if self._parameters < SMALL_MODEL_PARAMETERS:
            if self._flat is None:
                self._flat = flatten_parents(plan)
            digest = write_into_model(iter_span_tensors(plan, self._flat, self.device), self.model, self._state)
        else:
            digest = load_into_model(plan, self.model, self.device)
        self.holds = recipe.sha256()
        return digest

    def ensure(self, recipe: Recipe, tensors_sha256: str | None = None) -> None:
        """Make the live model hold `recipe` (its merge may have come from a cache, in another process);
        a merge that gives other tensors than the ones recorded is an error, never scored."""
        if self.holds == recipe.sha256():
            return
        digest = self.load_recipe(recipe)
        if tensors_sha256 is not None and digest != tensors_sha256:
            raise ModelMismatchError(
                f"merging recipe {recipe.sha256()[:12]} gave tensors {digest[:12]}, the cached merge recorded "
                f"{tensors_sha256[:12]}: the parents or the merge code changed"
            )

    def load_parent(self, name: str) -> str:
        """Put one parent's own weights in the live model (to score the parents with the same machinery)."""
        source = self.sources[name]
        self.holds = None
        digest = write_into_model(((tensor, source.get(tensor)) for tensor in source.tensors), self.model)
        self.holds = f"parent:{name}"
        return digest


SMALL_MODEL_PARAMETERS = 50_000_000
"""Below this size per-op overhead, not arithmetic, is what a model costs: its matrix products are too small
for torch's intra-op threads to pay off, and the workbench merges runs of tensors as one (tasks/merge/spans.py)."""


def search_torch_threads(parameter_count: int, requested: int | None = None) -> int:
    """Threads torch should use in a search worker: `requested` when given (`EVOMERGE_TORCH_THREADS`).

    Otherwise 1 for small models. On the demo zoo (0.87M parameters, 2 cores), measured with
    tests/benchmarks/search_throughput.py: while other processes kept the cores busy, 2 threads ran the
    search at 16.7 evaluations/min (48 evaluations) and 1 thread at 130.9 (24 evaluations): every op waits
    for the slower thread. On a quiet machine 1 thread gave 192/min against 187 for 2. Larger models keep
    torch's default.
    """
    if requested is not None:
        return max(1, requested)
    return 1 if parameter_count < SMALL_MODEL_PARAMETERS else torch.get_num_threads()
