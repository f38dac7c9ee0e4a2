"""The parity run: write every (layout, recipe) case, merge it with mergekit and with evomerge, compare.

Used by conftest.py (session fixtures) and runnable alone for a report without pytest:

    .venv/bin/python tests/parity/harness.py [WORKDIR] [--only SUBSTRING]...

Both sides run as one subprocess each (mergekit_driver.py in .venv-mergekit, evomerge_driver.py in the
main venv), one after the other, single-threaded (OMP_NUM_THREADS=1): CPU reductions can depend on the
thread count, and this keeps the suite light on a shared machine.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors import safe_open

PARITY_DIR = Path(__file__).resolve().parent
ROOT = PARITY_DIR.parents[1]
sys.path.insert(0, str(PARITY_DIR))

from models import LAYOUTS, build_all, source_sha256  # noqa: E402
from recipes import MULTI, RECIPES, TIED_CUTOFF_METHODS, RecipeSpec, ctx_for, method_of  # noqa: E402

MERGEKIT_VENV = Path(os.environ.get("EVOMERGE_MERGEKIT_VENV", ROOT / ".venv-mergekit"))
MERGEKIT_PYTHON = MERGEKIT_VENV / "bin" / "python"
DRIVER_TIMEOUT_S = int(os.environ.get("EVOMERGE_PARITY_TIMEOUT", "1200"))
# Files whose content is expected to differ (model card, recipe echo) or that are compared separately.
NOT_AUX = {"README.md", "mergekit_config.yml", "config.json", "model.safetensors.index.json"}


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        TOKENIZERS_PARALLELISM="false",
        # mergekit picks the config/tokenizer donor of a recipe without base_model from a set
        # (config.py::referenced_models), so its choice depends on the hash seed: pin it.
        PYTHONHASHSEED="0",
    )
    env.pop("PYTHONPATH", None)
    return env


@dataclass
class Case:
    layout: str
    recipe_id: str
    spec: RecipeSpec
    recipe_path: Path
    mk_out: Path
    ev_out: Path
    mk: dict[str, Any] = field(default_factory=dict)
    ev: dict[str, Any] = field(default_factory=dict)
    # magnitude-pruned methods: the tie oracle's result ({"ok", "error", "masks": path}), and per output
    # tensor (mismatching entries, tied entries) once compared
    ties: dict[str, Any] | None = None
    tie_counts: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return case_id(self.layout, self.recipe_id)

    @property
    def method(self) -> str:
        return method_of(self.recipe_id)


def case_id(layout: str, recipe_id: str) -> str:
    return f"{layout}:{recipe_id}"


def all_case_ids() -> list[tuple[str, str]]:
    return [
        (layout, recipe_id)
        for recipe_id, spec in RECIPES.items()
        for layout in LAYOUTS
        if spec.layouts is None or layout in spec.layouts
    ]


def evomerge_methods() -> set[str]:
    """Method names evomerge registers right now (importing its methods package fills the registry), and
    `multi`: multi-document recipes."""
    sys.path.insert(0, str(ROOT))
    from tasks.merge import methods  # noqa: F401
    from tasks.merge.registry import METHODS

    return {*METHODS, MULTI}


def _dump_recipe(documents: list[dict[str, Any]]) -> str:
    return "---\n".join(yaml.safe_dump(recipe, sort_keys=False, default_flow_style=None) for recipe in documents)


def _run_driver(python: Path, driver: str, jobs: list[dict[str, Any]], work: Path, side: str) -> dict[str, Any]:
    if not jobs:
        return {}
    jobs_path = work / f"{side}-jobs.json"
    results_path = work / f"{side}-results.json"
    jobs_path.write_text(json.dumps(jobs, indent=2))
    results_path.unlink(missing_ok=True)
    log = work / f"{side}-driver.log"
    with log.open("w") as handle:
        proc = subprocess.run(
            [str(python), str(PARITY_DIR / driver), str(jobs_path), str(results_path)],
            cwd=ROOT,
            env=subprocess_env(),
            stdout=handle,
            stderr=subprocess.STDOUT,
            timeout=DRIVER_TIMEOUT_S,
        )
    if proc.returncode != 0 or not results_path.exists():
        tail = log.read_text()[-4000:]
        raise RuntimeError(f"{side} driver exited {proc.returncode}; log {log}:\n{tail}")
    results: dict[str, Any] = json.loads(results_path.read_text())
    return results


@dataclass
class ParityRun:
    work: Path
    cases: dict[str, Case]
    implemented: set[str]
    timings: dict[str, float]


def run_parity(work: Path, only: list[str] | None = None) -> ParityRun:
    """Build the models, write the recipes, run both sides. mergekit outputs are reused across runs of the
    same WORKDIR when the recipe text (and so the parents, which are seeded) is unchanged."""
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    models = build_all(work / "models")
    timings["build_models"] = time.perf_counter() - start
    implemented = evomerge_methods()
    models_sha = source_sha256()

    cases: dict[str, Case] = {}
    mk_jobs: list[dict[str, Any]] = []
    ev_jobs: list[dict[str, Any]] = []
    for layout, recipe_id in all_case_ids():
        spec = RECIPES[recipe_id]
        ctx = ctx_for(layout, models[layout], LAYOUTS[layout].num_layers)
        if not spec.methods(ctx) <= implemented:
            continue
        if only and not any(part in case_id(layout, recipe_id) for part in only):
            continue
        slug = f"{layout}__{recipe_id.replace('/', '__')}"
        assert spec.method(ctx) == method_of(recipe_id), recipe_id
        documents = spec.documents(ctx)
        text = _dump_recipe(documents)
        recipe_path = work / "recipes" / f"{slug}.yaml"
        recipe_path.parent.mkdir(parents=True, exist_ok=True)
        recipe_path.write_text(text)
        case = Case(layout, recipe_id, spec, recipe_path, work / "mergekit" / slug, work / "evomerge" / slug)
        cases[case.id] = case
        stamp = case.mk_out.parent / f"{slug}.ok"
        digest = hashlib.sha256(
            (text + str(spec.random_seed) + str(LAYOUTS[layout].tokenizer) + models_sha).encode()
        ).hexdigest()
        if stamp.exists() and stamp.read_text() == digest and case.mk_out.exists():
            case.mk = {"ok": True, "error": None, "cached": True}
        else:
            stamp.unlink(missing_ok=True)
            mk_jobs.append(
                {
                    "id": case.id,
                    "recipe": str(recipe_path),
                    "out": str(case.mk_out),
                    "copy_tokenizer": LAYOUTS[layout].tokenizer,
                    "random_seed": spec.random_seed,
                    "multi": len(documents) > 1,
                    "stamp": str(stamp),
                    "digest": digest,
                }
            )
        ev_jobs.append(
            {"id": case.id, "recipe": str(recipe_path), "out": str(case.ev_out), "args": list(spec.evomerge_args)}
        )

    (work / "mergekit").mkdir(exist_ok=True)
    for job in mk_jobs:
        out = Path(job["out"])
        if out.exists():
            import shutil

            shutil.rmtree(out)
    start = time.perf_counter()
    mk_results = _run_driver(MERGEKIT_PYTHON, "mergekit_driver.py", mk_jobs, work, "mergekit")
    timings["mergekit"] = time.perf_counter() - start
    for job in mk_jobs:
        result = mk_results.get(job["id"], {"ok": False, "error": "no result from the mergekit driver"})
        cases[job["id"]].mk = result
        if result["ok"]:
            Path(job["stamp"]).write_text(job["digest"])

    start = time.perf_counter()
    ev_results = _run_driver(Path(sys.executable), "evomerge_driver.py", ev_jobs, work, "evomerge")
    timings["evomerge"] = time.perf_counter() - start
    for job in ev_jobs:
        cases[job["id"]].ev = ev_results.get(job["id"], {"ok": False, "error": "no result from the evomerge driver"})

    start = time.perf_counter()
    _run_tie_oracle([case for case in cases.values() if case.method in TIED_CUTOFF_METHODS and case.mk.get("ok")], work)
    timings["tie_oracle"] = time.perf_counter() - start
    return ParityRun(work, cases, implemented, timings)


# ------------------------------------------------------------------------------------------------
# ties at magnitude cut-offs
TIE_ORACLE = r"""
# Runs in .venv-mergekit:  python -c TIE_ORACLE JOBS.json RESULTS.json
# For each job (a recipe of a magnitude-pruned method), plan the merge with mergekit's own planner, load each
# output tensor's inputs as mergekit does (its loader, vocabulary permutation, dtype promotion), and for every
# non-base input recompute the task vector (input - base) and the entries whose float32 magnitude equals a
# cut-off magnitude whose tie group the cut splits: there mergekit's unstable argsort and a stable order may
# keep different entries. Writes the union over the inputs per output tensor (uint8) to job["out"].
import functools
import json
import sys
import traceback

