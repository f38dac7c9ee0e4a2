"""Run many `evomerge merge` invocations in ONE process of the main venv.

    .venv/bin/python tests/parity/evomerge_driver.py JOBS.json RESULTS.json

Each job invokes the real CLI entry point (`flows.cli:app`, what `.venv/bin/evomerge` runs) with
`merge RECIPE OUT --force --quiet [ARGS]` through typer's CliRunner, so imports are paid once. test_parity.py
checks one recipe against a separate `evomerge merge` process. RESULTS.json as for mergekit_driver.py.
"""

from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from typer.testing import CliRunner  # noqa: E402

from flows.cli import app  # noqa: E402


def main(jobs_path: str, results_path: str) -> None:
    with open(jobs_path, encoding="utf-8") as handle:
        jobs = json.load(handle)
    runner = CliRunner()
    results = {}
    for job in jobs:
        start = time.perf_counter()
        result = runner.invoke(app, ["merge", job["recipe"], job["out"], "--force", "--quiet", *job.get("args", [])])
        ok = result.exit_code == 0
        error = None
        if not ok:
            error = (result.output or "").strip() or repr(result.exception)
        entry = {"ok": ok, "error": error, "seconds": round(time.perf_counter() - start, 3)}
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            import traceback

            entry["traceback"] = "".join(traceback.format_exception(result.exception))
        results[job["id"]] = entry
    with open(results_path, "w", encoding="utf-8") as handle:
        json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main(*sys.argv[1:3])
