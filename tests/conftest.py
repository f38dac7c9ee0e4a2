"""Shared fixtures. Models here are real safetensors directories; nothing is mocked."""

from __future__ import annotations

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
