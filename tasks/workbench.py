"""The search's workbench: parents opened once, one live model overwritten in place per candidate.

Building a model, reloading a tokenizer or writing a candidate to disk would cost more than scoring it on
the demo zoo; a candidate here costs one pass over the weights. A candidate is still its recipe: the
tensors loaded here are bit-identical to what `evomerge merge` writes for the same recipe.

Small models on the CPU can get a second, spare model (`start_merging_ahead`): the search merges the
next candidate into it in a worker process while the live model is being scored (`merge_ahead`,
tasks/merge_ahead.py), and the next candidate's merge task finds it done and makes the spare the live
model. On the demo zoo a merge costs as much as a fourteenth of a candidate's forward passes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from tasks.errors import ModelMismatchError
from tasks.merge.engine import load_into_model, write_into_state
from tasks.merge.plan import MergePlan
from tasks.merge.recipe import Recipe
from tasks.merge.spans import ResidentParents
from tasks.merge_ahead import MergeAheadWorker, MergeWorkerLost, shared_memory_shortfall

_log = logging.getLogger(__name__)


@dataclass
class _Slot:
    """A model the workbench writes candidates into, and what it holds now: a recipe's sha256,
    `parent:NAME`, or None while it is being written (or after a write failed)."""

    model: PreTrainedModel
    holds: str | None
    index: int
    """Which of the merge-ahead worker's models this is: the live model at the start is 0, the spare 1."""

    def __post_init__(self) -> None:
        self.state = self.model.state_dict(keep_vars=True)


class Workbench:
    def __init__(self, parents: dict[str, Path], reference: str, device: str = "cpu") -> None:
        self.paths = dict(parents)
        self.device = device
        self.reference = reference
        self._parents = ResidentParents(self.paths)
        self._live = _Slot(self._load_reference(), holds=f"parent:{reference}", index=0)
        self._spare: _Slot | None = None
        """Built by `start_merging_ahead`: a second model costs its memory, small models only."""
        self.tokenizer: PreTrainedTokenizerBase = AutoTokenizer.from_pretrained(self.paths[reference])
        self._parameters = sum(parameter.numel() for parameter in self.model.parameters())
        self._worker: MergeAheadWorker | None = None
        self._ahead: str | None = None
        """The recipe (sha256) being merged ahead into the spare."""

    def _load_reference(self) -> PreTrainedModel:
        model: PreTrainedModel = AutoModelForCausalLM.from_pretrained(self.paths[self.reference]).to(self.device)
        return model.eval()

    @property
    def model(self) -> PreTrainedModel:
        """The live model: what `evaluate` scores."""
        return self._live.model

    @property
    def holds(self) -> str | None:
        """What the live model holds now: a recipe's sha256, or `parent:NAME`."""
        return self._live.holds

    @property
    def merging_ahead(self) -> bool:
        """Whether `merge_ahead` does anything (its worker is running)."""
        return self._worker is not None

    @property
    def can_merge_ahead(self) -> bool:
        return self._parameters < SMALL_MODEL_PARAMETERS and torch.device(self.device).type == "cpu"

    def parameter_count(self) -> int:
        return self._parameters

    def plan(self, recipe: Recipe) -> MergePlan:
        return self._parents.plan(recipe)

    def load_recipe(self, recipe: Recipe) -> str:
        """Merge `recipe` into the live model; returns the merged tensors' sha256. When `recipe` is what
        `merge_ahead` was given, this takes that merge's result and makes the spare model live instead."""
        digest = self._take_ahead(recipe)
        return digest if digest is not None else self._merge_into_live(recipe)

    def start_merging_ahead(self, wait: float = 0.0) -> bool:
        """Build the spare model and start the merge-ahead worker, waiting up to `wait` seconds for it to
        be ready (it imports torch meanwhile: ~2 s, while the search scores the parents; merges ahead start
        once it is ready). False, and nothing started, for models too large for a spare or not on the CPU."""
        if self._worker is None and self.can_merge_ahead:
            model_bytes = sum(tensor.numel() * tensor.element_size() for tensor in self._live.state.values())
            short = shared_memory_shortfall(2 * model_bytes)
            if short:
                _log.warning("not merging ahead: %s", short)
                return False
            self._spare = _Slot(self._load_reference(), holds=None, index=1)
            self._worker = MergeAheadWorker(self.paths, [self._live.state, self._spare.state])
        if self._worker is not None and wait > 0:
            self._worker.ready(wait)
        return self._worker is not None

    def merge_ahead(self, recipe: Recipe) -> None:
        """Start merging `recipe` into the spare model, leaving the live model as it is (it is about to be
        scored); the next `load_recipe(recipe)` takes the result. Nothing without `start_merging_ahead`."""
        if self._worker is None or self._spare is None:
            return
        self.settle()
        self._spare.holds = None
        try:
            if not self._worker.ready():
                return
            self._worker.start(self._spare.index, recipe)
        except MergeWorkerLost as error:
            self._lose_worker(error)
            return
        self._ahead = recipe.sha256()

    def settle(self) -> None:
        """Wait out a merge still running ahead, its result unwanted (the search stopped before its
        candidate); after this nothing writes the spare until the next `merge_ahead`."""
        if self._ahead is None or self._worker is None:
            return
        self._ahead = None
        try:
            self._worker.result()
        except MergeWorkerLost as error:
            self._lose_worker(error)
        except Exception:  # noqa: BLE001,S110 - a candidate that will not be scored; its error is not wanted
            pass

    def close(self) -> None:
        """Stop the merge-ahead worker, if any."""
        self.settle()
        if self._worker is not None:
            self._worker.close()
            self._worker = None

    def _take_ahead(self, recipe: Recipe) -> str | None:
        if self._ahead != recipe.sha256():
            self.settle()
            return None
        assert self._worker is not None and self._spare is not None
        self._ahead = None
        try:
            digest = self._worker.result()
        except MergeWorkerLost as error:
            self._lose_worker(error)
            return None
        except Exception:  # noqa: BLE001 - merged again here, so the error comes with its own traceback
            return None
        self._spare.holds = recipe.sha256()
        self._live, self._spare = self._spare, self._live
        return digest

    def _lose_worker(self, error: Exception) -> None:
        _log.warning("%s; merging in the search process from now on", error)
        self._worker = None
        self._ahead = None

    def _merge_into_live(self, recipe: Recipe) -> str:
        """Merge in this process. Small models merge span by span (tasks/merge/spans.py): there a merge
        costs its per-tensor overhead, not its arithmetic."""
        live = self._live
        live.holds = None
        if self._parameters < SMALL_MODEL_PARAMETERS:
            digest = self._parents.merge_into(recipe, live.state, self.device)
        else:
            digest = load_into_model(self.plan(recipe), live.model, self.device)
        live.holds = recipe.sha256()
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
        source = self._parents.sources[name]
        self.settle()
        live = self._live
        live.holds = None
        digest = write_into_state(((tensor, source.get(tensor)) for tensor in source.tensors), live.state)
        live.holds = f"parent:{name}"
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
