"""Small seeded parent models for the mergekit parity suite.

Every layout is a real Hugging Face checkpoint written with `save_pretrained` (safetensors): a randomly
initialised `base` and "fine-tuned" variants `a`, `b`, `c` = base + small seeded per-tensor deltas, so task
vectors are meaningful and slerp sees tensors that are neither parallel nor orthogonal. Built from the main
venv's transformers; mergekit (its own venv) reads the same directories.

Layouts: Llama (untied), Mistral, Qwen2 (q/k/v biases), Gemma (tied), GPT-2 (Conv1D, `transformer.h.N`,
tied lm_head), all float32; Llama again in bfloat16, and with mixed float32/bfloat16/float16 parents.

Layouts with a tokenizer (Llama) also get `va` and `vb`: parents with their own vocabularies, for the
`tokenizer_source` / `tokenizer:` recipes. Their word-level vocabularies overlap the base's in part and in
another order, each adds the added tokens `<|im_start|>` and `<|im_end|>` (same settings, same order, so
mergekit's union gives them the same ids whatever order it visits the parents in), and `va` alone adds the
regular token `xa` (the only token a union appends from a parent's regular vocabulary: mergekit visits a
vocabulary in hash-map order, so two such tokens would get ids in random order). A shared token starts
from the base's row, a new one from seeded noise, then the usual per-tensor delta applies. Both carry the
same chat template (the base has none), for `chat_template: auto`.

Deltas are scaled per tensor: weight matrices move by ~35% of their own spread (cosine to the base ~0.94,
so slerp takes its spherical branch), norm vectors of ones move by ~0.02 (cosine > 0.9995, so slerp takes
its linear fallback). Variant `b` leaves the first layer's input norm untouched (a zero task vector: the
sign-0 / divisor-0 corner of TIES), and GPT-2's all-zero base biases exercise slerp's zero-norm guard.

    python tests/parity/models.py OUT_DIR      # build every layout under OUT_DIR/<layout>/<variant>
"""

from __future__ import annotations

import copy
import hashlib
import json
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import (
    GemmaConfig,
    GemmaForCausalLM,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    PretrainedConfig,
    PreTrainedModel,
    Qwen2Config,
    Qwen2ForCausalLM,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, also when run as a script
from tiny_models import word_tokenizer  # noqa: E402

VARIANTS = ("a", "b", "c")
DELTA_SCALE = {"a": 0.35, "b": 0.30, "c": 0.40, "va": 0.30, "vb": 0.25}
VOCAB_ADDED = ("<|im_start|>", "<|im_end|>")
VOCAB_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
UNCHANGED_IN_B = ("layers.0.input_layernorm.weight", "h.0.ln_1.weight")


@dataclass(frozen=True)
class Layout:
    name: str
    build: Callable[[], tuple[type[PreTrainedModel], PretrainedConfig]]
    dtype: torch.dtype = torch.float32
    tokenizer: bool = False
    seed: int = 0
    variant_dtypes: tuple[tuple[str, torch.dtype], ...] = ()  # per-variant override of `dtype`

    @property
    def num_layers(self) -> int:
        _, config = self.build()
        return int(getattr(config, "num_hidden_layers", None) or config.n_layer)


def _llama() -> tuple[type[PreTrainedModel], PretrainedConfig]:
    return LlamaForCausalLM, LlamaConfig(
        vocab_size=96,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=False,
    )


def _mistral() -> tuple[type[PreTrainedModel], PretrainedConfig]:
    return MistralForCausalLM, MistralConfig(
        vocab_size=80,
        hidden_size=48,
        intermediate_size=96,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=12,
        max_position_embeddings=64,
        sliding_window=32,
        tie_word_embeddings=False,
    )


def _qwen2() -> tuple[type[PreTrainedModel], PretrainedConfig]:
    return Qwen2ForCausalLM, Qwen2Config(
        vocab_size=72,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=False,
    )


def _gemma() -> tuple[type[PreTrainedModel], PretrainedConfig]:
    return GemmaForCausalLM, GemmaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        max_position_embeddings=64,
        tie_word_embeddings=True,
    )


def _gpt2() -> tuple[type[PreTrainedModel], PretrainedConfig]:
    return GPT2LMHeadModel, GPT2Config(
        vocab_size=64,
        n_positions=32,
        n_embd=32,
        n_layer=3,
        n_head=2,
        bos_token_id=1,
        eos_token_id=2,
        tie_word_embeddings=True,
    )


LAYOUTS: dict[str, Layout] = {
    layout.name: layout
    for layout in (
        Layout("llama", _llama, tokenizer=True, seed=11),
        Layout("mistral", _mistral, seed=12),
        Layout("qwen2", _qwen2, seed=13),
        Layout("gemma", _gemma, seed=14),
        Layout("gpt2", _gpt2, seed=15),
        Layout("llama_bf16", _llama, dtype=torch.bfloat16, seed=16),
        # mixed parents: base and a in float32, b in bfloat16, c in float16 (mergekit promotes per tensor)
        Layout("llama_mixed", _llama, seed=17, variant_dtypes=(("b", torch.bfloat16), ("c", torch.float16))),
    )
}


