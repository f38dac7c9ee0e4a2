"""The `evomerge` command line. It parses, calls a flow or a pure function, and reports; no logic here.

User errors (`EvomergeError`) become one readable message and exit code 2; a traceback means a bug.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

import flows  # noqa: F401  (sets Prefect/HF defaults before anything imports them)
from flows.paths import configs_dir
from tasks.errors import EvomergeError

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

app = typer.Typer(
    help="Breed language models from existing ones.", no_args_is_help=True, pretty_exceptions_enable=False
)
zoo_app = typer.Typer(help="The demo zoo: tiny models built here, for demos and tests.", no_args_is_help=True)
app.add_typer(zoo_app, name="zoo")
datasets_app = typer.Typer(
    help="Hugging Face datasets, offline: fill the local cache from files.", no_args_is_help=True
)
app.add_typer(datasets_app, name="datasets")
console = Console()
errors = Console(stderr=True)
DEMO_CONFIG = configs_dir() / "searches" / "demo.yaml"


def _fail(error: EvomergeError) -> None:
    errors.print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def _human_bytes(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if count < 1000 or unit == "TB":
            return f"{count:.1f} {unit}" if unit != "B" else f"{int(count)} B"
        count /= 1000
    return f"{count:.1f} TB"


@app.command()
def merge(
    recipe: Annotated[
        Path, typer.Argument(help="mergekit-format recipe YAML (one document, or several: mergekit-multi)")
    ],
    out: Annotated[Path | None, typer.Argument(help="output model directory")] = None,
    force: Annotated[bool, typer.Option(help="replace OUT if it exists")] = False,
    quiet: Annotated[bool, typer.Option(help="no progress bar")] = False,
    device: Annotated[str, typer.Option(help="where the math runs: cpu or cuda")] = "cpu",
    plan: Annotated[bool, typer.Option("--plan", help="check the recipe and print the cost; merge nothing")] = False,
    check_finite: Annotated[bool, typer.Option(help="refuse parents holding NaN or inf")] = False,
    allow_pickle: Annotated[bool, typer.Option(help="read pickle .bin checkpoints (runs code from them)")] = False,
    random_seed: Annotated[int, typer.Option(help="seed of DARE / DELLA masks (per tensor name)")] = 0,
    shard_bytes: Annotated[int, typer.Option(help="largest output shard, in bytes")] = 5_000_000_000,
    sha256: Annotated[
        bool, typer.Option("--sha256", help="print the merged tensors' sha256 (as the search records it)")
    ] = False,
    document: Annotated[
        str | None,
        typer.Option(
            help="multi-document recipe: the document written to OUT (default: the unnamed one, else the last)"
        ),
    ] = None,
    intermediates: Annotated[
        str,
        typer.Option(help="multi-document recipe: where earlier documents' results live: auto, memory or disk"),
    ] = "auto",
) -> None:
    """Merge the models of RECIPE into OUT, like `mergekit-yaml RECIPE OUT` (or `mergekit-multi` for a file of
    several documents separated by `---`)."""
    # torch's OpenMP workers would otherwise spin between parallel regions and starve the writer thread
    # (before torch is imported: OpenMP reads it once)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from tasks.download import resolve_model_path
    from tasks.merge.engine import check_device
    from tasks.merge.multi_merge import planned_in_scratch, write_recipe_set
    from tasks.merge.recipe_set import load_recipe_set

    try:
        if out is None and not plan:
            raise EvomergeError("missing OUT: where to write the merged model (or pass --plan)")
        if intermediates not in ("auto", "memory", "disk"):
            raise EvomergeError(f"--intermediates {intermediates!r}: use auto, memory or disk")
        check_device(device)
        recipe_set = load_recipe_set(recipe)
        output = recipe_set.output(document)
        if out is not None and out.exists() and not force and not plan:
            raise EvomergeError(f"{out} already exists; pass --force to replace it")
        base_dir = recipe.resolve().parent

        def resolve(name: str) -> Path:
            return resolve_model_path(name, base_dir=base_dir)

        options = {"allow_pickle": allow_pickle, "check_finite": check_finite, "random_seed": random_seed}
        if plan:
            with planned_in_scratch(recipe_set, output, resolve, **options) as planned:
                for item in planned:
                    _print_plan(recipe, item, shard_bytes, recipe_set.is_multi)
            return
        assert out is not None
        counts: list[int] = []
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[written]}"),
            TimeRemainingColumn(),
            console=errors,
            disable=quiet,
        ) as progress:
            bar = progress.add_task("merging", total=None, written="0 B")
            written = [0]

            def planned(items: list[object]) -> None:
                counts.extend(len(item.plan.jobs) for item in items)  # type: ignore[attr-defined]
                progress.update(bar, total=sum(counts))

            def advance(name: str, size: int) -> None:
                written[0] += size
                progress.update(bar, advance=1, written=_human_bytes(written[0]))

            def starting(item: object, in_memory: bool) -> None:
                label = getattr(getattr(item, "document", None), "label", "")
                if recipe_set.is_multi:
                    progress.update(bar, description=f"merging {label}" + (" (in memory)" if in_memory else ""))

            digest = write_recipe_set(
                recipe_set,
                out,
                resolve,
                output=output,
                force=force,
                placement=intermediates,  # type: ignore[arg-type]
                shard_bytes=shard_bytes,
                device=device,
                on_tensor=advance,
                on_planned=planned,
                on_document=starting,
                hash_tensors=sha256,
                **options,  # type: ignore[arg-type]
            )
        if not quiet:
            what = (
                f"{len(counts)} documents, {sum(counts)} tensors" if recipe_set.is_multi else f"{sum(counts)} tensors"
            )
            console.print(f"wrote {out} ({what})")
        if digest is not None:
            console.print(f"sha256 {digest}")
    except EvomergeError as error:
        _fail(error)


def _print_plan(recipe: Path, item: object, shard_bytes: int, multi: bool) -> None:
    """One document's check and cost, as `merge --plan` prints them."""
    from tasks.merge.estimate import estimate_plan
    from tasks.merge.multi_merge import IntermediateSource, PlannedDocument

    assert isinstance(item, PlannedDocument)
    merge_plan = item.plan
    cost = estimate_plan(merge_plan, shard_bytes)
    where = f"{recipe}: {item.document.label}" if multi else str(recipe)
    role = "" if not multi else (" -> OUT" if item.intermediate is None else " (intermediate)")
    console.print(
        f"[bold]{where}[/]{role}: {merge_plan.recipe.merge_method} over {len(merge_plan.sources)} model(s): compatible",
        soft_wrap=True,
    )
    for name, source in merge_plan.sources.items():
        origin = "the result of an earlier document" if isinstance(source, IntermediateSource) else source.path
        console.print(f"  {name}: {origin} ({len(source.tensors)} tensors)", soft_wrap=True)
    console.print(f"  output tensors: {cost.tensors}, layers: {merge_plan.output_layers}")
    console.print(f"  to read: {_human_bytes(cost.bytes_to_read)}, to write: {_human_bytes(cost.bytes_to_write)}")
    console.print(f"  predicted peak memory: {_human_bytes(cost.peak_bytes)}, time: ~{cost.seconds:.1f} s (I/O bound)")


