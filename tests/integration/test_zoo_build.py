"""Zoo builds are deterministic, atomic and reused: checked on a shortened recipe (same code path, fewer
steps) so two real builds fit in the test budget."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tasks.errors import EvomergeError
from tasks.zoo import BuildProgress, ZooRecipe, build_zoo, ensure_zoo, read_manifest
from tasks.zoo.manifest import weight_file_hashes

pytestmark = pytest.mark.integration

SHORT = ZooRecipe().shortened(base_steps=30, expert_steps=15)
EXPERTS = ("add", "sort")


@pytest.fixture(scope="module")
def short_zoo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[BuildProgress]]:
    events: list[BuildProgress] = []
    out = tmp_path_factory.mktemp("short") / "zoo"
    build_zoo(out, seed=0, experts=EXPERTS, recipe=SHORT, progress=events.append)
    return out, events


def test_build_writes_model_dirs_and_manifest_atomically(short_zoo: tuple[Path, list[BuildProgress]]) -> None:
    out, _ = short_zoo
    assert sorted(path.name for path in out.iterdir()) == ["add", "base", "sort", "zoo.json"]
    assert not out.with_name("zoo.partial").exists()
    manifest = read_manifest(out)
    assert manifest is not None
    assert (manifest.seed, manifest.experts, manifest.recipe) == (0, EXPERTS, SHORT)
    raw = json.loads((out / "zoo.json").read_text())
    assert set(raw["models"]["add"]["accuracy"]) == {"add", "sort", "reverse"}
    assert (
        raw["models"]["base"]["weight_sha256"]["model.safetensors"]
        == weight_file_hashes(out / "base")["model.safetensors"]
    )


def test_progress_reports_every_model_trained_and_scored(short_zoo: tuple[Path, list[BuildProgress]]) -> None:
    _, events = short_zoo
    assert events[-1].stage == "done"
    assert events[-1].completed == events[-1].total == 6
    trained = [event.model for event in events if event.stage == "trained"]
    assert trained[0] == "base" and sorted(trained[1:]) == sorted(EXPERTS)
    assert [event.model for event in events if event.stage == "evaluated"] == ["base", *EXPERTS]
    assert [event.completed for event in events] == sorted(event.completed for event in events)


def test_same_seed_rebuilds_byte_identical_weights(short_zoo: tuple[Path, list[BuildProgress]], tmp_path: Path) -> None:
    """Also ensure_zoo's repair path: a corrupted weight file makes it rebuild, to the same bytes."""
    out, _ = short_zoo
    original = read_manifest(out)
    assert original is not None
    copy = tmp_path / "zoo"
    rebuilt = build_zoo(copy, seed=0, experts=EXPERTS, recipe=SHORT)
    assert rebuilt.weight_hashes() == original.weight_hashes()
    assert {name: entry.accuracy for name, entry in rebuilt.models.items()} == {
        name: entry.accuracy for name, entry in original.models.items()
    }

    started = time.perf_counter()
    reused = ensure_zoo(copy, seed=0, experts=EXPERTS, recipe=SHORT)
    assert time.perf_counter() - started < 5
    assert reused == rebuilt

    weights = copy / "sort" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\0")
    repaired = ensure_zoo(copy, seed=0, experts=EXPERTS, recipe=SHORT)
    assert repaired.build_seconds != rebuilt.build_seconds
    assert repaired.weight_hashes() == original.weight_hashes()
    assert weight_file_hashes(copy / "sort") == original.models["sort"].weight_sha256


def test_other_seed_gives_other_weights(short_zoo: tuple[Path, list[BuildProgress]], tmp_path: Path) -> None:
    out, _ = short_zoo
    original = read_manifest(out)
    assert original is not None
    other = build_zoo(tmp_path / "zoo", seed=1, experts=(), recipe=SHORT)
    assert list(other.models) == ["base"]
    assert other.models["base"].weight_sha256 != original.models["base"].weight_sha256


def test_invalid_expert_lists_are_rejected_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown expert"):
        build_zoo(tmp_path / "zoo", experts=("multiply",))
    with pytest.raises(ValueError, match="repeat"):
        build_zoo(tmp_path / "zoo", experts=("add", "add"))
    assert not any(tmp_path.iterdir())


def test_refuses_to_replace_a_folder_that_is_not_a_zoo(tmp_path: Path) -> None:
    precious = tmp_path / "notes"
    precious.mkdir()
    (precious / "todo.txt").write_text("keep me")
    with pytest.raises(EvomergeError, match="is not a zoo"):
        build_zoo(precious, experts=())
    assert (precious / "todo.txt").read_text() == "keep me"
    assert not (tmp_path / "notes.partial").exists()
