"""Loads an evomerge task's held-out JSONL from the `data/` folder beside this file.

lm-eval resolves `dataset_kwargs: {data_files: ...}` against the working directory, so the lm_eval CLI
would only find the data when run from one folder. A `custom_dataset` function resolves the path itself.
The JSONL is read with the standard library and wrapped with `Dataset.from_list`, so nothing touches the
Hugging Face hub or the datasets cache.
"""

from __future__ import annotations

import json
from pathlib import Path

import datasets

DATA_DIR = Path(__file__).resolve().parent / "data"


def load_held_out_split(evomerge_data_file: str, **_metadata: object) -> dict[str, datasets.Dataset]:
    """The `test` split lm-eval asks for; extra keyword arguments are lm-eval's task metadata."""
    path = DATA_DIR / evomerge_data_file
    with path.open(encoding="utf-8") as lines:
        records = [json.loads(line) for line in lines if line.strip()]
    return {"test": datasets.Dataset.from_list(records, split=datasets.Split.TEST)}
