"""evomerge vs mergekit 0.1.5: wall time, CPU time and peak RSS of `evomerge merge` and `mergekit-yaml` on the
same recipes over four seeded Llama checkpoints, next to the I/O bound of each merge (reading every input byte
from the page cache + writing and fsyncing the output bytes), and against evomerge's targets. Prints; asserts
nothing.

    .venv/bin/python tests/benchmarks/merge_vs_mergekit.py [--methods linear ties ...] [--runs 3]
    .venv/bin/python tests/benchmarks/merge_vs_mergekit.py --size quick   # ~37M-parameter models, 1 run (= --quick)
    .venv/bin/python tests/benchmarks/merge_vs_mergekit.py --size full    # the default: ~374M parameters, ~748 MB
    .venv/bin/python tests/benchmarks/merge_vs_mergekit.py --size large   # TinyLlama's shape: ~1.1B, ~2.2 GB
    .venv/bin/python tests/benchmarks/merge_vs_mergekit.py --stat min     # summarise the runs by their minimum
    .venv/bin/python tests/benchmarks/merge_vs_mergekit.py --device cuda  # the math on a GPU (mergekit --cuda)
    .venv/bin/python tests/benchmarks/merge_vs_mergekit.py --quick --profile ties  # evomerge under cProfile

Sizes (all bfloat16, untied embeddings): quick = hidden 512, 4 layers, vocab 24000 (~37M parameters); full =
hidden 1024, 24 layers, vocab 32000 (~374M); large = TinyLlama-1.1B's shape, hidden 2048, 22 layers, MLP 5632,
32 heads with 4 key/value heads, vocab 32000 (~1.1B parameters, ~2.2 GB per model, ~8.8 GB for the four; the
merges of this size need several GB of RAM per tool).

The models (a random `base` and three "fine-tunes" `a`, `b`, `c` = base + small seeded per-tensor deltas) are
written one at a time with safetensors + a LlamaConfig (no model is instantiated; each expert regenerates the
base tensors from their seeded generators, so at most about one model is in memory), under --models-dir, and
reused when present; models built before `c` existed gain it, unchanged otherwise. Only the large size's
recipes use `c` (linear, the task-vector methods, model_stock, sce, karcher, multislerp, ram, ramplus_tl); the
quick and full recipes are those the README's table was measured on, and the methods that take two models
(slerp, nearswap, arcee_fusion, nuslerp, passthrough) keep them at every size.

Each merge is its own process (both tools pay their import cost), timed from the outside with os.wait4
(user+sys CPU of the child) and GNU time %M (its peak RSS); the two tools alternate run by run. The page cache is
warmed before the runs, and `sync` runs after each merge so that the previous output's dirty pages are not
written back during the next merge. Threads: whatever each tool uses by default on this machine.

The table gives, per method, the median (or with --stat min, the minimum) over the runs of each tool, the
ratios evomerge/mergekit of wall time and peak RSS, evomerge's wall over the I/O bound, and the targets each
method misses: wall ratio <= 0.5, RSS ratio <= 0.4, wall / I/O <= 1.5 for the elementwise methods (linear,
task_arithmetic, nearswap, passthrough, slerp) and <= 3 for the others ("-": all met; "rss?": not measured).
--profile METHOD runs instead evomerge's merge of METHOD's recipe once under cProfile (`python -m cProfile -o
FILE -m flows.cli merge ...`, with this interpreter) and prints the 25 functions with the most cumulative and
the most own time: where the time of a method that misses its target goes.

EVOMERGE_COMMAND overrides how evomerge is started (default .venv/bin/evomerge; e.g. "python3 -m flows.cli" on a
machine without the venv), EVOMERGE_MERGEKIT_VENV where mergekit-yaml lives. Without GNU time the RSS column
reads nan.
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import shlex
import shutil
import statistics
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[2]
EVOMERGE = shlex.split(os.environ.get("EVOMERGE_COMMAND", str(ROOT / ".venv" / "bin" / "evomerge")))
MERGEKIT = Path(os.environ.get("EVOMERGE_MERGEKIT_VENV", ROOT / ".venv-mergekit")) / "bin" / "mergekit-yaml"
WORK = Path("/tmp/bench_work")
TIME = "/usr/bin/time"  # GNU time, for the peak RSS of the merge process itself
SEED = 1234
DELTA_SCALE = {"a": 0.35, "b": 0.30, "c": 0.25}
MODELS = ("base", *DELTA_SCALE)
IO_CHUNK = 64 << 20

# ~374M parameters: 2 * 32000 * 1024 (untied embeddings) + 24 * (4 * 1024^2 + 3 * 1024 * 2816) + norms
FULL = dict(vocab_size=32000, hidden_size=1024, intermediate_size=2816, num_hidden_layers=24, num_attention_heads=16)
# ~37M parameters
QUICK = dict(vocab_size=24000, hidden_size=512, intermediate_size=1408, num_hidden_layers=4, num_attention_heads=8)
# TinyLlama-1.1B's shape, ~1.1B parameters: 2 * 32000 * 2048 + 22 * (2 * 2048^2 + 2 * 256 * 2048 + 3 * 2048 * 5632)
LARGE = dict(
    vocab_size=32000,
    hidden_size=2048,
    intermediate_size=5632,
    num_hidden_layers=22,
    num_attention_heads=32,
    num_key_value_heads=4,
)
SIZES = {"quick": QUICK, "full": FULL, "large": LARGE}

# targets of evomerge against mergekit and against the I/O bound
WALL_TARGET = 0.5  # evomerge wall / mergekit wall
RSS_TARGET = 0.4  # evomerge peak RSS / mergekit peak RSS
IO_TARGET_ELEMENTWISE = 1.5  # evomerge wall / I/O bound, for the methods below
IO_TARGET = 3.0  # ... for every other method
ELEMENTWISE = frozenset({"linear", "task_arithmetic", "nearswap", "passthrough", "slerp"})


# ------------------------------------------------------------------------------------------------ models
def _kv_heads(cfg: dict[str, int]) -> int:
    return cfg.get("num_key_value_heads", cfg["num_attention_heads"])


def _shapes(cfg: dict[str, int]) -> list[tuple[str, tuple[int, ...]]]:
    h, i, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    kv = _kv_heads(cfg) * (h // cfg["num_attention_heads"])  # key/value heads * head_dim
    out: list[tuple[str, tuple[int, ...]]] = [("model.embed_tokens.weight", (v, h))]
    for n in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{n}."
        out += [
            (p + "input_layernorm.weight", (h,)),
            (p + "self_attn.q_proj.weight", (h, h)),
            (p + "self_attn.k_proj.weight", (kv, h)),
            (p + "self_attn.v_proj.weight", (kv, h)),
            (p + "self_attn.o_proj.weight", (h, h)),
            (p + "post_attention_layernorm.weight", (h,)),
            (p + "mlp.gate_proj.weight", (i, h)),
            (p + "mlp.up_proj.weight", (i, h)),
            (p + "mlp.down_proj.weight", (h, i)),
        ]
    out += [("model.norm.weight", (h,)), ("lm_head.weight", (v, h))]
    return out


def n_parameters(cfg: dict[str, int]) -> int:
    return sum(int(torch.Size(shape).numel()) for _, shape in _shapes(cfg))


def model_tag(cfg: dict[str, int], seed: int) -> str:
    """The models' directory name; `-kv<n>` only where there are fewer key/value heads than heads, so that the
    sizes without it keep the directories built before it existed."""
    tag = "llama-h{hidden_size}-i{intermediate_size}-l{num_hidden_layers}-v{vocab_size}".format(**cfg)
    if _kv_heads(cfg) != cfg["num_attention_heads"]:
        tag += f"-kv{_kv_heads(cfg)}"
    return tag + f"-s{seed}"


def _gen(*parts: object) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(zlib.crc32("|".join(map(str, parts)).encode()))
    return g


def model_tensors(cfg: dict[str, int], seed: int, variant: str) -> dict[str, torch.Tensor]:
    """One model's bf16 tensors: `base`, or base + a seeded delta of DELTA_SCALE[variant] * spread. The base
    tensor is regenerated from its own generator for each variant, so no other model needs to be in memory."""
    tensors: dict[str, torch.Tensor] = {}
    for name, shape in _shapes(cfg):
        if len(shape) == 1:  # RMSNorm weights: ones
            value = torch.ones(shape)
            spread = 0.05
        else:
            value = torch.randn(shape, generator=_gen(seed, "base", name)).mul_(0.02)
            spread = 0.02
        if variant != "base":
            noise = torch.randn(shape, generator=_gen(seed, variant, name))
            value = noise.mul_(DELTA_SCALE[variant] * spread).add_(value)
        tensors[name] = value.to(torch.bfloat16)
        del value
    return tensors


def build_models(root: Path, cfg: dict[str, int], seed: int, check_load: bool = True) -> dict[str, Path]:
    """base, a, b, c under root/<tag>/, written one at a time; reused when built.json and their
    model.safetensors exist (with the stamp, only the missing ones are built: `c` next to an older script's
    base, a, b). check_load: transformers loads the first model built (it holds a whole model in memory)."""
    from transformers import LlamaConfig

    tag = model_tag(cfg, seed)
    dirs = {name: root / tag / name for name in MODELS}
    stamp = root / tag / "built.json"
    missing = [name for name, d in dirs.items() if not (d / "model.safetensors").exists()]
    if stamp.exists() and not missing:
        return dirs
    todo = missing if stamp.exists() else list(dirs)
    start = time.perf_counter()
    n_params = n_parameters(cfg)
    config = LlamaConfig(
        **{**cfg, "num_key_value_heads": _kv_heads(cfg)},
        max_position_embeddings=2048,
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=2,
    )
    config.architectures = ["LlamaForCausalLM"]
    config.dtype = torch.bfloat16
    for name in todo:
        d = dirs[name]
        d.mkdir(parents=True, exist_ok=True)
        config.save_pretrained(d)
        partial = d / "model.safetensors.partial"  # renamed once whole: an interrupted build is not reused
        tensors = model_tensors(cfg, seed, name)
        save_file(tensors, str(partial), metadata={"format": "pt"})
        del tensors
        os.replace(partial, d / "model.safetensors")
    stamp.write_text(json.dumps({"params": n_params, **cfg}))
    print(
        f"built {len(todo)} model(s) ({', '.join(todo)}) of {n_params / 1e6:.1f}M parameters in "
        f"{time.perf_counter() - start:.1f} s under {root / tag}"
    )
    if not check_load:
        return dirs
    # transformers must load what we wrote
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(dirs[todo[0]], dtype=torch.bfloat16)
    loaded = sum(p.numel() for p in model.parameters())
    assert loaded == n_params, (loaded, n_params)
    print(f"transformers loads {dirs[todo[0]]}: {type(model).__name__}, {loaded / 1e6:.1f}M parameters")
    del model
    return dirs


# ------------------------------------------------------------------------------------------------ recipes
def recipe_for(method: str, m: dict[str, str], layers: int, size: str = "full") -> dict[str, Any]:
    """The recipe of `method` over the models m (base, a, b, c). Only the large size merges the third expert c
    (where a method takes more than two models); the quick and full recipes are those of the README's table."""
    base, a, b = m["base"], m["a"], m["b"]
    experts = [a, b, m["c"]] if size == "large" else [a, b]
    dense = [{"model": base}, *({"model": e, "parameters": {"weight": 0.5}} for e in experts)]
    sparse = [{"model": base}, *({"model": e, "parameters": {"weight": 0.5, "density": 0.5}} for e in experts)]
    everyone = [{"model": name} for name in (base, *experts)]
    r: dict[str, Any]
    if method == "linear":
        base_weight, expert_weight = (0.2, 0.4) if len(experts) == 2 else (0.1, 0.3)
        r = {
            "models": [
                {"model": base, "parameters": {"weight": base_weight}},
                *({"model": e, "parameters": {"weight": expert_weight}} for e in experts),
            ]
        }
    elif method == "task_arithmetic":
        r = {"base_model": base, "models": dense}
    elif method in ("ties", "dare_ties", "dare_linear", "breadcrumbs", "breadcrumbs_ties", "della", "della_linear"):
        r = {"base_model": base, "models": sparse}
    elif method == "sce":
        r = {"base_model": base, "models": everyone, "parameters": {"select_topk": 0.5}}
    elif method in ("model_stock", "ram", "ramplus_tl"):
        r = {"base_model": base, "models": everyone}
    elif method == "karcher":
        r = {"models": everyone}
    elif method == "multislerp":
        r = {"base_model": base, "models": dense[1:]}
    elif method == "nuslerp":  # two models over the base, at every size
        r = {"base_model": base, "models": [{"model": e, "parameters": {"weight": 0.5}} for e in (a, b)]}
    elif method == "slerp":
        r = {"base_model": base, "models": [{"model": base}, {"model": a}], "parameters": {"t": 0.5}}
    elif method == "nearswap":
        r = {"base_model": base, "models": [{"model": base}, {"model": a}], "parameters": {"t": 0.001}}
    elif method == "arcee_fusion":
        r = {"base_model": base, "models": [{"model": base}, {"model": a}]}
    elif method == "passthrough":  # frankenmerge: base layers [0, 3L/4) then a's [L/4, L) -> 1.5 L layers
        r = {
            "slices": [
                {"sources": [{"model": base, "layer_range": [0, 3 * layers // 4]}]},
                {"sources": [{"model": a, "layer_range": [layers // 4, layers]}]},
            ]
        }
    else:
        raise SystemExit(f"no benchmark recipe for method {method!r}")
    return {"merge_method": method, **r, "dtype": "bfloat16"}


def models_of(recipe: dict[str, Any]) -> set[str]:
    found = set()
    if recipe.get("base_model"):
        found.add(recipe["base_model"])
    for entry in recipe.get("models", []):
        found.add(entry["model"])
    for piece in recipe.get("slices", []):
        for source in piece["sources"]:
            found.add(source["model"])
    return found


# ------------------------------------------------------------------------------------------------ timing
def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env.pop("PYTHONPATH", None)
    return env


def run_child(cmd: list[str], log: Path) -> dict[str, Any]:
    """Wall time from here; user+sys CPU from wait4 (the child and its waited-for descendants); peak RSS from
    GNU time's %M. Not wait4's ru_maxrss: a child forked from this (large) process starts with this process's
    RSS high-water mark, which would hide the merge's own peak under ours."""
    rss_file = log.with_suffix(".rss")
    with log.open("w") as handle:
        start = time.perf_counter()
        timed = [TIME, "-f", "%M", "-o", str(rss_file), *cmd] if Path(TIME).exists() else cmd
        proc = subprocess.Popen(
            timed,
            cwd=ROOT,
            env=child_env(),
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    try:
        rss = int(rss_file.read_text().strip().splitlines()[-1]) * 1024  # KiB
    except (OSError, ValueError, IndexError):
        rss = float("nan")
    rss_file.unlink(missing_ok=True)
    return {"rc": proc.returncode, "wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "rss": rss}


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def weight_files(model_dir: str) -> list[Path]:
    return sorted(Path(model_dir).glob("*.safetensors"))


def read_all(files: list[Path], buf: bytearray) -> tuple[int, float]:
    view = memoryview(buf)
    total = 0
    start = time.perf_counter()
    for path in files:
        with path.open("rb", buffering=0) as handle:
            while True:
                n = handle.readinto(view)
                if not n:
                    break
                total += n
    return total, time.perf_counter() - start


def write_bytes(path: Path, size: int, buf: bytearray) -> float:
    view = memoryview(buf)
    start = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        left = size
        while left > 0:
            left -= os.write(fd, view[: min(left, len(buf))])
        os.fsync(fd)
    finally:
        os.close(fd)
    elapsed = time.perf_counter() - start
    path.unlink()
    return elapsed


# ------------------------------------------------------------------------------------------------ targets
def io_target(method: str) -> float:
    return IO_TARGET_ELEMENTWISE if method in ELEMENTWISE else IO_TARGET


def missed_targets(method: str, wall_ratio: float, rss_ratio: float, io_ratio: float) -> str:
    """The targets a method misses ("wall", "rss", "io"), "<name>?" where one could not be measured, "-" if none."""
    missed = []
    for name, value, target in (
        ("wall", wall_ratio, WALL_TARGET),
        ("rss", rss_ratio, RSS_TARGET),
        ("io", io_ratio, io_target(method)),
    ):
        if value != value:  # nan: a tool failed every run, or no GNU time
            missed.append(f"{name}?")
        elif value > target:
            missed.append(name)
    return ",".join(missed) or "-"


# ------------------------------------------------------------------------------------------------ profile
def profile(method: str, recipe_path: Path, work: Path, device: str, top: int = 25) -> int:
    """evomerge's merge of recipe_path once under cProfile, with this interpreter and the benchmark's arguments;
    prints the `top` functions by cumulative and by own (total) time."""
    prof = work / f"{method}.prof"
    out = work / "out-profile"
    shutil.rmtree(out, ignore_errors=True)
    os.sync()
    cmd = [sys.executable, "-m", "cProfile", "-o", str(prof), "-m", "flows.cli", "merge", str(recipe_path), str(out)]
    cmd += ["--quiet", "--force", "--random-seed", "0"] + (["--device", device] if device != "cpu" else [])
    print(f"profiling: {shlex.join(cmd)}", flush=True)
    log = work / f"{method}-profile.log"
    res = run_child(cmd, log)
    shutil.rmtree(out, ignore_errors=True)
    print(
        f"{method}: rc={res['rc']} wall={res['wall']:.2f}s cpu={res['cpu']:.2f}s rss={res['rss'] / 2**20:.0f}MiB "
        "(under cProfile, which slows Python-heavy code)"
    )
    if res["rc"] != 0 or not prof.exists():
        print(f"ERROR {method}: evomerge exited {res['rc']}:\n{log.read_text()[-2500:]}", file=sys.stderr)
        return 1
    log.unlink(missing_ok=True)
    stats = pstats.Stats(str(prof), stream=sys.stdout).strip_dirs()
    for key, what in (("cumulative", "cumulative time"), ("tottime", "total (own) time")):
        print(f"\n==== top {top} functions by {what} ====")
        stats.sort_stats(key).print_stats(top)
    print(
        f"profile: {prof} (python -m pstats {prof}). cProfile sees the main thread only: the time of evomerge's "
        "writer thread shows there as waits (lock acquire, queue get), and torch's OpenMP workers within the "
        "torch calls that start them."
    )
    return 0


# ------------------------------------------------------------------------------------------------ main
def main() -> None:
    sys.path.insert(0, str(ROOT))
    import tasks.merge.methods  # noqa: F401  (fills the registry)
    from tasks.merge.registry import METHODS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=sorted(METHODS))
    parser.add_argument("--runs", type=int, default=None, help="runs per tool and method (default 3; 1 with quick)")
    parser.add_argument("--models-dir", type=Path, default=Path("/tmp/evomerge-bench-models"))
    parser.add_argument("--work", type=Path, default=WORK)
    parser.add_argument("--size", choices=sorted(SIZES), default=None, help="model size (default full)")
    parser.add_argument("--quick", action="store_true", help="= --size quick: ~37M-parameter models and 1 run")
    parser.add_argument("--stat", choices=("median", "min"), default="median", help="summary of the runs per tool")
    parser.add_argument("--profile", metavar="METHOD", help="run evomerge's merge of METHOD once under cProfile")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--keep-logs", action="store_true")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda: evomerge --device cuda, mergekit --cuda")
    args = parser.parse_args()
    if args.quick and args.size not in (None, "quick"):
        parser.error(f"--quick is --size quick, not --size {args.size}")
    size = "quick" if args.quick else (args.size or "full")
    runs = args.runs or (1 if size == "quick" else 3)
    cfg = SIZES[size]
    work: Path = args.work
    work.mkdir(parents=True, exist_ok=True)

    # the load check holds a whole model: skipped for the large size (2.2 GB+)
    dirs = build_models(args.models_dir, cfg, args.seed, check_load=size != "large")
    paths = {k: str(v.resolve()) for k, v in dirs.items()}
    label = f"{size} (~{n_parameters(cfg) / 1e6:.0f}M params)"
    buf = bytearray(IO_CHUNK)

    if args.profile:
        recipe = recipe_for(args.profile, paths, cfg["num_hidden_layers"], size)
        recipe_path = work / f"{args.profile}.yaml"
        recipe_path.write_text(yaml.safe_dump(recipe, sort_keys=False))
        inputs = [f for d in sorted(models_of(recipe)) for f in weight_files(d)]
        read_all(inputs, buf)  # warm the page cache
        read_all(inputs, buf)
        print(f"evomerge under cProfile, {label}, bf16, math on {args.device}, method {args.profile}")
        sys.exit(profile(args.profile, recipe_path, work, args.device))

    print(f"evomerge: {shlex.join(EVOMERGE)}\nmergekit: {MERGEKIT}\nruns per tool: {runs}, cpus: {os.cpu_count()}")
    if args.device != "cpu":
        print(f"device: {args.device} ({torch.cuda.get_device_name(args.device)})")
    on_device = {"evomerge": ["--device", args.device], "mergekit": ["--cuda"]} if args.device != "cpu" else {}

    all_inputs = [f for d in paths.values() for f in weight_files(d)]
    read_all(all_inputs, buf)  # warm the page cache
    read_all(all_inputs, buf)
    rows = []
    for method in args.methods:
        recipe = recipe_for(method, paths, cfg["num_hidden_layers"], size)
        recipe_path = work / f"{method}.yaml"
        recipe_path.write_text(yaml.safe_dump(recipe, sort_keys=False))
        inputs = [f for d in sorted(models_of(recipe)) for f in weight_files(d)]
        results: dict[str, list[dict[str, Any]]] = {"evomerge": [], "mergekit": []}
        errors: list[str] = []
        out_bytes = 0
        for run in range(runs):
            for tool in ("evomerge", "mergekit"):
                out = work / f"out-{tool}"
                shutil.rmtree(out, ignore_errors=True)
                os.sync()
                read_all(inputs, buf)  # re-warm (the previous output may have evicted pages)
                if tool == "evomerge":
                    cmd = [
                        *EVOMERGE,
                        "merge",
                        str(recipe_path),
                        str(out),
                        "--quiet",
                        "--force",
                        "--random-seed",
                        "0",
                    ]
                else:
                    cmd = [str(MERGEKIT), str(recipe_path), str(out), "--quiet", "--random-seed", "0"]
                cmd += on_device.get(tool, [])
                log = work / f"{method}-{tool}-{run}.log"
                res = run_child(cmd, log)
                if res["rc"] != 0:
                    errors.append(f"{tool} run {run} exited {res['rc']}:\n{log.read_text()[-2500:]}")
                else:
                    results[tool].append(res)
                    size = sum(f.stat().st_size for f in out.glob("*.safetensors"))
                    if tool == "evomerge" or not out_bytes:
                        out_bytes = size
                    if not args.keep_logs:
                        log.unlink(missing_ok=True)
                print(
                    f"  {method:16s} {tool:8s} run {run}: rc={res['rc']} wall={res['wall']:.2f}s "
                    f"cpu={res['cpu']:.2f}s rss={res['rss'] / 2**20:.0f}MiB",
                    flush=True,
                )
                shutil.rmtree(out, ignore_errors=True)
                os.sync()
        # I/O bound: read the inputs from the page cache + write and fsync out_bytes
        read_all(inputs, buf)
        in_bytes, t_read = read_all(inputs, buf)
        t_write = write_bytes(work / "io_probe.bin", out_bytes, buf) if out_bytes else float("nan")
        for e in errors:
            print(f"ERROR {method}: {e}", file=sys.stderr)
        rows.append((method, results, in_bytes, out_bytes, t_read, t_write, errors))

    summarise: Callable[[list[float]], float] = statistics.median if args.stat == "median" else min

    def stat(res: list[dict[str, Any]], key: str) -> float:
        return summarise([r[key] for r in res]) if res else float("nan")

    def ratio(x: float, y: float) -> float:
        return x / y if y and y == y else float("nan")

    print()
    print(
        f"evomerge vs mergekit 0.1.5, {label}, bf16, math on {args.device}, {args.stat} of {runs} run(s) per tool; "
        "times in s, RSS in MiB, bytes in MB"
    )
    header = (
        f"{'method':16s} {'ev wall':>8s} {'mk wall':>8s} {'ev/mk':>6s} {'ev CPU':>7s} {'mk CPU':>7s} "
        f"{'ev RSS':>7s} {'mk RSS':>7s} {'ev/mk':>6s} {'in MB':>6s} {'out MB':>7s} {'read':>5s} {'write':>5s} "
        f"{'I/O':>5s} {'ev/IO':>6s} {'IO tgt':>6s}  misses"
    )
    print(header)
    print("-" * len(header))
    missing_any = 0
    for method, results, in_bytes, out_bytes, t_read, t_write, errors in rows:
        ev, mk = results["evomerge"], results["mergekit"]
        io = t_read + t_write
        ev_wall, mk_wall = stat(ev, "wall"), stat(mk, "wall")
        ev_rss, mk_rss = stat(ev, "rss") / 2**20, stat(mk, "rss") / 2**20
        wall_ratio, rss_ratio, io_ratio = ratio(ev_wall, mk_wall), ratio(ev_rss, mk_rss), ratio(ev_wall, io)
        missed = missed_targets(method, wall_ratio, rss_ratio, io_ratio)
        missing_any += missed != "-"
        print(
            f"{method:16s} {ev_wall:8.2f} {mk_wall:8.2f} {wall_ratio:6.2f} {stat(ev, 'cpu'):7.2f} "
            f"{stat(mk, 'cpu'):7.2f} {ev_rss:7.0f} {mk_rss:7.0f} {rss_ratio:6.2f} {in_bytes / 1e6:6.0f} "
            f"{out_bytes / 1e6:7.0f} {t_read:5.2f} {t_write:5.2f} {io:5.2f} {io_ratio:6.2f} {io_target(method):6.1f}  "
            f"{missed}" + ("  (errors: see stderr)" if errors else "")
        )
    print(
        "I/O = read of every input safetensors byte from the page cache (64 MiB reused buffer) + write and fsync "
        "of the output bytes; passthrough reads only part of its inputs, so its I/O bound is an overestimate."
    )
    print(
        f"targets: wall ev/mk <= {WALL_TARGET} (wall), RSS ev/mk <= {RSS_TARGET} (rss), ev wall / I/O <= IO tgt "
        f"(io: {IO_TARGET_ELEMENTWISE} for {', '.join(sorted(ELEMENTWISE))}; {IO_TARGET} for the others); "
        f"misses: the targets missed, '-' none, '?' not measured. {missing_any} of {len(rows)} method(s) miss one; "
        "see where their time goes with --profile METHOD."
    )


if __name__ == "__main__":
    main()