def _ensure_zoo(target: Path, seed: int = 0, rebuild: bool = False) -> object:
    """Build (or reuse) the zoo with a progress bar; training is minutes on 2 CPU cores. Says loudly when
    its weights are not the recorded ones (the demo's numbers were measured on those)."""
    from rich.progress import TimeElapsedColumn

    from tasks.zoo import build_zoo, ensure_zoo, rich_progress_callback
    from tasks.zoo.build import logger as build_logger
    from tasks.zoo.expected_weights import describe_weight_check

    build_logger.disabled = True  # the build logs the same warning; printed here once, in red
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=errors
    ) as progress:
        report = rich_progress_callback(progress, "zoo")
        if rebuild:
            manifest = build_zoo(target, seed=seed, progress=report)
        else:
            manifest = ensure_zoo(target, seed=seed, progress=report)
    build_logger.disabled = False
    warning = describe_weight_check(manifest.weight_check)
    if warning:
        errors.print(f"[bold red]warning:[/] {warning}", highlight=False, soft_wrap=True)
    return manifest


@zoo_app.command("build")
def zoo_build(
    out: Annotated[Path | None, typer.Option(help="zoo directory (default: EVOMERGE_ZOO_DIR or ./zoo)")] = None,
    seed: Annotated[int, typer.Option(help="seed of every random choice in the zoo")] = 0,
    force: Annotated[bool, typer.Option(help="rebuild even if a zoo with this seed exists")] = False,
) -> None:
    """Train the demo zoo: a tokenizer, a tiny Llama base and one expert per skill (minutes on 2 CPU cores)."""
    from tasks.zoo import default_zoo_dir

    target = out or default_zoo_dir()
    try:
        manifest = _ensure_zoo(target, seed, rebuild=force)
    except EvomergeError as error:
        _fail(error)
    console.print(f"zoo ready in {target}", soft_wrap=True)
    _print_zoo_table(manifest)


