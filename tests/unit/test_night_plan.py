"""What a scheduled night does: the date in the schedule's time zone, a date seed and its own directory for
a new search each night, the same directory with a raised budget to continue one."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from flows.nightly import night_date, plan_night
from tasks.errors import EvomergeError

LATE_EVENING_UTC = datetime(2026, 11, 23, 23, 30, tzinfo=UTC)


def test_the_night_belongs_to_the_date_of_the_schedules_time_zone() -> None:
    assert night_date(LATE_EVENING_UTC, "UTC") == "2026-11-23"
    assert night_date(LATE_EVENING_UTC, "Asia/Tokyo") == "2026-11-24"  # 08:30 on the 24th in Tokyo
    assert night_date(LATE_EVENING_UTC, "America/Los_Angeles") == "2026-11-23"
    with pytest.raises(EvomergeError, match="unknown time zone 'Mars/Olympus'"):
        night_date(LATE_EVENING_UTC, "Mars/Olympus")


def test_a_new_search_per_night_gets_a_date_seed_and_its_own_directory() -> None:
    night = plan_night("new", LATE_EVENING_UTC, "Asia/Tokyo", Path("runs/demo"), 500, 48)
    assert night.output_dir == Path("runs/demo/2026-11-24")
    assert night.seed == 20261124
    assert night.max_evaluations == 48


def test_continuing_keeps_the_directory_and_seed_and_adds_the_nights_budget() -> None:
    night = plan_night("continue", LATE_EVENING_UTC, "UTC", Path("runs/demo"), 96, 48)
    assert (night.output_dir, night.seed, night.max_evaluations) == (Path("runs/demo"), None, 144)
    assert plan_night("continue", LATE_EVENING_UTC, "UTC", Path("runs/demo"), 96, None).max_evaluations is None
    with pytest.raises(EvomergeError, match="nightly mode 'weekly'"):
        plan_night("weekly", LATE_EVENING_UTC, "UTC", Path("runs/demo"), 0, None)  # type: ignore[arg-type]
