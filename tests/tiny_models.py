"""Small seeded Hugging Face models for tests: real safetensors directories that transformers loads."""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import Whitespace
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast


def make_tiny_llama(out_dir: Path, seed: int, *, layers: int = 2, hidden: int = 16, vocab: int = 32) -> Path:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    model.save_pretrained(out_dir, safe_serialization=True)
    return out_dir


def word_tokenizer(words: list[str], added: tuple[str, ...] = ()) -> PreTrainedTokenizerFast:
    """A tiny word-level tokenizer (no download): `<unk>`, `<s>`, `</s>`, then `words` (ids in that order),
    then the `added` tokens."""
    vocab = {token: index for index, token in enumerate(["<unk>", "<s>", "</s>", *words])}
    backend = Tokenizer(WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    if added:
        tokenizer.add_tokens(list(added))
    return tokenizer


def make_tiny_llama_with_tokenizer(
    out_dir: Path,
    seed: int,
    words: list[str],
    *,
    added: tuple[str, ...] = (),
    layers: int = 2,
    hidden: int = 16,
) -> Path:
    """A tiny Llama whose vocabulary is its own word-level tokenizer (`word_tokenizer`); the embedding has one
    row per token."""
    tokenizer = word_tokenizer(words, added)
    make_tiny_llama(out_dir, seed, layers=layers, hidden=hidden, vocab=len(tokenizer))
    tokenizer.save_pretrained(out_dir)
    return out_dir