import torch
import yaml
from mergekit.architecture import get_architecture_info
from mergekit.config import MergeConfiguration
from mergekit.graph import Executor
from mergekit.io.tasks import LoaderCache
from mergekit.merge import _model_out_config
from mergekit.merge_methods.task_adapter import ExecuteMergeMethodTask
from mergekit.options import MergeOptions
from mergekit.plan import MergePlanner
from safetensors.torch import save_file


def tied_entries(delta, sparsification, parameters):
    density = parameters.get("density", 1.0)
    magnitudes = delta.abs().reshape(-1).float()  # mergekit ranks float32 magnitudes on CPU
    numel = magnitudes.numel()
    if density >= 1 or numel == 0:
        return None
    if sparsification == "magnitude":
        if density <= 0:
            return None
        cuts = [numel - max(1, int(density * numel))]  # ascending positions >= the cut are kept
    else:
        keep, top = int(density * numel), int(parameters["gamma"] * numel)
        bottom = max(0, numel - keep - top)
        cuts = [bottom, bottom + keep] if keep > 0 else []  # kept: ascending positions in [bottom, bottom + keep)
    ascending = torch.sort(magnitudes).values
    tied = torch.zeros(numel, dtype=torch.bool)
    for cut in cuts:
        if 0 < cut < numel and ascending[cut - 1] == ascending[cut]:  # the cut splits a group of equal values
            tied |= magnitudes == ascending[cut]
    return tied.reshape(delta.shape)


