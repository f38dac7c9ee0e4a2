"""The one line an unknown lm-eval task name gets: the closest known names for a misspelling, none for a
name that resembles nothing, and every known name."""

from __future__ import annotations

from pathlib import Path

from tasks.task_sources import unknown_tasks_message

KNOWN = ["evomerge_add", "evomerge_add_test", "evomerge_sort", "evomerge_sort_test", "gsm8k", "gsm8k_cot"]


def test_a_misspelt_name_gets_the_closest_known_names() -> None:
    message = unknown_tasks_message(["gsm8kk", "evomerge_add_tset"], KNOWN, Path("tasks"))
    assert message.startswith("unknown lm-eval tasks ['gsm8kk', 'evomerge_add_tset'] in tasks (")
    assert "gsm8kk: did you mean gsm8k?;" in message
    assert "evomerge_add_tset: did you mean evomerge_add_test or evomerge_add?" in message


def test_a_name_like_nothing_known_says_so_and_lists_every_known_name() -> None:
    message = unknown_tasks_message(["hellaswag"], reversed(KNOWN), Path("tasks"))
    assert "(hellaswag: no close name)" in message
    assert message.endswith("; known: " + ", ".join(sorted(KNOWN)))
    assert "\n" not in message
