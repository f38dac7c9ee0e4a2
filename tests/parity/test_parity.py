"""evomerge against the real mergekit 0.1.5: every tensor of every (layout, recipe) case.

For each parent layout (tests/parity/models.py) and each recipe template (tests/parity/recipes.py) whose
method evomerge registers, the same YAML is merged by `mergekit-yaml` (in .venv-mergekit) and by
`evomerge merge`; the outputs must hold the same tensor names, shapes and dtypes, bit-identical values
(deterministic methods; for the magnitude-pruned ones, TIES and breadcrumbs, everywhere but at entries tied at
a cut-off magnitude, see recipes.TIED_CUTOFF_METHODS), the same config.json essentials, and the
tokenizer/generation files mergekit copies. Both sides run once per session (conftest.parity_run); the tests
only read their outputs.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from harness import (
    MERGEKIT_VENV,
    ROOT,
    ParityRun,
    all_case_ids,
    case_id,
    compare_aux_files,
    compare_configs,
    compare_outputs,
    config_full_diff,
    evomerge_methods,
    read_tensors,
    subprocess_env,
    tie_summary,
)
from models import LAYOUTS
from recipes import METHOD_TEMPLATES, RECIPES, TIED_CUTOFF_METHODS, method_of

pytestmark = pytest.mark.parity

CASES = all_case_ids()
IDS = [case_id(layout, recipe) for layout, recipe in CASES]
MAX_LISTED = 25


def _case(run: ParityRun, layout: str, recipe_id: str, *, need_mergekit: bool = True):
    key = case_id(layout, recipe_id)
    if method_of(recipe_id) not in run.implemented:
        pytest.skip(f"evomerge does not implement merge_method {method_of(recipe_id)!r} yet")
    case = run.cases[key]
    mk_ok, ev_ok = case.mk.get("ok"), case.ev.get("ok")
    if case.spec.refused_with is not None:
        assert not mk_ok and not ev_ok, (
            f"{key}: both tools must refuse this recipe (mergekit ok={mk_ok}, evomerge ok={ev_ok})"
        )
        assert case.spec.refused_with in str(case.ev.get("error")), case.ev.get("error")
        return None
    if need_mergekit and not mk_ok and ev_ok and layout in case.spec.mergekit_broken:
        pytest.xfail(f"mergekit itself fails here: {case.spec.mergekit_broken[layout]}")
    if not need_mergekit and ev_ok:
        return case
    if not mk_ok or not ev_ok:
        pytest.fail(
            f"{key}: mergekit {'ok' if mk_ok else 'FAILED'}, evomerge {'ok' if ev_ok else 'FAILED'}\n"
            f"  mergekit: {case.mk.get('error')}\n  evomerge: {case.ev.get('error')}\n  recipe: {case.recipe_path}",
            pytrace=False,
        )
    return case


@pytest.mark.parametrize(("layout", "recipe_id"), CASES, ids=IDS)
def test_tensors_match(parity_run: ParityRun, layout: str, recipe_id: str) -> None:
    case = _case(parity_run, layout, recipe_id)
    if case is None:  # a refused recipe: _case asserted both refusals
        return
    diffs = compare_outputs(case)
    if diffs:
        listed = "\n".join(f"  {d.name}: {d.problem}" for d in diffs[:MAX_LISTED])
        more = f"\n  ... and {len(diffs) - MAX_LISTED} more" if len(diffs) > MAX_LISTED else ""
        kind = "bit-identical" if case.spec.exact else "structurally equal (randomised method)"
        pytest.fail(
            f"{case.id}: {len(diffs)} tensor(s) not {kind} to mergekit's\n{listed}{more}\n"
            f"  recipe: {case.recipe_path}\n  mergekit: {case.mk_out}\n  evomerge: {case.ev_out}",
            pytrace=False,
        )


def test_ties_at_cut_offs_are_the_only_mismatches(parity_run: ParityRun, capsys: pytest.CaptureFixture[str]) -> None:
    """TIES/breadcrumbs: per tensor, mismatches only at tied entries and no more of them than tied entries
    (compare_tied); prints how many mismatches the tie rule causes, case by case."""
    cases = [
        case
        for case in parity_run.cases.values()
        if case.method in TIED_CUTOFF_METHODS and case.spec.exact and case.mk.get("ok") and case.ev.get("ok")
    ]
    if not cases:
        pytest.skip("no magnitude-pruned case ran")
    lines, failures = [], []
    for case in cases:
        diffs = compare_outputs(case)
        failures += [f"{case.id}: {d.name}: {d.problem}" for d in diffs]
        lines.append(f"  {case.id}: {tie_summary(case)}")
        failures += [f"{case.id}: {name}: {m} > {t}" for name, (m, t) in case.tie_counts.items() if m > t]
    worst = max((m for case in cases for m, _ in case.tie_counts.values()), default=0)
    with capsys.disabled():
        print(f"\nties at magnitude cut-offs (mismatching / tied entries; max {worst} in one tensor):")
        print("\n".join(lines))
    assert not failures, "\n".join(failures[:MAX_LISTED])


@pytest.mark.parametrize(("layout", "recipe_id"), CASES, ids=IDS)
def test_config_matches(parity_run: ParityRun, layout: str, recipe_id: str) -> None:
    case = _case(parity_run, layout, recipe_id)
    if case is None:  # a refused recipe: _case asserted both refusals
        return
    problems = compare_configs(case)
    if problems:
        full = "\n".join(f"    {line}" for line in config_full_diff(case))
        pytest.fail(
            f"{case.id}: config.json differs\n"
            + "\n".join(f"  {p}" for p in problems)
            + f"\n  all differing keys (mergekit vs evomerge):\n{full}\n  recipe: {case.recipe_path}",
            pytrace=False,
        )


@pytest.mark.parametrize(("layout", "recipe_id"), CASES, ids=IDS)
def test_output_files_match(parity_run: ParityRun, layout: str, recipe_id: str) -> None:
    """Weight file layout and the files mergekit copies (tokenizer, generation config), byte for byte."""
    case = _case(parity_run, layout, recipe_id)
    if case is None:  # a refused recipe: _case asserted both refusals
        return
    problems, _extras = compare_aux_files(case)
    if problems:
        pytest.fail(f"{case.id}: output files differ\n" + "\n".join(f"  {p}" for p in problems), pytrace=False)


# Recipes whose outputs are also loaded as full transformers models (the rest: config only, to stay fast).
FULL_LOAD = ("linear/grad_filters", "slerp/slices_stack", "passthrough/frankenmerge", "ties/dtype_bf16")


@pytest.mark.parametrize(("layout", "recipe_id"), CASES, ids=IDS)
def test_evomerge_output_loads(parity_run: ParityRun, layout: str, recipe_id: str) -> None:
    """Whatever mergekit does, evomerge's output must be a model directory transformers accepts."""
    from transformers import AutoConfig, AutoModelForCausalLM

    case = _case(parity_run, layout, recipe_id, need_mergekit=False)

    if case is None:  # a refused recipe: _case asserted both refusals
        return
    try:
        AutoConfig.from_pretrained(case.ev_out)
        if recipe_id in FULL_LOAD:
            AutoModelForCausalLM.from_pretrained(case.ev_out)
    except Exception as error:  # noqa: BLE001 - any load failure is the finding
        pytest.fail(
            f"{case.id}: transformers cannot load evomerge's output {case.ev_out}: {type(error).__name__}: {error}",
            pytrace=False,
        )