def _print_zoo_table(manifest: object) -> None:
    from rich.table import Table

    from tasks.zoo import ZooManifest

    assert isinstance(manifest, ZooManifest)
    table = Table(title="demo zoo: exact match on held-out prompts (search split)")
    table.add_column("model")
    skills = list(manifest.skills)
    for skill in skills:
        table.add_column(skill, justify="right")
    for name, entry in manifest.models.items():
        table.add_row(name, *(f"{entry.accuracy.get(skill, float('nan')):.3f}" for skill in skills))
    console.print(table)


RunnerName = Annotated[
    str | None,
    typer.Option("--runner", help="where candidates are scored: local (this process) or dask (default: the config's)"),
]
DaskAddress = Annotated[
    str | None,
    typer.Option("--address", help="dask: an existing scheduler, tcp://HOST:PORT (default: a local cluster)"),
]
DaskWorkers = Annotated[int | None, typer.Option("--workers", min=1, help="dask: worker processes of a local cluster")]
ThreadsPerWorker = Annotated[int | None, typer.Option("--threads-per-worker", min=1, help="dask: threads per worker")]
GpusPerWorker = Annotated[
    int | None, typer.Option("--gpus-per-worker", min=0, help="dask: GPUs per worker (1: one worker per GPU)")
]


def _runner_overrides(
    runner: str | None, address: str | None, workers: int | None, threads: int | None, gpus: int | None
) -> dict[str, object] | None:
    """The --runner flags that were given, as `runner:` settings (an address or a worker count implies dask)."""
    if runner not in (None, "local", "dask"):
        _fail(EvomergeError(f"--runner {runner!r}: expected local or dask"))
    given = {
        "name": runner or ("dask" if address or workers or threads or gpus else None),
        "address": address,
        "workers": workers,
        "threads_per_worker": threads,
        "gpus_per_worker": gpus,
    }
    overrides = {key: value for key, value in given.items() if value is not None}
    return overrides or None


@app.command()
def search(
    config: Annotated[Path, typer.Argument(help="search YAML (see configs/searches/demo.yaml)")],
    out: Annotated[Path | None, typer.Option(help="output directory (default: runs/<name>)")] = None,
    zoo_dir: Annotated[Path | None, typer.Option(help="where zoo:NAME models live")] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="insist on continuing the search checkpointed in the output directory")
    ] = False,
    runner: RunnerName = None,
    address: DaskAddress = None,
    workers: DaskWorkers = None,
    threads_per_worker: ThreadsPerWorker = None,
    gpus_per_worker: GpusPerWorker = None,
) -> None:
    """Run the genetic search of CONFIG: a Prefect flow logged to MLflow; prints parents vs child.

    Rerunning the same command on the same output directory continues a stopped or killed search (on any
    runner: `--runner dask` scores a generation's candidates at once on Dask workers, same results)."""
    overrides = _runner_overrides(runner, address, workers, threads_per_worker, gpus_per_worker)
    from flows.preflight import check_search_config

    try:
        check_search_config(str(config))  # before the flow's seconds of imports
    except EvomergeError as error:
        _fail(error)
    from flows.report import print_search_report
    from flows.search import check_search_inputs
    from flows.search import search as search_flow

    try:
        check_search_inputs(str(config), str(out) if out else None, resume, runner=overrides)
        summary = search_flow(
            str(config),
            str(out) if out else None,
            str(zoo_dir) if zoo_dir else None,
            resume=resume,
            runner=overrides,
        )
    except EvomergeError as error:
        _fail(error)
    print_search_report(summary, console)


