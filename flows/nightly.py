"""What one night's run of a scheduled search does: continue the same search (same output directory, a
budget raised by the night's evaluations) or start a new one (its own directory and a seed derived from
the night's date, so every night explores differently and is still reproducible).

Pure: the search flow calls `plan_night` with the flow run's scheduled time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tasks.errors import EvomergeError

NightlyMode = Literal["continue", "new"]


@dataclass(frozen=True)
class Night:
    output_dir: Path
    seed: int | None
    """None keeps the config's seed."""
    max_evaluations: int | None
    """None keeps the config's budget."""


def night_date(scheduled: datetime, timezone: str) -> str:
    """The calendar date of a run scheduled at `scheduled`, in the schedule's time zone (a 02:00 run in
    Tokyo belongs to the Tokyo date, whatever the server's clock says)."""
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise EvomergeError(f"unknown time zone {timezone!r} (use an IANA name such as Europe/Paris)") from None
    return scheduled.astimezone(zone).date().isoformat()


def plan_night(
    mode: NightlyMode,
    scheduled: datetime,
    timezone: str,
    base_output_dir: Path,
    evaluated_so_far: int,
    evaluations_per_night: int | None,
) -> Night:
    if mode == "new":
        date = night_date(scheduled, timezone)
        return Night(base_output_dir / date, int(date.replace("-", "")), evaluations_per_night)
    if mode == "continue":
        budget = evaluated_so_far + evaluations_per_night if evaluations_per_night is not None else None
        return Night(base_output_dir, None, budget)
    raise EvomergeError(f"nightly mode {mode!r}: expected 'continue' or 'new'")
