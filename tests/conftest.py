"""Shared fixtures. Models here are real safetensors directories; nothing is mocked."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from tiny_models import make_tiny_llama  # noqa: E402


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three seeded 2-layer Llama models with identical layouts: `base`, `a`, `b`."""
    root = tmp_path_factory.mktemp("tiny-models")
    return {name: make_tiny_llama(root / name, seed) for name, seed in (("base", 0), ("a", 1), ("b", 2))}


@pytest.fixture(scope="session")
def zoo_dir() -> Path:
    """The full demo zoo (base, add, sort, reverse) in `default_zoo_dir()`, reused across sessions.

    `ensure_zoo` builds it (~2.5 min on 2 cores) only when it is missing, its seed, experts or recipe
    changed, or a weight file no longer matches its hash; a file lock makes parallel sessions build once.
    The models are loaded offline: nothing here may reach the Hugging Face hub.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    from tasks.zoo import default_zoo_dir, ensure_zoo

    directory = default_zoo_dir()
    ensure_zoo(directory)
    return directory