@datasets_app.command("prefill")
def datasets_prefill(
    repo_id: Annotated[str, typer.Argument(help="the dataset's hub name, as the task YAML's dataset_path says")],
    split: Annotated[list[str], typer.Option(help="SPLIT=FILE (.jsonl, .json, .csv, .parquet); repeat per split")],
    name: Annotated[str | None, typer.Option(help="the dataset config, as the task YAML's dataset_name says")] = None,
    cache_dir: Annotated[Path | None, typer.Option(help="default: HF_DATASETS_CACHE")] = None,
) -> None:
    """Put files into the datasets cache as REPO_ID, so lm-eval tasks that name it load it offline."""
    from tasks.dataset_cache import prefill_dataset

    try:
        files = {}
        for item in split:
            split_name, sep, file_name = item.partition("=")
            if not sep or not split_name or not file_name:
                raise EvomergeError(f"--split {item!r}: expected SPLIT=FILE, e.g. --split test=data/test.jsonl")
            files[split_name] = Path(file_name)
        prefilled = prefill_dataset(repo_id, name, files, cache_dir)
    except EvomergeError as error:
        _fail(error)
    rows = ", ".join(f"{split_name} {count}" for split_name, count in prefilled.rows.items())
    console.print(f"{repo_id} ({name or 'default'}): {rows} rows in {prefilled.directory}", soft_wrap=True)


@app.command()
def demo(
    out: Annotated[Path | None, typer.Option(help="output directory (default: runs/demo)")] = None,
) -> None:
    """Build the zoo if it is missing, then run the demo search (configs/searches/demo.yaml)."""
    from tasks.zoo import default_zoo_dir

    try:
        console.print(f"demo zoo: {default_zoo_dir()}", soft_wrap=True)
        _ensure_zoo(default_zoo_dir())
    except EvomergeError as error:
        _fail(error)
    search(
        DEMO_CONFIG,
        out,
        None,
        resume=False,
        runner=None,
        address=None,
        workers=None,
        threads_per_worker=None,
        gpus_per_worker=None,
    )


