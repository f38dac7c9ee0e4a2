"""Run many mergekit merges in ONE process (runs inside .venv-mergekit, not the main venv).

    .venv-mergekit/bin/python tests/parity/mergekit_driver.py JOBS.json RESULTS.json

JOBS.json: a list of {"id", "recipe", "out", "copy_tokenizer", "random_seed", "multi"}. Each job does exactly what
`mergekit-yaml RECIPE OUT [--no-copy-tokenizer] [--random-seed N] --quiet` does (mergekit/scripts/run_yaml.py:
parse the YAML text, MergeOptions from the flags, run_merge with the original text as config_source), so
the per-process import cost (~5 s) is paid once. A "multi" job is a multi-document recipe, run as
`mergekit-multi` runs it. test_parity.py checks one recipe against the real CLI.
RESULTS.json: {id: {"ok": bool, "error": str | null, "seconds": float}}.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import traceback

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import yaml  # noqa: E402
from mergekit.config import MergeConfiguration  # noqa: E402
from mergekit.merge import run_merge  # noqa: E402
from mergekit.options import MergeOptions  # noqa: E402


def run_job(job: dict) -> None:
    with open(job["recipe"], encoding="utf-8") as handle:
        config_source = handle.read()
    options = MergeOptions(
        copy_tokenizer=job.get("copy_tokenizer", True),
        random_seed=job.get("random_seed"),
        quiet=True,
    )
    options.apply_global_options()
    if job.get("multi"):
        run_multi_job(config_source, job["out"], options)
        return
    config = MergeConfiguration.model_validate(yaml.safe_load(config_source))
    run_merge(config, job["out"], options=options, config_source=config_source)


def run_multi_job(config_source: str, out: str, options: MergeOptions) -> None:
    """What `mergekit-multi RECIPE --intermediate-dir OUT.intermediates --out-path OUT --no-lazy` does
    (mergekit/scripts/multimerge.py). Without an unnamed document, the last document's result is the output."""
    from mergekit.graph import Executor
    from mergekit.scripts.multimerge import load_config, make_tasks

    intermediate_dir = out + ".intermediates"
    shutil.rmtree(intermediate_dir, ignore_errors=True)
    os.makedirs(intermediate_dir)
    configs, dependencies = load_config(config_source, intermediate_dir)
    final = None in configs
    tasks = make_tasks(configs, dependencies, options, intermediate_dir, out if final else None, lazy=False)
    Executor(tasks, math_device="cpu", storage_device="cpu").execute()
    if not final:
        last = [doc for doc in yaml.safe_load_all(config_source) if doc][-1]["name"]
        shutil.copytree(os.path.join(intermediate_dir, last), out)
    shutil.rmtree(intermediate_dir)


def main(jobs_path: str, results_path: str) -> None:
    with open(jobs_path, encoding="utf-8") as handle:
        jobs = json.load(handle)
    results = {}
    for job in jobs:
        start = time.perf_counter()
        try:
            run_job(job)
            results[job["id"]] = {"ok": True, "error": None}
        except Exception as error:  # noqa: BLE001 - every failure is reported per job
            detail = "".join(traceback.format_exception_only(type(error), error)).strip()
            results[job["id"]] = {"ok": False, "error": detail, "traceback": traceback.format_exc()}
        results[job["id"]]["seconds"] = round(time.perf_counter() - start, 3)
    with open(results_path, "w", encoding="utf-8") as handle:
        json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main(*sys.argv[1:3])
