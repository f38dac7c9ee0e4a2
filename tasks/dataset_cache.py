"""Put a Hugging Face dataset into the local datasets cache from files, so a task that names it on the hub
(lm-eval's `gsm8k`: `dataset_path: openai/gsm8k`, `dataset_name: main`) loads it offline, untouched.

With `HF_DATASETS_OFFLINE=1` the `datasets` library answers `load_dataset("openai/gsm8k", "main")` from
its cache: the newest `<cache>/openai___gsm8k/main/<version>/<hash>/` holding a `dataset_info.json` and one
Arrow file per split, which is what it writes itself after a download. This module writes exactly that
from JSONL (or JSON, CSV, Parquet) files a user has: a mirror inside a firewall, a copy from another
machine, or the demo's own small files. Both the search and the `lm_eval` CLI then read the same rows
through the task's own YAML (prompt template, filters, metrics).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tasks.errors import EvaluationError

_READERS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}


@dataclass(frozen=True)
class PrefilledDataset:
    directory: Path
    rows: dict[str, int]


def datasets_cache_dir() -> Path:
    """Where `datasets` looks: `HF_DATASETS_CACHE`, else `HF_HOME/datasets`, else ~/.cache/huggingface."""
    import datasets.config

    return Path(datasets.config.HF_DATASETS_CACHE)


def prefill_dataset(
    repo_id: str,
    config_name: str | None,
    split_files: Mapping[str, Path],
    cache_dir: Path | None = None,
) -> PrefilledDataset:
    """Write `split_files` (split name -> file) into the datasets cache as `repo_id`'s `config_name`.

    The entry's hash is the files' content hash, so prefilling the same files again is a no-op and other
    files make a newer entry (the one `datasets` loads). Written to a temporary folder and renamed, so an
    interrupted prefill never leaves an entry that looks complete."""
    import datasets

    if not split_files:
        raise EvaluationError(f"{repo_id}: no split files to prefill the datasets cache with")
    for split, path in split_files.items():
        if not Path(path).is_file():
            raise EvaluationError(f"{repo_id}: split {split!r}: no such file: {path}")
        if Path(path).suffix not in _READERS:
            raise EvaluationError(
                f"{repo_id}: split {split!r}: {path} is not one of {', '.join(sorted(_READERS))} files"
            )
    cache_dir = Path(cache_dir) if cache_dir else datasets_cache_dir()
    config = config_name or "default"
    dataset_name = repo_id.split("/")[-1]
    digest = hashlib.sha256()
    for split in sorted(split_files):
        digest.update(split.encode() + b"\0" + Path(split_files[split]).read_bytes() + b"\0")
    relative = "___".join([*repo_id.split("/")[:-1], _snake_case(dataset_name)])
    target = cache_dir / relative / config / "0.0.0" / digest.hexdigest()[:16]
    if (target / "dataset_info.json").is_file():
        info = datasets.DatasetInfo.from_directory(str(target))
        return PrefilledDataset(target, {name: split.num_examples for name, split in (info.splits or {}).items()})
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    splits = datasets.SplitDict(dataset_name=dataset_name)
    features = None
    rows = {}
    for split, path in split_files.items():
        reader = _READERS[Path(path).suffix]
        table = datasets.load_dataset(
            reader, data_files={split: str(path)}, split=split, cache_dir=str(partial / "_read")
        )
        if features is not None and table.features != features:
            raise EvaluationError(f"{repo_id}: split {split!r} has other columns than the others: {table.features}")
        features = table.features
        writer = datasets.arrow_writer.ArrowWriter(
            features=features, path=str(partial / f"{_snake_case(dataset_name)}-{split}.arrow")
        )
        writer.write_table(table.data.table)
        count, size = writer.finalize()
        writer.close()
        splits.add(datasets.SplitInfo(name=split, num_bytes=size, num_examples=count, dataset_name=dataset_name))
        rows[split] = count
    shutil.rmtree(partial / "_read")
    info = datasets.DatasetInfo(
        dataset_name=dataset_name, config_name=config, version="0.0.0", splits=splits, features=features
    )
    info.builder_name = "parquet"
    info.write_to_directory(str(partial))
    os.replace(partial, target)
    return PrefilledDataset(target, rows)


def _snake_case(name: str) -> str:
    from datasets.naming import camelcase_to_snakecase

    return str(camelcase_to_snakecase(name))