def run_job(job):
    with open(job["recipe"], encoding="utf-8") as handle:
        config = MergeConfiguration.model_validate(yaml.safe_load(handle.read()))
    options = MergeOptions(quiet=True)
    arch_info = get_architecture_info(config, options)
    LoaderCache().setup(options=options)
    out_config = _model_out_config(config, arch_info, trust_remote_code=False)
    planner = MergePlanner(config, arch_info, options=options, out_model_config=out_config)
    planner._plan()  # what plan_to_disk plans (plan_in_memory fails to build its ReturnTensor tasks in 0.1.5)
    merges = {}
    for weight, task in planner._tensors:
        if not isinstance(task, ExecuteMergeMethodTask):
            raise RuntimeError(f"{weight.name}: unexpected task {type(task).__name__}")
        merges.setdefault(task.gather_tensors, []).append((weight.name, task))
    masks, counts = {}, {}
    for inputs_task, tensors in Executor(list(merges)).run(quiet=True):
        for name, task in merges[inputs_task]:
            if task.base_model not in tensors or not all(t.is_floating_point() for t in tensors.values()):
                continue
            dtype = functools.reduce(torch.promote_types, [t.dtype for t in tensors.values()])
            base = tensors[task.base_model].to(dtype)
            union = torch.zeros(base.shape, dtype=torch.bool)
            for model in task.model_order:
                if model == task.base_model or model not in tensors:
                    continue
                parameters = dict(task.input_parameters[model])
                tied = tied_entries(tensors[model].to(dtype) - base, job["sparsification"], parameters)
                if tied is not None:
                    union |= tied
            masks[name] = union.to(torch.uint8).contiguous()
            counts[name] = int(union.sum())
    save_file(masks, job["out"])
    return counts


def main(jobs_path, results_path):
    with open(jobs_path, encoding="utf-8") as handle:
        jobs = json.load(handle)
    results = {}
    for job in jobs:
        try:
            results[job["id"]] = {"ok": True, "error": None, "masks": job["out"], "tied": run_job(job)}
        except Exception as error:
            detail = "".join(traceback.format_exception_only(type(error), error)).strip()
            results[job["id"]] = {"ok": False, "error": detail, "traceback": traceback.format_exc()}
    with open(results_path, "w", encoding="utf-8") as handle:
        json.dump(results, handle, indent=2)


