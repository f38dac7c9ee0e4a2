"""Where a search scores its candidates: the `runner:` settings, the CLI's flags over them, and the path
map a worker on another machine reads the parents through. The runner never changes the search, so it is
not part of the identity a resume checks."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer

from flows.cli import _runner_overrides
from flows.search_state import config_identity
from genetics.search_config import RunnerSettings, load_search_config
from tasks.dask_worker import mapped_path

DEMO = Path(__file__).resolve().parents[2] / "configs" / "searches" / "demo.yaml"


def test_local_is_the_default_and_a_dask_address_or_worker_count_implies_dask() -> None:
    assert RunnerSettings().name == "local"
    assert _runner_overrides(None, None, None, None, None) is None
    assert _runner_overrides(None, "tcp://127.0.0.1:8786", None, None, None) == {
        "name": "dask",
        "address": "tcp://127.0.0.1:8786",
    }
    assert _runner_overrides(None, None, 4, 1, 1) == {
        "name": "dask",
        "workers": 4,
        "threads_per_worker": 1,
        "gpus_per_worker": 1,
    }
    assert _runner_overrides("local", None, None, None, None) == {"name": "local"}
    with pytest.raises(typer.Exit):
        _runner_overrides("ray", None, None, None, None)


def test_the_runner_is_not_part_of_the_search_identity() -> None:
    config = load_search_config(DEMO)
    on_dask = config.model_copy(update={"runner": RunnerSettings(name="dask", workers=8)})
    assert config_identity(on_dask) == config_identity(config)
    assert config_identity(config.model_copy(update={"seed": 1})) != config_identity(config)


def test_a_worker_maps_the_flows_paths_by_prefix() -> None:
    mapping = "/data/models=/mnt/share/models;/home/me/zoo=/zoo"
    assert mapped_path("/data/models/base", mapping) == Path("/mnt/share/models/base")
    assert mapped_path("/home/me/zoo/add", mapping) == Path("/zoo/add")
    assert mapped_path("/data/models", mapping) == Path("/mnt/share/models")
    assert mapped_path("/data/models-old/base", mapping) == Path("/data/models-old/base")  # a prefix of a name only
    assert mapped_path("/elsewhere/x", mapping) == Path("/elsewhere/x")
    assert mapped_path("/elsewhere/x", "") == Path("/elsewhere/x")
