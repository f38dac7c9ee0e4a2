"""Task names from three sources: the repository's folder, the user's folders, lm-eval's registry (read only
for names no local folder defines). Groups are scored the way lm-eval aggregates them."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from tasks.errors import EvaluationError
from tasks.evaluate import DEFAULT_INCLUDE_PATH, EvaluationConfig, Evaluator
from tasks.task_sources import TaskSources, registry_names, registry_root, reported_metrics

pytestmark = pytest.mark.integration

GROUP = """group: my_skills
task: [evomerge_add, evomerge_sort]
aggregate_metric_list:
  - metric: exact_match
    aggregation: mean
    weight_by_size: true
metadata:
  version: 1.0
"""


def test_local_names_never_read_the_registry_and_others_index_only_their_folder() -> None:
    registry_names.cache_clear()
    sources = TaskSources()
    local = sources.manager_for(["evomerge_add", "evomerge_add_choice"])
    assert registry_names.cache_info().currsize == 0  # no scan of lm-eval's 14,000 YAML files
    assert reported_metrics(local, "evomerge_add_choice") == {"acc", "acc_norm"}
    assert sources.registry_folders_for(["evomerge_add", "gsm8k"]) == [registry_root() / "gsm8k"]
    manager = sources.manager_for(["evomerge_add", "gsm8k", "arc_easy"])
    assert {"evomerge_add", "gsm8k", "arc_easy"} <= set(manager.task_index)
    assert len(manager.task_index) < 100  # a few folders, not the registry
    assert reported_metrics(manager, "gsm8k") == {"exact_match,strict-match", "exact_match,flexible-extract"}
    with pytest.raises(EvaluationError, match=r"gsm8kk: did you mean gsm8k"):
        sources.manager_for(["gsm8kk"])


def test_a_users_folder_overrides_and_adds_and_a_group_is_aggregated_as_lm_eval_does(
    zoo_dir: Path, tmp_path: Path
) -> None:
    (tmp_path / "my_skills.yaml").write_text(GROUP)
    config = EvaluationConfig(tasks=("my_skills",), extra_include_paths=(tmp_path,), limit=50)
    assert config.sources().local_folders == (DEFAULT_INCLUDE_PATH.resolve(), tmp_path.resolve())
    evaluator = Evaluator(config)
    assert evaluator.task_names == ("evomerge_add", "evomerge_sort")
    model = AutoModelForCausalLM.from_pretrained(zoo_dir / "add")
    scores = evaluator.evaluate(model, AutoTokenizer.from_pretrained(zoo_dir / "add"))
    add, sort = scores["evomerge_add"]["exact_match"], scores["evomerge_sort"]["exact_match"]
    assert add != sort
    assert scores["my_skills"]["exact_match"] == pytest.approx((add + sort) / 2)  # equal sizes: the plain mean
    assert evaluator.higher_is_better("my_skills", "exact_match")
    assert reported_metrics(config.sources().local_manager(), "my_skills") == {"exact_match"}
