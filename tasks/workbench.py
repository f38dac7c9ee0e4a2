"""The search's workbench: parents opened once, one live model overwritten in place per candidate.

Building a model, reloading a tokenizer or writing a candidate to disk would cost more than scoring it on
the demo zoo; a candidate here costs one pass over the weights. A candidate is still its recipe: the
tensors loaded here are bit-identical to what `evomerge merge` writes for the same recipe.
"""

from __future__ import annotations

from pathlib import Path

from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from tasks.merge.engine import load_into_model, write_into_model
from tasks.merge.plan import MergePlan, plan_merge
from tasks.merge.recipe import Recipe
from tasks.merge.tensor_io import ModelSource


class Workbench:
    def __init__(self, parents: dict[str, Path], reference: str, device: str = "cpu") -> None:
        self.paths = dict(parents)
        self.device = device
        self.sources = {name: ModelSource(name, path) for name, path in self.paths.items()}
        self.model: PreTrainedModel = AutoModelForCausalLM.from_pretrained(self.paths[reference]).to(device)
        self.model.eval()
        self.tokenizer: PreTrainedTokenizerBase = AutoTokenizer.from_pretrained(self.paths[reference])

    def plan(self, recipe: Recipe) -> MergePlan:
        return plan_merge(recipe, self.paths, "candidate recipe", opened=self.sources)

    def load_recipe(self, recipe: Recipe) -> str:
        """Merge `recipe` into the live model; returns the merged tensors' sha256."""
        return load_into_model(self.plan(recipe), self.model, self.device)

    def load_parent(self, name: str) -> str:
        """Put one parent's own weights in the live model (to score the parents with the same machinery)."""
        source = self.sources[name]
        return write_into_model(((tensor, source.get(tensor)) for tensor in source.tensors), self.model)
