"""Progress reports of a zoo build, as plain events, so any front end (CLI, Prefect, tests) can show them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from rich.progress import Progress

Stage = Literal["training", "trained", "evaluating", "evaluated", "done"]


@dataclass(frozen=True)
class BuildProgress:
    """One step of a build; `completed` of `total` units (one per model trained, one per model scored)."""

    stage: Stage
    model: str | None
    completed: int
    total: int
    elapsed_seconds: float
    message: str


ProgressCallback = Callable[[BuildProgress], None]


def rich_progress_callback(progress: Progress, description: str = "zoo") -> ProgressCallback:
    """A callback that drives one bar of a `rich.progress.Progress` the caller has started."""
    task_id = progress.add_task(description, total=None)

    def report(event: BuildProgress) -> None:
        progress.update(
            task_id,
            completed=event.completed,
            total=event.total,
            description=f"{description}: {event.message}",
        )

    return report