def _generator(*parts: object) -> torch.Generator:
    generator = torch.Generator()
    generator.manual_seed(zlib.crc32("|".join(map(str, parts)).encode()))
    return generator


def _delta(name: str, value: torch.Tensor, layout: Layout, variant: str) -> torch.Tensor:
    if variant == "b" and name.endswith(UNCHANGED_IN_B):
        return torch.zeros_like(value)
    spread = value.float().std().item() if value.numel() > 1 else 0.0
    if spread < 1e-6:  # norm weights (all ones) and zero biases
        spread = 0.05
    noise = torch.randn(value.shape, generator=_generator(layout.seed, variant, name))
    return DELTA_SCALE[variant] * spread * noise


def _write_tokenizer(out_dir: Path, vocab_size: int) -> None:
    word_tokenizer([f"w{index}" for index in range(3, vocab_size)]).save_pretrained(out_dir)


def _vocab_words(variant: str, vocab_size: int) -> list[str]:
    """`va`: w3..w89 in a seeded shuffle, then `xa`; `vb`: w10..w(vocab_size-1) in reverse order."""
    if variant == "va":
        words = [f"w{index}" for index in range(3, vocab_size - 6)]
        order = torch.randperm(len(words), generator=_generator("vocab", variant)).tolist()
        return [words[i] for i in order] + ["xa"]
    return [f"w{index}" for index in reversed(range(10, vocab_size))]


def build_vocab_variant(layout: Layout, base: PreTrainedModel, variant: str, root: Path) -> Path:
    """A parent with its own vocabulary (see the module docstring): rows follow its tokenizer's ids."""
    config = base.config
    tokenizer = word_tokenizer(_vocab_words(variant, config.vocab_size), VOCAB_ADDED)
    tokenizer.chat_template = VOCAB_CHAT_TEMPLATE
    vocab = tokenizer.get_vocab()
    base_ids = {"<unk>": 0, "<s>": 1, "</s>": 2, **{f"w{i}": i for i in range(3, config.vocab_size)}}
    new_config = copy.deepcopy(config)
    new_config.vocab_size = len(vocab)
    model = type(base)(new_config).eval()
    state = {}
    for name, value in base.state_dict().items():
        if name.endswith(("embed_tokens.weight", "lm_head.weight")):
            rows = torch.randn((len(vocab), value.shape[1]), generator=_generator(layout.seed, variant, "new", name))
            rows *= value.std()
            for token, index in vocab.items():
                if token in base_ids:
                    rows[index] = value[base_ids[token]]
            value = rows
        state[name] = value.clone()
    model.load_state_dict(state)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            parameter.add_(_delta(name, parameter.data, layout, variant))
    out_dir = root / layout.name / variant
    model.to(layout.dtype).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def build_layout(layout: Layout, root: Path) -> dict[str, Path]:
    """Write `base` and the variants of one layout under `root/<layout>/`; returns name -> directory."""
    model_class, config = layout.build()
    torch.manual_seed(layout.seed)
    base = model_class(config).eval()
    paths: dict[str, Path] = {}
    for variant in ("base", *VARIANTS):
        model = copy.deepcopy(base)  # deltas are added in float32, then the model is cast and saved
        if variant != "base":
            with torch.no_grad():
                for name, parameter in model.named_parameters():  # tied parameters appear once
                    parameter.add_(_delta(name, parameter.data, layout, variant))
        out_dir = root / layout.name / variant
        model.to(dict(layout.variant_dtypes).get(variant, layout.dtype)).save_pretrained(out_dir)
        if layout.tokenizer:
            _write_tokenizer(out_dir, config.vocab_size)
        paths[variant] = out_dir
    if layout.tokenizer:
        for variant in ("va", "vb"):
            paths[variant] = build_vocab_variant(layout, base, variant, root)
    return paths


def build_all(root: Path, layouts: list[str] | None = None) -> dict[str, dict[str, Path]]:
    root = Path(root)
    done = root / "manifest.json"
    wanted = layouts or list(LAYOUTS)
    if done.exists():
        manifest = json.loads(done.read_text())
        if manifest.get("source_sha256") == source_sha256() and all(name in manifest for name in wanted):
            return {name: {k: Path(v) for k, v in manifest[name].items()} for name in wanted}
    built = {name: build_layout(LAYOUTS[name], root) for name in wanted}
    manifest = {n: {k: str(v) for k, v in p.items()} for n, p in built.items()}
    done.write_text(json.dumps({"source_sha256": source_sha256(), **manifest}, indent=2))
    return built


def source_sha256() -> str:
    """Identity of the model definitions (this file) and the torch build that initialises them."""
    return hashlib.sha256(Path(__file__).read_bytes() + torch.__version__.encode()).hexdigest()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    for name, paths in build_all(Path(sys.argv[1])).items():
        print(name, " ".join(str(p) for p in paths.values()))
