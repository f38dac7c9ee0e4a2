"""Where the decoder layers are, discovered from tensor names rather than a hand-kept list per family.

Hugging Face decoders name layer tensors `<prefix>.<N>.<suffix>` with prefix ending in `layers` (Llama,
Mistral, Qwen, Gemma, Phi-3) or `h` (GPT-2). Everything else (embeddings, final norm, lm_head) is a
non-layer tensor. Mergekit evaluates per-layer gradients at position t = layer / (layers - 1); non-layer
tensors before the layers get t = 0 and those after get t = 1.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from tasks.errors import ModelMismatchError

LAYER_PATTERN = re.compile(r"^(?P<prefix>(?:.*\.)?(?:layers|h|blocks))\.(?P<index>\d+)\.(?P<suffix>.+)$")
LAYER_COUNT_KEYS = ("num_hidden_layers", "n_layer", "num_layers")
_POST_LAYER_HINTS = ("lm_head", "norm.", "ln_f", "final_layernorm", "norm_f", "score")


@dataclass(frozen=True)
class LayerName:
    prefix: str
    index: int
    suffix: str

    def at(self, index: int) -> str:
        return f"{self.prefix}.{index}.{self.suffix}"


def parse_layer_name(name: str) -> LayerName | None:
    match = LAYER_PATTERN.match(name)
    if match is None:
        return None
    return LayerName(match["prefix"], int(match["index"]), match["suffix"])


def layer_count(config: dict[str, Any], tensor_names: list[str], reference: str) -> int:
    """Number of decoder layers: from config.json, checked against the tensors actually present."""
    indices = {layer.index for name in tensor_names if (layer := parse_layer_name(name)) is not None}
    from_tensors = max(indices) + 1 if indices else 0
    declared = next((config[key] for key in LAYER_COUNT_KEYS if isinstance(config.get(key), int)), None)
    text_config = config.get("text_config")
    if declared is None and isinstance(text_config, dict):
        declared = next((text_config[k] for k in LAYER_COUNT_KEYS if isinstance(text_config.get(k), int)), None)
    if declared is not None and declared != from_tensors:
        raise ModelMismatchError(
            f"model {reference!r}: config.json declares {declared} layers but its tensors hold {from_tensors}"
        )
    return from_tensors


def is_post_layer(name: str) -> bool:
    """Whether a non-layer tensor sits after the decoder layers (final norm, lm_head)."""
    return any(hint in name for hint in _POST_LAYER_HINTS) and "embed" not in name


def architecture_of(config: dict[str, Any]) -> str:
    architectures = config.get("architectures") or []
    return str(architectures[0]) if architectures else str(config.get("model_type", "unknown"))
