"""evomerge vs mergekit 0.1.5: wall time, CPU time and peak RSS of `evomerge merge` and `mergekit-yaml` on the
same recipes over three seeded Llama checkpoints (~374M parameters each, bfloat16, ~748 MB), next to the I/O
bound of each merge (reading every input byte from the page cache + writing and fsyncing the output bytes).
Prints; asserts nothing.

    .venv/bin/python tests/benchmarks/merge_vs_mergekit.py [--methods linear ties ...] [--runs 3]
    .venv/bin/python tests/benchmarks/merge_vs_mergekit.py --quick        # ~40M-parameter models, 1 run
    .venv/bin/python tests/benchmarks/merge_vs_mergekit.py --device cuda  # the math on a GPU (mergekit --cuda)

The models (a random `base` and two "fine-tunes" `a`, `b` = base + small seeded per-tensor deltas) are written
tensor by tensor with safetensors + a LlamaConfig (no model is instantiated), under --models-dir, and reused
when present. Each merge is its own process (both tools pay their import cost), timed from the outside with
os.wait4 (user+sys CPU of the child) and GNU time %M (its peak RSS); the two tools alternate run by run. The page
cache is warmed before the runs, and `sync` runs after each merge so that the previous output's dirty pages
are not written back during the next merge. Threads: whatever each tool uses by default on this machine.

EVOMERGE_COMMAND overrides how evomerge is started (default .venv/bin/evomerge; e.g. "python3 -m flows.cli" on a
machine without the venv), EVOMERGE_MERGEKIT_VENV where mergekit-yaml lives. Without GNU time the RSS column
reads nan.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time
import zlib
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
DELTA_SCALE = {"a": 0.35, "b": 0.30}
IO_CHUNK = 64 << 20

# ~374M parameters: 2 * 32000 * 1024 (untied embeddings) + 24 * (4 * 1024^2 + 3 * 1024 * 2816) + norms
FULL = dict(vocab_size=32000, hidden_size=1024, intermediate_size=2816, num_hidden_layers=24, num_attention_heads=16)
# ~37M parameters
QUICK = dict(vocab_size=24000, hidden_size=512, intermediate_size=1408, num_hidden_layers=4, num_attention_heads=8)


# ------------------------------------------------------------------------------------------------ models
def _shapes(cfg: dict[str, int]) -> list[tuple[str, tuple[int, ...]]]:
    h, i, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    out: list[tuple[str, tuple[int, ...]]] = [("model.embed_tokens.weight", (v, h))]
    for n in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{n}."
        out += [
            (p + "input_layernorm.weight", (h,)),
            (p + "self_attn.q_proj.weight", (h, h)),
            (p + "self_attn.k_proj.weight", (h, h)),
            (p + "self_attn.v_proj.weight", (h, h)),
            (p + "self_attn.o_proj.weight", (h, h)),
            (p + "post_attention_layernorm.weight", (h,)),
            (p + "mlp.gate_proj.weight", (i, h)),
            (p + "mlp.up_proj.weight", (i, h)),
            (p + "mlp.down_proj.weight", (h, i)),
        ]
    out += [("model.norm.weight", (h,)), ("lm_head.weight", (v, h))]
    return out


def _gen(*parts: object) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(zlib.crc32("|".join(map(str, parts)).encode()))
    return g


def build_models(root: Path, cfg: dict[str, int], seed: int) -> dict[str, Path]:
    """base, a, b under root/<tag>/; reused when config.json + model.safetensors exist with the same config."""
    from transformers import LlamaConfig

    tag = "llama-h{hidden_size}-i{intermediate_size}-l{num_hidden_layers}-v{vocab_size}".format(**cfg) + f"-s{seed}"
    dirs = {name: root / tag / name for name in ("base", "a", "b")}
    stamp = root / tag / "built.json"
    if stamp.exists() and all((d / "model.safetensors").exists() for d in dirs.values()):
        return dirs
    start = time.perf_counter()
    tensors: dict[str, dict[str, torch.Tensor]] = {name: {} for name in dirs}
    n_params = 0
    for name, shape in _shapes(cfg):
        n_params += int(torch.Size(shape).numel())
        if len(shape) == 1:  # RMSNorm weights: ones
            base = torch.ones(shape)
            spread = 0.05
        else:
            base = torch.randn(shape, generator=_gen(seed, "base", name)).mul_(0.02)
            spread = 0.02
        tensors["base"][name] = base.to(torch.bfloat16)
        for variant, scale in DELTA_SCALE.items():
            noise = torch.randn(shape, generator=_gen(seed, variant, name))
            tensors[variant][name] = noise.mul_(scale * spread).add_(base).to(torch.bfloat16)
            del noise
        del base
    config = LlamaConfig(
        **cfg,
        num_key_value_heads=cfg["num_attention_heads"],
        max_position_embeddings=2048,
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=2,
    )
    config.architectures = ["LlamaForCausalLM"]
    config.dtype = torch.bfloat16
    for name, d in dirs.items():
        d.mkdir(parents=True, exist_ok=True)
        save_file(tensors[name], str(d / "model.safetensors"), metadata={"format": "pt"})
        config.save_pretrained(d)
        tensors[name] = {}
    stamp.write_text(json.dumps({"params": n_params, **cfg}))
    print(
        f"built 3 models of {n_params / 1e6:.1f}M parameters in {time.perf_counter() - start:.1f} s under {root / tag}"
    )
    # transformers must load what we wrote
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(dirs["base"], dtype=torch.bfloat16)
    loaded = sum(p.numel() for p in model.parameters())
    assert loaded == n_params, (loaded, n_params)
    print(f"transformers loads {dirs['base']}: {type(model).__name__}, {loaded / 1e6:.1f}M parameters")
    del model
    return dirs


# ------------------------------------------------------------------------------------------------ recipes
def recipe_for(method: str, m: dict[str, str], layers: int) -> dict[str, Any]:
    base, a, b = m["base"], m["a"], m["b"]
    dense2 = [{"model": base}, {"model": a, "parameters": {"weight": 0.5}}, {"model": b, "parameters": {"weight": 0.5}}]
    sparse2 = [
        {"model": base},
        {"model": a, "parameters": {"weight": 0.5, "density": 0.5}},
        {"model": b, "parameters": {"weight": 0.5, "density": 0.5}},
    ]
    r: dict[str, Any]
    if method == "linear":
        r = {
            "models": [
                {"model": base, "parameters": {"weight": 0.2}},
                {"model": a, "parameters": {"weight": 0.4}},
                {"model": b, "parameters": {"weight": 0.4}},
            ]
        }
    elif method == "task_arithmetic":
        r = {"base_model": base, "models": dense2}
    elif method in ("ties", "dare_ties", "dare_linear", "breadcrumbs", "breadcrumbs_ties", "della", "della_linear"):
        r = {"base_model": base, "models": sparse2}
    elif method == "sce":
        r = {
            "base_model": base,
            "models": [{"model": base}, {"model": a}, {"model": b}],
            "parameters": {"select_topk": 0.5},
        }
    elif method == "model_stock":
        r = {"base_model": base, "models": [{"model": base}, {"model": a}, {"model": b}]}
    elif method == "karcher":
        r = {"models": [{"model": base}, {"model": a}, {"model": b}]}
    elif method in ("multislerp", "nuslerp"):
        r = {"base_model": base, "models": dense2[1:]}
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


# ------------------------------------------------------------------------------------------------ main
def main() -> None:
    sys.path.insert(0, str(ROOT))
    import tasks.merge.methods  # noqa: F401  (fills the registry)
    from tasks.merge.registry import METHODS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=sorted(METHODS))
    parser.add_argument("--runs", type=int, default=None, help="runs per tool and method (default 3; 1 with --quick)")
    parser.add_argument("--models-dir", type=Path, default=Path("/tmp/evomerge-bench-models"))
    parser.add_argument("--work", type=Path, default=WORK)
    parser.add_argument("--quick", action="store_true", help="~40M-parameter models and 1 run")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--keep-logs", action="store_true")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda: evomerge --device cuda, mergekit --cuda")
    args = parser.parse_args()
    runs = args.runs or (1 if args.quick else 3)
    cfg = QUICK if args.quick else FULL
    work: Path = args.work
    work.mkdir(parents=True, exist_ok=True)

    dirs = build_models(args.models_dir, cfg, args.seed)
    paths = {k: str(v.resolve()) for k, v in dirs.items()}
    print(f"evomerge: {shlex.join(EVOMERGE)}\nmergekit: {MERGEKIT}\nruns per tool: {runs}, cpus: {os.cpu_count()}")
    if args.device != "cpu":
        print(f"device: {args.device} ({torch.cuda.get_device_name(args.device)})")
    on_device = {"evomerge": ["--device", args.device], "mergekit": ["--cuda"]} if args.device != "cpu" else {}

    buf = bytearray(IO_CHUNK)
    all_inputs = [f for d in paths.values() for f in weight_files(d)]
    read_all(all_inputs, buf)  # warm the page cache
    read_all(all_inputs, buf)

    rows = []
    for method in args.methods:
        recipe = recipe_for(method, paths, cfg["num_hidden_layers"])
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

    def med(res: list[dict[str, Any]], key: str) -> float:
        return statistics.median(r[key] for r in res) if res else float("nan")

    def ratio(x: float, y: float) -> float:
        return x / y if y and y == y else float("nan")

    print()
    label = "quick (~37M params)" if args.quick else "full (~374M params)"
    print(
        f"evomerge vs mergekit 0.1.5, {label}, bf16, math on {args.device}, median of {runs} run(s); "
        "times in s, RSS in MiB, bytes in MB"
    )
    header = (
        f"{'method':16s} {'ev wall':>8s} {'mk wall':>8s} {'ev/mk':>6s} {'ev CPU':>7s} {'mk CPU':>7s} "
        f"{'ev RSS':>7s} {'mk RSS':>7s} {'ev/mk':>6s} {'in MB':>6s} {'out MB':>7s} {'read':>5s} {'write':>5s} "
        f"{'I/O':>5s} {'ev/IO':>6s}"
    )
    print(header)
    print("-" * len(header))
    for method, results, in_bytes, out_bytes, t_read, t_write, errors in rows:
        ev, mk = results["evomerge"], results["mergekit"]
        io = t_read + t_write
        ev_wall, mk_wall = med(ev, "wall"), med(mk, "wall")
        ev_rss, mk_rss = med(ev, "rss") / 2**20, med(mk, "rss") / 2**20
        print(
            f"{method:16s} {ev_wall:8.2f} {mk_wall:8.2f} {ratio(ev_wall, mk_wall):6.2f} {med(ev, 'cpu'):7.2f} "
            f"{med(mk, 'cpu'):7.2f} {ev_rss:7.0f} {mk_rss:7.0f} {ratio(ev_rss, mk_rss):6.2f} {in_bytes / 1e6:6.0f} "
            f"{out_bytes / 1e6:7.0f} {t_read:5.2f} {t_write:5.2f} {io:5.2f} {ratio(ev_wall, io):6.1f}"
            + ("  (errors: see stderr)" if errors else "")
        )
    print(
        "I/O = read of every input safetensors byte from the page cache (64 MiB reused buffer) + write and fsync "
        "of the output bytes; passthrough reads only part of its inputs, so its I/O bound is an overestimate."
    )


if __name__ == "__main__":
    main()