@app.command()
def serve(
    config: Annotated[Path, typer.Argument(help="search YAML the deployment runs")],
    name: Annotated[str | None, typer.Option(help="deployment name (default: the search's name)")] = None,
    cron: Annotated[
        str | None, typer.Option(help='schedule, e.g. "0 2 * * *" (02:00 every night); none: runs on demand')
    ] = None,
    timezone: Annotated[str, typer.Option(help="IANA time zone of the schedule and of the night's date")] = "UTC",
    nightly: Annotated[
        str, typer.Option(help="continue: one search, resumed each night; new: a new search per night")
    ] = "continue",
    evaluations_per_night: Annotated[
        int | None, typer.Option(help="continue: budget added each night (default: the config's budget)")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="output directory (default: runs/<name>)")] = None,
    zoo_dir: Annotated[Path | None, typer.Option(help="where zoo:NAME models live")] = None,
    runner: RunnerName = None,
    address: DaskAddress = None,
    workers: DaskWorkers = None,
    threads_per_worker: ThreadsPerWorker = None,
    gpus_per_worker: GpusPerWorker = None,
) -> None:
    """Serve the search as a Prefect deployment (no Docker, no work pool): scheduled runs, runs started
    from the UI, and retries of failed runs execute in this process until it is stopped. Needs a Prefect
    server (`make services`, then PREFECT_API_URL)."""
    from flows.preflight import check_search_config

    if not os.environ.get("PREFECT_API_URL"):
        _fail(EvomergeError("`evomerge serve` needs a Prefect server: run `make services` and export PREFECT_API_URL"))
    if nightly not in ("continue", "new"):
        _fail(EvomergeError(f"--nightly {nightly!r}: expected continue or new"))
    try:
        check_search_config(str(config.resolve()))  # before the flow's seconds of imports
    except EvomergeError as error:
        _fail(error)
    from flows.nightly import night_date
    from flows.search import check_search_inputs
    from flows.search import search as search_flow

    try:
        overrides = _runner_overrides(runner, address, workers, threads_per_worker, gpus_per_worker)
        loaded, _, _ = check_search_inputs(str(config.resolve()), str(out) if out else None, False, runner=overrides)
        from datetime import UTC, datetime

        night_date(datetime.now(UTC), timezone)  # a bad time zone fails here, not at 02:00
    except EvomergeError as error:
        _fail(error)
    from prefect.schedules import Cron

    search_flow.serve(
        name=name or loaded.name,
        schedules=[Cron(cron, timezone=timezone)] if cron else None,
        parameters={
            "config_path": str(config.resolve()),
            "output_dir": str(out.resolve()) if out else None,
            "zoo_dir": str(zoo_dir.resolve()) if zoo_dir else None,
            "nightly": nightly,
            "evaluations_per_night": evaluations_per_night,
            "timezone": timezone,
            "runner": overrides,
        },
        description=f"evomerge search {loaded.name} ({nightly}, {cron or 'on demand'} {timezone})",
        tags=["evomerge"],
    )


def _tracking_client(tracking_uri: str | None) -> MlflowClient:
    from mlflow.tracking import MlflowClient

    from flows.tracking import tracking_uri as default_uri

    return MlflowClient(tracking_uri or default_uri())


TrackingUri = Annotated[
    str | None, typer.Option(help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, else the local store)")
]


@app.command()
def lineage(
    run_id: Annotated[str, typer.Argument(help="MLflow run id of a candidate, or of a search (its winner)")],
    format: Annotated[str, typer.Option("--format", help="tree, json or dot (Graphviz)")] = "tree",
    tracking_uri: TrackingUri = None,
) -> None:
    """Print the family tree of a candidate: genetic parents back to generation 0, parent models with their
    content hashes, the recipe, the seed, the evomerge and library versions."""
    import json

    from flows.lineage import lineage_dot, lineage_tree, read_lineage

    if format not in ("tree", "json", "dot"):
        _fail(EvomergeError(f"--format {format!r}: expected tree, json or dot"))
    try:
        found = read_lineage(_tracking_client(tracking_uri), run_id)
    except EvomergeError as error:
        _fail(error)
    if format == "json":
        print(json.dumps(found.to_json(), indent=2))
    elif format == "dot":
        print(lineage_dot(found), end="")
    else:
        console.print(lineage_tree(found))
        console.print("recipe:", style="bold")
        console.print(found.recipe_yaml, highlight=False, markup=False)


@app.command()
def reproduce(
    run_id: Annotated[str, typer.Argument(help="MLflow run id of a candidate, or of a search (its winner)")],
    out: Annotated[Path, typer.Argument(help="output model directory (must not exist)")],
    zoo_dir: Annotated[Path | None, typer.Option(help="where zoo:NAME models live")] = None,
    tracking_uri: TrackingUri = None,
) -> None:
    """Rebuild a candidate from its MLflow record alone and check its tensors hash equals the recorded one."""
    from flows.reproduce import reproduce as rebuild

    try:
        result = rebuild(_tracking_client(tracking_uri), run_id, out, zoo_dir)
    except EvomergeError as error:
        _fail(error)
    console.print(
        f"rebuilt {result.lineage.candidate.candidate_id} into {result.out}: tensors sha256 {result.tensors_sha256} "
        "equals the recorded hash",
        soft_wrap=True,
    )


def main() -> None:
    app(prog_name="evomerge")


if __name__ == "__main__":
    sys.exit(main())
