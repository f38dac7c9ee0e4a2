"""`evomerge merge` on multi-document recipes (mergekit-multi's format), as a user runs it: the output equals
merging the documents one by one by hand, wherever the intermediates live; `--plan` checks every document;
a mistake names the documents; a killed run leaves nothing that looks finished and reruns to the same model.
(Tensor-for-tensor agreement with mergekit-multi itself is in tests/parity, the `multi/` templates.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from cli_runner import run_merge

from tasks.merge.writer import model_dir_sha256, partial_dir

pytestmark = pytest.mark.integration
ROOT = Path(__file__).parents[2]


def documents(models: dict[str, Path], first: str = "first", second: str = "second") -> list[dict[str, object]]:
    base, a, b = (str(models[name]) for name in ("base", "a", "b"))
    return [
        {"name": first, "merge_method": "task_arithmetic", "base_model": base,
         "models": [{"model": a, "parameters": {"weight": 0.7}}, {"model": b, "parameters": {"weight": 0.5}}]},
        {"name": second, "merge_method": "slerp", "base_model": first, "models": [{"model": b}],
         "parameters": {"t": [0.3, 0.6]}},
        {"merge_method": "ties", "base_model": base,
         "models": [{"model": second, "parameters": {"weight": 1.0, "density": 0.6}},
                    {"model": first, "parameters": {"weight": 0.5, "density": 0.8}}]},
    ]  # fmt: skip


def write_documents(path: Path, docs: list[dict[str, object]]) -> Path:
    path.write_text("---\n".join(yaml.safe_dump(doc, sort_keys=False) for doc in docs))
    return path


def merged_by_hand(docs: list[dict[str, object]], work: Path) -> str:
    """Each document merged on its own with `evomerge merge`, the earlier results named by path."""
    done: dict[str, str] = {}
    for number, doc in enumerate(docs):
        text = yaml.safe_dump({k: v for k, v in doc.items() if k != "name"}, sort_keys=False)
        for name, path in done.items():
            text = text.replace(f": {name}\n", f": {path}\n")
        recipe = work / f"doc{number}.yaml"
        recipe.write_text(text)
        out = work / f"doc{number}"
        result = run_merge(str(recipe), str(out))
        assert result.returncode == 0, result.stderr
        done[str(doc.get("name", ""))] = str(out)
    return model_dir_sha256(out)


@pytest.mark.parametrize("placement", ["memory", "disk", "auto"])
def test_a_multi_document_recipe_equals_its_documents_merged_one_by_one(
    tiny_models: dict[str, Path], tmp_path: Path, placement: str
) -> None:
    docs = documents(tiny_models)
    recipe = write_documents(tmp_path / "multi.yaml", docs)
    out = tmp_path / "out"
    result = run_merge(str(recipe), str(out), "--intermediates", placement, "--sha256")
    assert result.returncode == 0, result.stderr
    assert f"sha256 {model_dir_sha256(out)}" in result.stdout
    assert model_dir_sha256(out) == merged_by_hand(docs, tmp_path)
    assert not partial_dir(out).exists() and not (out / ".intermediates").exists()
    # the output records every document: merging its recipe file again gives the same tensors
    again = tmp_path / "again"
    assert run_merge(str(out / "mergekit_config.yml"), str(again)).returncode == 0
    assert model_dir_sha256(again) == model_dir_sha256(out)
    assert yaml.safe_load_all((out / "mergekit_config.yml").read_text())


def test_document_flag_writes_an_intermediate_and_skips_what_it_does_not_need(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    docs = documents(tiny_models)
    recipe = write_documents(tmp_path / "multi.yaml", docs)
    out = tmp_path / "first"
    assert run_merge(str(recipe), str(out), "--document", "first").returncode == 0
    assert model_dir_sha256(out) == merged_by_hand(docs[:1], tmp_path)
    assert yaml.safe_load((out / "mergekit_config.yml").read_text())["name"] == "first"


def test_plan_checks_every_document_and_merges_nothing(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    recipe = write_documents(tmp_path / "multi.yaml", documents(tiny_models))
    result = run_merge(str(recipe), "--plan")
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if "compatible" in line]
    assert [line.split(": ", 2)[1] for line in lines] == [
        "document 1 ('first') (intermediate)",
        "document 2 ('second') (intermediate)",
        "document 3 (unnamed) -> OUT",
    ]
    assert "first: the result of an earlier document" in result.stdout
    assert not any(tmp_path.glob("out*"))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (  # a typo in a reference: neither a model nor a document
            lambda docs: docs[2]["models"][0].update(model="secnod"),
            "model 'secnod': no such directory, zoo name (zoo:NAME) or Hugging Face repo id (nor is it a document "
            "of {recipe}: first, second)",
        ),
        (  # a shape mistake in the last document is found before the first is merged
            lambda docs: docs[2]["models"][0]["parameters"].update(density=1.5),
            "{recipe}: document 3 (unnamed): models.0.parameters.density: 1.5 is out of range (0, 1]",
        ),
        (lambda docs: docs[1].update(base_model="second"), "document 2 ('second') uses its own name as a model"),
    ],
)
def test_a_mistake_in_any_document_stops_the_merge_before_it_starts(
    tiny_models: dict[str, Path], tmp_path: Path, change: object, message: str
) -> None:
    docs = documents(tiny_models)
    change(docs)  # type: ignore[operator]
    recipe = write_documents(tmp_path / "multi.yaml", docs)
    out = tmp_path / "out"
    result = run_merge(str(recipe), str(out))
    assert result.returncode == 2
    assert message.format(recipe=recipe) in " ".join(result.stderr.split())
    assert not out.exists()
    assert not any(partial_dir(out).glob("*.safetensors")), "a merge started"


@pytest.fixture(scope="module")
def medium_multi(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """Two documents over ~50M-parameter models (seconds each, long enough to be killed in either), and the
    hash of their output merged without interruption."""
    from tiny_models import make_tiny_llama

    root = tmp_path_factory.mktemp("medium-multi")
    models = {
        n: make_tiny_llama(root / n, s, layers=8, hidden=512, vocab=32000) for n, s in (("base", 0), ("a", 1), ("b", 2))
    }
    recipe = write_documents(root / "multi.yaml", documents(models)[:1] + [
        {"merge_method": "ties", "base_model": str(models["base"]),
         "models": [{"model": "first", "parameters": {"weight": 1.0, "density": 0.5}},
                    {"model": str(models["b"]), "parameters": {"weight": 0.5, "density": 0.5}}]}
    ])  # fmt: skip
    out = root / "uninterrupted"
    assert run_merge(str(recipe), str(out), "--intermediates", "disk").returncode == 0
    return recipe, model_dir_sha256(out)


def looks_finished(directory: Path) -> bool:
    return (directory / "config.json").exists() and any(directory.glob("*.safetensors"))


@pytest.mark.parametrize("moment", ["writing the intermediate", "writing the output"])
def test_a_killed_multi_document_merge_leaves_nothing_that_looks_finished(
    medium_multi: tuple[Path, str], tmp_path: Path, moment: str
) -> None:
    recipe, uninterrupted = medium_multi
    out = tmp_path / "out"
    work = partial_dir(out)
    command = [sys.executable, "-m", "flows.cli", "merge", str(recipe), str(out), "--quiet", "--force"]
    command += ["--intermediates", "disk", "--shard-bytes", "20000000"]
    process = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    intermediate = work / ".intermediates"
    watched, wanted = (intermediate, 40_000_000) if moment == "writing the intermediate" else (work, 20_000_000)

    def reached() -> bool:
        files = watched.rglob("*.safetensors") if watched is intermediate else watched.glob("*.safetensors")
        return watched.exists() and sum(path.stat().st_size for path in files) >= wanted

    deadline = time.monotonic() + 180
    while not reached() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert reached(), f"the merge never got to {moment}"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not out.exists()
    assert not looks_finished(work) or not (work / "README.md").exists()
    for directory in intermediate.glob("*"):  # an intermediate is whole under its name, or still `.partial`
        assert (
            directory.name.endswith(".partial") or (directory / "README.md").exists() or not looks_finished(directory)
        )
    rerun = subprocess.run(command, cwd=ROOT, capture_output=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert model_dir_sha256(out) == uninterrupted and not work.exists()