def test_every_method_has_a_template() -> None:
    missing = sorted(evomerge_methods() - set(METHOD_TEMPLATES))
    assert not missing, f"evomerge registers {missing} but tests/parity/recipes.py has no recipe template for them"


def test_recipe_ids_name_their_method() -> None:
    from recipes import Ctx

    ctx = Ctx("llama", "/base", "/a", "/b", "/c", layers=4)
    for recipe_id, spec in RECIPES.items():
        assert spec.method(ctx) == method_of(recipe_id), recipe_id


CLI_CASE = ("llama", "ties/density_grad")


def test_drivers_match_the_real_clis(parity_run: ParityRun, tmp_path) -> None:
    """The batch drivers must give exactly what `mergekit-yaml` and `evomerge merge` give as processes."""
    layout, recipe_id = CLI_CASE
    case = _case(parity_run, layout, recipe_id)
    if case is None:  # a refused recipe: _case asserted both refusals
        return
    env = subprocess_env()
    mk_out, ev_out = tmp_path / "mk", tmp_path / "ev"
    flags = [] if LAYOUTS[layout].tokenizer else ["--no-copy-tokenizer"]
    subprocess.run(
        [str(MERGEKIT_VENV / "bin" / "mergekit-yaml"), str(case.recipe_path), str(mk_out), "--quiet", *flags],
        check=True,
        env=env,
        cwd=ROOT,
        capture_output=True,
        timeout=600,
    )
    evomerge = ROOT / ".venv" / "bin" / "evomerge"
    command = [str(evomerge)] if evomerge.exists() else [sys.executable, "-m", "flows.cli"]
    subprocess.run(
        [*command, "merge", str(case.recipe_path), str(ev_out), "--quiet"],
        check=True,
        env=env,
        cwd=ROOT,
        capture_output=True,
        timeout=600,
    )
    for cli_dir, driver_dir, side in ((mk_out, case.mk_out, "mergekit"), (ev_out, case.ev_out, "evomerge")):
        cli, driver = read_tensors(cli_dir), read_tensors(driver_dir)
        assert sorted(cli) == sorted(driver), side
        unequal = [
            name for name in cli if not (cli[name].dtype == driver[name].dtype and cli[name].equal(driver[name]))
        ]
        assert not unequal, f"{side}: the batch driver and the CLI disagree on {unequal}"
        assert json.loads((cli_dir / "config.json").read_text()) == json.loads((driver_dir / "config.json").read_text())
    shutil.rmtree(tmp_path, ignore_errors=True)
