"""One exception hierarchy, so the CLI can tell a user's mistake (exit 2, one readable line) from a bug
(a traceback)."""

from __future__ import annotations


class EvomergeError(Exception):
    """Anything the user can fix: a bad config, an incompatible model, a failed evaluation."""


class RecipeError(EvomergeError):
    """A merge recipe or search config that is malformed or out of range; the message names file and key."""


class ModelMismatchError(EvomergeError):
    """Parent models that cannot be merged together: missing tensors, shapes, architectures, bad files."""


class EvaluationError(EvomergeError):
    """A candidate could not be scored (lm-eval failure, non-finite logits, missing task)."""


class StageFailure(EvomergeError):
    """A failure of the machine or the run, not of the candidate (an injected crash, a lost device): it fails
    the stage and the flow run, so that a retry redoes the work, instead of recording the candidate as bad."""


class WorkerSetupError(EvomergeError):
    """A Dask worker cannot score for this search (a parent it cannot read, or one that differs): the
    search's failure, not a candidate's."""


class CandidateAbandoned(EvomergeError):
    """The loop stopped (a budget ran out) before this candidate's result was taken: nothing to retry."""
