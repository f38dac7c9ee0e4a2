"""What the user reads at the end of a search: parents beside the child, and where everything is."""

from __future__ import annotations

import os
from pathlib import Path

from rich.console import Console
from rich.table import Table

from flows.summary import SearchSummary
from flows.tracking import ui_command
from tasks.held_out import Interval


def _headers(summary: SearchSummary) -> dict[str, str]:
    """Task -> its column header: the task, its metric and the direction lm-eval gives it (↑ higher is
    better, ↓ lower)."""
    headers = {}
    for objective in [*summary.objectives, *(summary.guard.objectives if summary.guard else [])]:
        arrow = "↑" if objective["higher_is_better"] else "↓"
        weight = f" ×{objective['weight']:g}" if objective.get("weight", 1.0) != 1.0 else ""
        headers[objective["task"]] = f"{objective['task']}\n{objective['metric']} {arrow}{weight}"
    return headers


def scores_table(summary: SearchSummary) -> Table:
    guard = summary.guard_tasks
    best = summary.best
    tasks = [task for task in best.scores if task not in guard]
    headers = _headers(summary)
    table = Table(title=f"{summary.search}: parents vs evolved child ({summary.metric})")
    table.add_column("model")
    for task in [*tasks, *guard]:
        table.add_column(headers.get(task, task) + (" (guard)" if task in guard else ""), justify="right")
    table.add_column(summary.fitness_label, justify="right", style="bold")
    if guard:
        table.add_column("retention", justify="right")
    rows = [(name, scores, summary.parent_fitness[name], None) for name, scores in summary.parents.items()]
    rows.append((f"child {best.candidate_id}", best.scores, best.fitness, best.retention))
    best_parent = max(summary.parent_fitness.values())
    reference = summary.guard.reference if summary.guard else None
    for index, (name, scores, fitness, retention) in enumerate(rows):
        is_child = index == len(rows) - 1
        cells = [f"{scores[t]:.3f}" for t in [*tasks, *guard]]
        cells.append(f"{fitness:.3f}" + (f" ({fitness - best_parent:+.3f})" if is_child else ""))
        if guard:
            cells.append(f"{retention:+.3f}" if retention is not None else ("reference" if name == reference else ""))
        table.add_row(f"[bold green]{name}[/]" if is_child else name, *cells)
    return table


def leaderboard_table(summary: SearchSummary) -> Table:
    leaders = summary.leaderboard
    tasks = list(leaders[0].scores) if leaders else []
    headers = _headers(summary)
    guarded = summary.guard is not None
    table = Table(title=f"leaderboard ({summary.algorithm}, best {len(leaders)} candidates)")
    table.add_column("#", justify="right")
    table.add_column("candidate")
    for task in tasks:
        table.add_column(headers.get(task, task), justify="right")
    table.add_column("fitness", justify="right", style="bold")
    if guarded:
        table.add_column("retention", justify="right")
    for rank, leader in enumerate(leaders, start=1):
        cells = [*(f"{leader.scores[t]:.3f}" for t in tasks), f"{leader.fitness:.3f}"]
        if guarded:
            mark = "" if leader.feasible else " [red]infeasible[/]"
            cells.append((f"{leader.retention:+.3f}" if leader.retention is not None else "") + mark)
        table.add_row(str(rank), leader.candidate_id, *cells)
    return table


def held_out_table(summary: SearchSummary) -> Table:
    """Test-split scores with their bootstrap intervals: the numbers to believe."""
    held_out = summary.held_out
    assert held_out is not None
    tasks = held_out.tasks
    confidence = round(100 * held_out.confidence)
    table = Table(title=f"held-out test split: score [{confidence} % bootstrap interval]")
    table.add_column("model")
    for task in tasks:
        arrow = " ↑" if held_out.higher_is_better[task] else " ↓"
        table.add_column(f"{task}\n{held_out.metrics[task]}{arrow}", justify="right")
    table.add_column(summary.fitness_label, justify="right", style="bold")

    def cell(interval: dict[str, float]) -> str:
        return str(Interval(**interval))

    for name, scores in held_out.models.items():
        label = f"[bold green]{name}[/]" if name.startswith("child ") else name
        table.add_row(label, *(cell(scores["tasks"][t]) for t in tasks), cell(scores["mean"]))
    return table


def print_search_report(summary: SearchSummary, console: Console | None = None) -> None:
    console = console or Console()
    if summary.leaderboard:
        console.print(leaderboard_table(summary))
    console.print(scores_table(summary))
    if summary.held_out:
        console.print(held_out_table(summary))
    out = Path(summary.best.model_dir).parent
    pictures = [name for name in ("fitness.png", "pareto.png") if (out / name).is_file()]
    lines = [
        f"evaluations: {summary.evaluations} (failed: {summary.failed}), stopped by: {summary.stop_reason}",
        f"winner model directory: {summary.best.model_dir}",
        f"summary: {out / 'summary.json'}"
        + (f"; plots: {', '.join(str(out / p) for p in pictures)}" if pictures else ""),
        f"MLflow: run {summary.mlflow_run_id} in {summary.mlflow_tracking_uri}",
        f"  open it with: {ui_command(summary.mlflow_tracking_uri)}",
        f"Prefect: flow run {summary.prefect_flow_run_name} ({summary.prefect_flow_run_id})",
    ]
    runner = summary.runner
    if runner.get("name") == "dask":
        counts = ", ".join(f"{name} {load['candidates']}" for name, load in runner.get("workers", {}).items())
        idle = runner.get("idle_share")
        lines.insert(
            1,
            f"runner: dask; candidates per worker: {counts}"
            + (f"; workers idle {100 * idle:.1f} % of the loop" if idle is not None else ""),
        )
    api = os.environ.get("PREFECT_API_URL")
    if api:
        lines.append(f"  in the Prefect UI: {api.removesuffix('/api')}/runs/flow-run/{summary.prefect_flow_run_id}")
    else:
        lines.append("  (embedded Prefect; `make services` starts a server with a UI, then set PREFECT_API_URL)")
    for line in lines:
        console.print(line, soft_wrap=True, highlight=False)
