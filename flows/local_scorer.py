"""The local runner: this process merges and scores the batch, one candidate at a time, through the merge
and evaluate Prefect tasks, on the workbench's live model.

While a candidate is evaluated, the workbench's worker process merges the next one of the batch ahead
(tasks/workbench.py); the batch is already cut to the budget and holds no scored key, so the next one is
always the one that will be merged next.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from prefect.utilities.annotations import quote
from rich.console import Console

from flows import stages
from genetics.candidate import Candidate, Outcome, content_key
from tasks.errors import EvomergeError, StageFailure
from tasks.evaluate import Evaluator
from tasks.merge.recipe import Recipe
from tasks.workbench import Workbench


@dataclass
class LocalScorer:
    workbench: Workbench
    evaluator: Evaluator
    parent_hashes: dict[str, str]
    console: Console

    def start(self, batch: Sequence[Candidate]) -> None:
        if batch and self.workbench.merging_ahead:
            self.workbench.merge_ahead(_recipe(batch[0]))

    def score(self, batch: Sequence[Candidate]) -> Iterator[Outcome]:
        try:
            for index, candidate in enumerate(batch):
                following = batch[index + 1] if index + 1 < len(batch) else None
                yield self.score_one(candidate, following)
        finally:
            self.workbench.settle()

    def score_parent(self, name: str) -> Outcome:
        """A parent's own weights, scored as a candidate is (a failure here is the search's)."""
        started = time.perf_counter()
        digest = stages.merge(self.workbench, None, name, parent=name)
        scores = stages.evaluate(self.workbench, self.evaluator, name)
        return Outcome(scores=scores, tensors_sha256=digest, seconds=time.perf_counter() - started)

    def busy_line(self) -> str:
        return ""

    def report(self) -> dict[str, Any]:
        return {"name": "local"}

    def score_one(self, candidate: Candidate, following: Candidate | None = None) -> Outcome:
        """Merge and score one candidate; its failure is its outcome, not raised (except a `StageFailure`,
        which is the run's: it fails the flow run for a retry to redo). Once it is merged, `following`
        starts merging ahead, to run while this one is scored."""
        started = time.perf_counter()
        recipe = _recipe(candidate)
        label = candidate.candidate_id
        # quoted: Prefect would otherwise walk the workbench, the evaluator (lm-eval's tasks and their
        # documents) and the recipe looking for futures, on every call
        workbench, evaluator, quoted = quote(self.workbench), quote(self.evaluator), quote(recipe)
        outcome = Outcome()
        try:
            outcome.tensors_sha256 = stages.merge(workbench, quoted, label, key=content_key(recipe, self.parent_hashes))
        except StageFailure:
            raise
        except Exception as error:  # noqa: BLE001 - any candidate failure is recorded and the search goes on
            self._fail(outcome, label, error)
        if following is not None and self.workbench.merging_ahead:
            self.workbench.merge_ahead(_recipe(following))
        if outcome.status == "ok":
            try:
                outcome.scores = stages.evaluate(
                    workbench, evaluator, label, quoted, key=candidate.key, tensors_sha256=outcome.tensors_sha256
                )
            except StageFailure:
                raise
            except Exception as error:  # noqa: BLE001
                self._fail(outcome, label, error)
        outcome.seconds = time.perf_counter() - started
        return outcome

    def _fail(self, outcome: Outcome, label: str, error: Exception) -> None:
        outcome.status = "failed"
        outcome.error = f"{type(error).__name__}: {error}"
        self.console.print(f"[red]candidate {label} failed:[/] {outcome.error}")
        if not isinstance(error, EvomergeError):
            self.console.print(traceback.format_exc(), style="dim")


def _recipe(candidate: Candidate) -> Recipe:
    assert candidate.recipe is not None, "the loop decodes a candidate before it is scored"
    return candidate.recipe
