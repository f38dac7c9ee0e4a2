"""The search's pictures: fitness per generation, and for several tasks the Pareto front.

Drawn with matplotlib's file-only backend (no display is needed, or wanted, on a server at 2 a.m.).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from genetics.loop import GenerationStats  # noqa: E402


def plot_fitness(history: Sequence[GenerationStats], path: Path, parent_best: float | None = None) -> Path:
    """Best fitness so far and the generation's mean fitness, per generation."""
    figure, axes = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    generations = [stats.generation for stats in history]
    axes.plot(generations, [s.best_fitness for s in history], marker="o", label="best so far")
    axes.plot(generations, [s.mean_fitness for s in history], marker=".", linestyle="--", label="generation mean")
    if parent_best is not None:
        axes.axhline(parent_best, color="grey", linewidth=1, linestyle=":", label="best parent")
    axes.set_xlabel("generation")
    axes.set_ylabel("fitness")
    return _save(figure, axes, path, legend="lower right")


def plot_pareto(
    tasks: Sequence[str],
    evaluated: Sequence[tuple[float, ...]],
    front: Sequence[tuple[float, ...]],
    parents: dict[str, tuple[float, ...]],
    path: Path,
) -> Path:
    """Every candidate's scores on the first two tasks, the Pareto front over them, and the parents."""
    figure, axes = plt.subplots(figsize=(5.6, 5.0), dpi=120)
    axes.scatter([s[0] for s in evaluated], [s[1] for s in evaluated], s=12, color="lightgrey", label="candidates")
    ordered = sorted(front)
    axes.plot([s[0] for s in ordered], [s[1] for s in ordered], marker="o", color="tab:red", label="Pareto front")
    for name, scores in parents.items():
        axes.scatter([scores[0]], [scores[1]], marker="s", color="tab:blue")
        axes.annotate(name, (scores[0], scores[1]), textcoords="offset points", xytext=(4, 4), fontsize=8)
    axes.set_xlabel(tasks[0])
    axes.set_ylabel(tasks[1])
    return _save(figure, axes, path, legend="lower left")


def _save(figure: Figure, axes: Axes, path: Path, *, legend: str) -> Path:
    axes.grid(alpha=0.3)
    axes.legend(loc=legend)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path
