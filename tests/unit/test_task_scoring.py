"""The evomerge_* tasks score each prompt with their own exact match (configs/lm_eval_tasks/scoring.py);
it must give what lm-eval's `exact_match` metric gives with the settings the tasks used before it."""

from __future__ import annotations

import importlib.util

import pytest
from lm_eval.api.metrics import exact_match_hf_evaluate

from tasks.evaluate import DEFAULT_INCLUDE_PATH


def load_scoring():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("evomerge_task_scoring", DEFAULT_INCLUDE_PATH / "scoring.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("generation", "answer"),
    [
        ("1234", "1234"),
        ("1234", "1235"),
        ("abc", "ABC"),  # case counts
        ("a,b", "ab"),  # punctuation counts
        ("12 ", "12"),  # so does whitespace
        ("", ""),
        ("", "0"),
        ("0123", "123"),
    ],
)
def test_exact_match_agrees_with_lm_evals_metric(generation: str, answer: str) -> None:
    ours = load_scoring().exact_match({"answer": answer}, [generation])["exact_match"]
    theirs = exact_match_hf_evaluate(
        predictions=[generation], references=[answer], ignore_case=False, ignore_punctuation=False
    )["exact_match"]
    assert ours == float(theirs) and isinstance(ours, float)