main(*sys.argv[1:3])
"""


def _run_tie_oracle(cases: list[Case], work: Path) -> None:
    """Sets `case.ties` for each case: where its tied entries are (TIE_ORACLE, in .venv-mergekit)."""
    if not cases:
        return
    (work / "ties").mkdir(exist_ok=True)
    jobs = [
        {
            "id": case.id,
            "recipe": str(case.recipe_path),
            "out": str(work / "ties" / f"{case.mk_out.name}.safetensors"),
            "sparsification": TIED_CUTOFF_METHODS[case.method],
        }
        for case in cases
    ]
    jobs_path, results_path = work / "ties-jobs.json", work / "ties-results.json"
    jobs_path.write_text(json.dumps(jobs, indent=2))
    results_path.unlink(missing_ok=True)
    log = work / "ties-oracle.log"
    with log.open("w") as handle:
        proc = subprocess.run(
            [str(MERGEKIT_PYTHON), "-c", TIE_ORACLE, str(jobs_path), str(results_path)],
            cwd=ROOT,
            env=subprocess_env(),
            stdout=handle,
            stderr=subprocess.STDOUT,
            timeout=DRIVER_TIMEOUT_S,
        )
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    for case in cases:
        case.ties = results.get(
            case.id, {"ok": False, "error": f"no result from the tie oracle (exit {proc.returncode}; log {log})"}
        )


# ------------------------------------------------------------------------------------------------
# comparison
def read_tensors(model_dir: Path) -> dict[str, torch.Tensor]:
    index = model_dir / "model.safetensors.index.json"
    files = (
        sorted({model_dir / name for name in json.loads(index.read_text())["weight_map"].values()})
        if index.exists()
        else sorted(model_dir.glob("*.safetensors"))
    )
    tensors: dict[str, torch.Tensor] = {}
    for file in files:
        with safe_open(str(file), framework="pt") as handle:
            for name in handle.keys():  # noqa: SIM118 - safe_open is not a mapping
                tensors[name] = handle.get_tensor(name)
    return tensors


@dataclass
class TensorDiff:
    name: str
    problem: str


def compare_tensor(name: str, ref: torch.Tensor, got: torch.Tensor, exact: bool) -> TensorDiff | None:
    if ref.dtype != got.dtype or ref.shape != got.shape:
        return TensorDiff(name, f"mergekit {ref.dtype} {list(ref.shape)} vs evomerge {got.dtype} {list(got.shape)}")
    if not exact:
        if ref.is_floating_point() and not torch.isfinite(got).all():
            return TensorDiff(name, "non-finite values in evomerge output")
        return None
    if torch.equal(ref, got):
        return None
    if ref.is_floating_point():
        both_nan = torch.isnan(ref) & torch.isnan(got)
        differ = (ref != got) & ~both_nan
        if not differ.any():
            return None
        diff = (ref.double() - got.double()).abs()
        diff[~differ] = 0
        max_diff = diff.nan_to_num(nan=float("inf")).max().item()
        worst = int(diff.nan_to_num(nan=float("inf")).argmax())
        scale = ref.double().abs().max().item()
        return TensorDiff(
            name,
            f"{ref.dtype} {list(ref.shape)}: max |diff| {max_diff:.3e} (max |ref| {scale:.3e}), "
            f"{int(differ.sum())}/{ref.numel()} elements differ; worst at flat index {worst}: "
            f"mergekit {ref.reshape(-1)[worst].item()!r} evomerge {got.reshape(-1)[worst].item()!r}",
        )
    differ = ref != got
    return TensorDiff(name, f"{ref.dtype} {list(ref.shape)}: {int(differ.sum())}/{ref.numel()} elements differ")


def compare_tied(name: str, ref: torch.Tensor, got: torch.Tensor, tied: torch.Tensor) -> tuple[TensorDiff | None, int]:
    """A magnitude-pruned output: bit-identical except at `tied` entries (a task vector's magnitude there equals
    a cut-off magnitude whose tie group the cut splits), and no more mismatches than tied entries.
    Returns the difference found (or None) and the number of mismatching entries."""
    if ref.dtype != got.dtype or ref.shape != got.shape or tied.shape != ref.shape:
        diff = compare_tensor(name, ref, got, exact=True)
        return diff or TensorDiff(name, f"tie mask {list(tied.shape)} vs tensor {list(ref.shape)}"), ref.numel()
    differ = ref != got
    if ref.is_floating_point():
        differ &= ~(torch.isnan(ref) & torch.isnan(got))
    tied = tied.bool()
    mismatched, outside = int(differ.sum()), differ & ~tied
    if outside.any():
        base = compare_tensor(name, torch.where(outside, ref, got), got, exact=True)
        detail = base.problem if base is not None else ""
        problem = f"{int(outside.sum())} mismatches outside the {int(tied.sum())} tied entries; {detail}"
        return TensorDiff(name, problem), mismatched
    if mismatched > int(tied.sum()):  # implied by the check above; kept as the stated bound
        return TensorDiff(name, f"{mismatched} mismatches > {int(tied.sum())} tied entries"), mismatched
    return None, mismatched


def compare_outputs(case: Case) -> list[TensorDiff]:
    ref = read_tensors(case.mk_out)
    got = read_tensors(case.ev_out)
    diffs = [TensorDiff(name, "only in mergekit output") for name in sorted(set(ref) - set(got))]
    diffs += [TensorDiff(name, "only in evomerge output") for name in sorted(set(got) - set(ref))]
    tie_masks: dict[str, torch.Tensor] | None = None
    if case.method in TIED_CUTOFF_METHODS and case.spec.exact:
        if not case.ties or not case.ties.get("ok"):
            error = (case.ties or {}).get("error", "the tie oracle did not run")
            return [*diffs, TensorDiff("<tie oracle>", str(error))]
        tie_masks = read_tensors_file(Path(case.ties["masks"]))
    case.tie_counts = {}
    for name in sorted(set(ref) & set(got)):
        if tie_masks is not None and name in tie_masks:
            diff, mismatched = compare_tied(name, ref[name], got[name], tie_masks[name])
            case.tie_counts[name] = (mismatched, int(tie_masks[name].sum()))
        else:
            diff = compare_tensor(name, ref[name], got[name], case.spec.exact)
        if diff is not None:
            diffs.append(diff)
    return diffs


def read_tensors_file(path: Path) -> dict[str, torch.Tensor]:
    with safe_open(str(path), framework="pt") as handle:
        return {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118 - not a mapping


def tie_summary(case: Case) -> str:
    """One line: mismatching entries against tied entries, in all and in the worst tensor."""
    if not case.tie_counts:
        return "no tie-aware tensors"
    mismatched = sum(m for m, _ in case.tie_counts.values())
    tied = sum(t for _, t in case.tie_counts.values())
    line = f"{mismatched} mismatching / {tied} tied entries over {len(case.tie_counts)} tensors"
    worst_name, (worst_m, worst_t) = max(case.tie_counts.items(), key=lambda item: item[1][0])
    return line + (f"; max {worst_m} (of {worst_t} tied) in {worst_name}" if worst_m else "")


LAYER_KEYS = ("num_hidden_layers", "n_layer", "num_layers")
ESSENTIAL_KEYS = (
    "architectures",
    "model_type",
    "hidden_size",
    "n_embd",
    "vocab_size",
    "tie_word_embeddings",
    "num_attention_heads",
    "n_head",
)


def config_dtype(config: dict[str, Any]) -> Any:
    return config.get("dtype", config.get("torch_dtype"))


def _donor_dtypes(case: Case) -> set[Any]:
    """Config dtypes that are as right as mergekit's own pick. Without `base_model` (and without
    dtype/out_dtype) mergekit copies the config of `referenced_models()[0]`, and referenced_models() is
    `list(set(...))` (config.py), i.e. an arbitrary, PYTHONHASHSEED-dependent parent; evomerge takes the
    first listed. Any parent's dtype is then acceptable; with a base_model only mergekit's is."""
    recipe = list(yaml.safe_load_all(case.recipe_path.read_text()))[-1]  # a multi-document case: its output
    if recipe.get("base_model") or recipe.get("dtype") or recipe.get("out_dtype"):
        return set()
    parents = [m["model"] for m in recipe.get("models") or []]
    parents += [src["model"] for s in recipe.get("slices") or [] for src in s["sources"]]
    return {config_dtype(json.loads((Path(p) / "config.json").read_text())) for p in parents if Path(p).is_dir()}


def compare_configs(case: Case) -> list[str]:
    ref = json.loads((case.mk_out / "config.json").read_text())
    got = json.loads((case.ev_out / "config.json").read_text())
    problems = []
    for key in (*LAYER_KEYS, *ESSENTIAL_KEYS):
        if ref.get(key) != got.get(key):
            problems.append(f"{key}: mergekit {ref.get(key)!r} evomerge {got.get(key)!r}")
    if config_dtype(ref) != config_dtype(got) and config_dtype(got) not in _donor_dtypes(case):
        problems.append(
            f"dtype: mergekit dtype={ref.get('dtype')!r} torch_dtype={ref.get('torch_dtype')!r}; "
            f"evomerge dtype={got.get('dtype')!r} torch_dtype={got.get('torch_dtype')!r}"
        )
    for key in ("dtype", "torch_dtype"):
        if key in got and got[key] is not None and got[key] != config_dtype(got):
            problems.append(
                f"evomerge config.json is inconsistent: dtype={got.get('dtype')!r} torch_dtype={got[key]!r}"
            )
    return problems


def config_full_diff(case: Case) -> list[str]:
    ref = json.loads((case.mk_out / "config.json").read_text())
    got = json.loads((case.ev_out / "config.json").read_text())
    return [
        f"{k}: {ref.get(k, '<absent>')!r} vs {got.get(k, '<absent>')!r}"
        for k in sorted(set(ref) | set(got))
        if ref.get(k, "<absent>") != got.get(k, "<absent>")
    ]


def weight_files(model_dir: Path) -> list[str]:
    return sorted(
        p.name for p in model_dir.iterdir() if p.name.endswith(".safetensors") or p.name.endswith(".index.json")
    )


# Keys transformers' `save_pretrained` echoes from the loading call into tokenizer_config.json when mergekit
# re-serialises a tokenizer (tokenizer_source set): load-time options, not tokenizer settings.
LOAD_TIME_KEYS = {"is_local", "local_files_only"}


def _same_file(ref: Path, got: Path) -> bool:
    if ref.read_bytes() == got.read_bytes():
        return True
    if ref.suffix != ".json":
        return False
    try:
        a, b = json.loads(ref.read_text()), json.loads(got.read_text())
    except ValueError:
        return False
    if isinstance(a, dict) and isinstance(b, dict):
        a = {k: v for k, v in a.items() if k not in LOAD_TIME_KEYS}
        b = {k: v for k, v in b.items() if k not in LOAD_TIME_KEYS}
    return bool(a == b)


def compare_aux_files(case: Case) -> tuple[list[str], list[str]]:
    """(problems, extras): files mergekit writes that evomerge lacks or writes differently; files only
    evomerge writes (reported, not failed)."""
    problems = []
    if weight_files(case.mk_out) != weight_files(case.ev_out):
        problems.append(f"weight files: mergekit {weight_files(case.mk_out)} evomerge {weight_files(case.ev_out)}")
    ref = {
        p.name for p in case.mk_out.iterdir() if p.is_file() and p.name not in NOT_AUX and ".safetensors" not in p.name
    }
    got = {
        p.name for p in case.ev_out.iterdir() if p.is_file() and p.name not in NOT_AUX and ".safetensors" not in p.name
    }
    for name in sorted(ref):
        if name not in got:
            problems.append(f"{name}: written by mergekit, missing from evomerge output")
        elif not _same_file(case.mk_out / name, case.ev_out / name):
            problems.append(f"{name}: contents differ")
    return problems, sorted(got - ref)


# ------------------------------------------------------------------------------------------------
def report(run: ParityRun) -> str:
    lines = []
    for case in run.cases.values():
        if not case.mk.get("ok") or not case.ev.get("ok"):
            status = "BOTH-FAILED" if not case.mk.get("ok") and not case.ev.get("ok") else "ONE-FAILED"
            lines.append(
                f"{status:12} {case.id}\n    mergekit: {case.mk.get('error')}\n    evomerge: {case.ev.get('error')}"
            )
            continue
        diffs = compare_outputs(case)
        cfg = compare_configs(case)
        aux, extras = compare_aux_files(case)
        status = "PASS" if not (diffs or cfg or aux) else "MISMATCH"
        lines.append(f"{status:12} {case.id}" + ("" if case.spec.exact else "  (inexact: structure only)"))
        if case.tie_counts:
            lines.append(f"    ties at cut-offs: {tie_summary(case)}")
        for diff in diffs:
            lines.append(f"    {diff.name}: {diff.problem}")
        for problem in cfg + aux:
            lines.append(f"    {problem}")
        if extras:
            lines.append(f"    (extra files only in evomerge output: {', '.join(extras)})")
    lines.append("timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in run.timings.items()))
    return "\n".join(lines)


if __name__ == "__main__":
    args = sys.argv[1:]
    only = [args[i + 1] for i, a in enumerate(args) if a == "--only"]
    positional = [a for i, a in enumerate(args) if a != "--only" and (i == 0 or args[i - 1] != "--only")]
    workdir = Path(positional[0]) if positional else Path("/tmp/parity_work/run")
    print(report(run_parity(workdir, only or None)))
