"""A merge that cannot fit on the disk is refused before anything is merged, and leaves no output."""

from __future__ import annotations

import shutil
from collections import namedtuple
from pathlib import Path

import pytest

from tasks.errors import EvomergeError
from tasks.merge.plan import plan_merge
from tasks.merge.recipe import Recipe
from tasks.merge.writer import partial_dir, plan_shards, write_model

Usage = namedtuple("Usage", "total used free")


def test_full_disk_is_refused_before_merging(
    tiny_models: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recipe = Recipe.model_validate(
        {"merge_method": "linear", "models": [{"model": "a"}, {"model": "b"}], "parameters": {"weight": 0.5}}
    )
    plan = plan_merge(recipe, {name: tiny_models[name] for name in ("a", "b")})
    needed = sum(shard.size for shard in plan_shards(plan.jobs, 10**10, {}))
    assert needed > 10_000  # the tiny models' weights: far more than the 100 bytes free below
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(10**9, 10**9 - 100, 100))
    out = tmp_path / "child"
    with pytest.raises(EvomergeError, match=r"not enough disk space in .*: the merged model needs .* GB, 0\.00 GB"):
        write_model(plan, out)
    assert not out.exists() and not partial_dir(out).exists()
