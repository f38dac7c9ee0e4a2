"""Resolve a model reference to a local snapshot: a local directory, a demo-zoo name, or a Hugging Face
repo id.

A hub reference goes through `huggingface_hub.snapshot_download`, so its cache layout, revisions and
`HF_HUB_OFFLINE=1` behave as users of the hub expect; only weight, config and tokenizer files are
fetched (safetensors only: pickle checkpoints are never downloaded).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from tasks.errors import EvomergeError
from tasks.merge.tensor_io import ModelSource

ZOO_PREFIX = "zoo:"
HUB_PATTERNS = ["*.safetensors", "*.json", "tokenizer.model", "*.txt", "*.jinja"]
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?$")


@dataclass(frozen=True)
class ResolvedModel:
    reference: str
    path: Path
    content_sha256: str


def _zoo_path(name: str, zoo_dir: Path | None) -> Path:
    from tasks.zoo import default_zoo_dir

    root = zoo_dir or default_zoo_dir()
    path = root / name
    if not (path / "config.json").exists():
        raise EvomergeError(
            f"zoo model {name!r} not found in {root}; build the zoo with `evomerge zoo build --out {root}`"
        )
    return path


def _hub_snapshot(reference: str, cache_dir: Path | None) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    repo_id, _, revision = reference.partition("@")
    offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
    try:
        path = snapshot_download(
            repo_id,
            revision=revision or None,
            cache_dir=cache_dir,
            allow_patterns=HUB_PATTERNS,
            local_files_only=offline,
        )
    except LocalEntryNotFoundError:
        raise EvomergeError(
            f"model {reference!r} is not in the Hugging Face cache and HF_HUB_OFFLINE=1 forbids downloading it"
        ) from None
    except (HfHubHTTPError, OSError) as error:
        raise EvomergeError(f"model {reference!r}: download from the Hugging Face hub failed: {error}") from None
    return Path(path)


def resolve_model_path(
    reference: str, *, base_dir: Path | None = None, zoo_dir: Path | None = None, cache_dir: Path | None = None
) -> Path:
    if reference.startswith(ZOO_PREFIX):
        return _zoo_path(reference.removeprefix(ZOO_PREFIX), zoo_dir)
    candidates = [Path(reference).expanduser()]
    if base_dir is not None and not Path(reference).is_absolute():
        candidates.append(base_dir / reference)
    for candidate in candidates:
        if candidate.is_dir():
            return candidate.resolve()
    if _REPO_ID.match(reference) and not reference.startswith((".", "/")):
        return _hub_snapshot(reference, cache_dir)
    raise EvomergeError(f"model {reference!r}: no such directory, zoo name (zoo:NAME) or Hugging Face repo id")


def download_model(
    reference: str, *, base_dir: Path | None = None, zoo_dir: Path | None = None, cache_dir: Path | None = None
) -> ResolvedModel:
    """Local snapshot of `reference` with its content hash (a parent's identity for caches and lineage)."""
    path = resolve_model_path(reference, base_dir=base_dir, zoo_dir=zoo_dir, cache_dir=cache_dir)
    return ResolvedModel(reference, path, ModelSource(reference, path).content_sha256())
