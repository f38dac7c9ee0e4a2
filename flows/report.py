"""What the user reads at the end of a search: parents beside the child, and where everything is."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from flows.tracking import ui_command


def scores_table(summary: dict[str, Any]) -> Table:
    tasks = list(summary["best"]["scores"])
    table = Table(title=f"{summary['search']}: parents vs evolved child ({summary['metric']})")
    table.add_column("model")
    for task in tasks:
        table.add_column(task, justify="right")
    table.add_column("mean", justify="right", style="bold")
    rows = [(name, scores) for name, scores in summary["parents"].items()]
    rows.append((f"child {summary['best']['candidate_id']}", summary["best"]["scores"]))
    best_parent_mean = max(sum(s[t] for t in tasks) / len(tasks) for _, s in rows[:-1])
    for index, (name, scores) in enumerate(rows):
        mean = sum(scores[t] for t in tasks) / len(tasks)
        is_child = index == len(rows) - 1
        table.add_row(
            f"[bold green]{name}[/]" if is_child else name,
            *(f"{scores[t]:.3f}" for t in tasks),
            f"{mean:.3f}" + (f" ({mean - best_parent_mean:+.3f})" if is_child else ""),
        )
    return table


def leaderboard_table(summary: dict[str, Any]) -> Table:
    leaders = summary.get("leaderboard") or []
    tasks = list(leaders[0]["scores"]) if leaders else []
    table = Table(title=f"leaderboard ({summary.get('algorithm', 'ga')}, best {len(leaders)} candidates)")
    table.add_column("#", justify="right")
    table.add_column("candidate")
    for task in tasks:
        table.add_column(task, justify="right")
    table.add_column("fitness", justify="right", style="bold")
    for rank, leader in enumerate(leaders, start=1):
        table.add_row(
            str(rank),
            leader["candidate_id"],
            *(f"{leader['scores'][t]:.3f}" for t in tasks),
            f"{leader['fitness']:.3f}",
        )
    return table


def held_out_table(summary: dict[str, Any]) -> Table:
    """Test-split scores with their bootstrap intervals: the numbers to believe."""
    held_out = summary["held_out"]
    tasks = held_out["tasks"]
    confidence = round(100 * held_out["confidence"])
    table = Table(title=f"held-out test split: score [{confidence} % bootstrap interval]")
    table.add_column("model")
    for task in tasks:
        table.add_column(task, justify="right")
    table.add_column("mean", justify="right", style="bold")

    def cell(interval: dict[str, float]) -> str:
        return f"{interval['value']:.3f} [{interval['low']:.3f}, {interval['high']:.3f}]"

    for name, scores in held_out["models"].items():
        label = f"[bold green]{name}[/]" if name.startswith("child ") else name
        table.add_row(label, *(cell(scores["tasks"][t]) for t in tasks), cell(scores["mean"]))
    return table


def print_search_report(summary: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    if summary.get("leaderboard"):
        console.print(leaderboard_table(summary))
    console.print(scores_table(summary))
    if summary.get("held_out"):
        console.print(held_out_table(summary))
    out = Path(summary["best"]["model_dir"]).parent
    pictures = [name for name in ("fitness.png", "pareto.png") if (out / name).is_file()]
    lines = [
        f"evaluations: {summary['evaluations']} (failed: {summary['failed']}), "
        f"stopped by: {summary.get('stop_reason', 'generations')}",
        f"winner model directory: {summary['best']['model_dir']}",
        f"summary: {out / 'summary.json'}"
        + (f"; plots: {', '.join(str(out / p) for p in pictures)}" if pictures else ""),
        f"MLflow: run {summary['mlflow_run_id']} in {summary['mlflow_tracking_uri']}",
        f"  open it with: {ui_command(summary['mlflow_tracking_uri'])}",
        f"Prefect: flow run {summary.get('prefect_flow_run_name', '')} ({summary['prefect_flow_run_id']})",
    ]
    api = os.environ.get("PREFECT_API_URL")
    if api:
        lines.append(f"  in the Prefect UI: {api.removesuffix('/api')}/runs/flow-run/{summary['prefect_flow_run_id']}")
    else:
        lines.append("  (embedded Prefect; `make services` starts a server with a UI, then set PREFECT_API_URL)")
    for line in lines:
        console.print(line, soft_wrap=True, highlight=False)
