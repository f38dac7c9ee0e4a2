"""The search's console."""

from __future__ import annotations

import sys

from rich.console import Console

console = Console(file=sys.stderr)
"""Bound to the stream stderr is now: lm-eval's calls swap `sys.stderr` for /dev/null process-wide (to hide
its bars), and the MLflow worker's reports (printed by a listener thread) must not vanish meanwhile."""
