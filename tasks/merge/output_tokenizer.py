"""The merged model's tokenizer, and for every parent the map from output token ids to its own ids.

A recipe with `tokenizer_source` (or a `tokenizer:` block) gets a tokenizer built as mergekit 0.1.5 builds it
(mergekit/tokenizer/build.py):

- `base`: the base model's tokenizer (the first model's without `base_model`), with the tokens that have
  no embedding row (id >= the config's `vocab_size`) stripped out;
- a model name: that model's tokenizer, as it is;
- `union`: the base tokenizer plus every token of the other parents it lacks, appended in parent order
  (regular tokens first, then the parents' added tokens, the first parent's settings winning);

then the `tokens:` of a `tokenizer:` block that it still lacks are appended. Where mergekit leaves an
order to chance we fix it: mergekit walks each vocabulary in `get_vocab()` order, which is the order of a
Rust hash map and changes from process to process, so the ids it gives appended tokens vary run to run;
we walk each vocabulary by id. The maps then say, for every output id, which row of each parent holds that
token (-1: the parent lacks it, or its row is past the parent's `vocab_size`).

Everything here loads tokenizers with transformers from the parents' local directories.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tasks.errors import ModelMismatchError

# transformers is imported inside the functions: only recipes that build a tokenizer pay for it.


@dataclass(frozen=True)
class OutputVocabulary:
    """The output tokenizer and how each parent's token ids map onto it."""

    tokenizer: Any
    """The `transformers` tokenizer the writer saves (a `PreTrainedTokenizerBase`)."""
    vocab: Mapping[str, int]
    """Output token -> output id; ids run from 0 to len(vocab) - 1."""
    rows: int
    """Embedding rows of the output: len(vocab) rounded up to `pad_to_multiple_of`."""
    parent_ids: Mapping[str, torch.Tensor]
    """Per parent, int64[len(vocab)]: the parent's id of each output token, -1 where it has none."""
    parent_vocabs: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    """Each parent's own vocabulary (what a `model_token` source's `token:` is looked up in)."""


def load_tokenizer(path: Path | str) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path), use_fast=True)


def config_vocab_size(config: Mapping[str, Any]) -> int | None:
    """The embedding rows a model declares (`vocab_size`, or its text model's for multimodal configs)."""
    for scope in (config, config.get("text_config")):
        if isinstance(scope, Mapping) and isinstance(scope.get("vocab_size"), int):
            return int(scope["vocab_size"])
    return None


def padded_rows(count: int, multiple: int | None) -> int:
    """`count` rounded up to a multiple of `multiple` (no rounding for None or 0)."""
    if not multiple or count % multiple == 0:
        return count
    return (count // multiple + 1) * multiple


def strip_unused_tokens(tokenizer: Any, vocab_size: int | None, model: str) -> Any:
    """The tokenizer without the tokens whose id has no embedding row (id >= `vocab_size`). Only fast BPE
    tokenizers can be edited (as in mergekit); the vocabulary, added tokens and merges are filtered."""
    from tokenizers import Tokenizer

    limit = vocab_size if vocab_size is not None else len(tokenizer.get_vocab())
    unused = {token for token, index in tokenizer.get_vocab().items() if index >= limit}
    if not unused:
        return tokenizer
    if not getattr(tokenizer, "is_fast", False):
        raise ModelMismatchError(
            f"model {model!r}: its tokenizer has {len(unused)} token(s) past vocab_size {limit} and is not a fast "
            "tokenizer, so they cannot be stripped for a vocabulary merge"
        )
    data = json.loads(tokenizer.backend_tokenizer.to_str())
    if data["model"]["type"] != "BPE":
        raise ModelMismatchError(
            f"model {model!r}: its tokenizer has {len(unused)} token(s) past vocab_size {limit}; stripping them "
            f"is supported for BPE tokenizers only, this one is {data['model']['type']}"
        )
    data["added_tokens"] = [entry for entry in data["added_tokens"] if entry["id"] < limit]
    for token in unused:
        data["model"]["vocab"].pop(token, None)

    def keeps(merge: Any) -> bool:
        parts = merge.split(" ") if isinstance(merge, str) else merge
        return not any(part in unused for part in parts)

    data["model"]["merges"] = [merge for merge in data["model"]["merges"] if keeps(merge)]
    tokenizer._tokenizer = Tokenizer.from_str(json.dumps(data))
    return tokenizer


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def fresh_copy(tokenizer: Any) -> Any:
    """An independent copy (saved and reloaded), so adding tokens leaves the original alone."""
    from transformers import AutoTokenizer

    with tempfile.TemporaryDirectory() as directory:
        tokenizer.save_pretrained(directory)
        return AutoTokenizer.from_pretrained(directory, use_fast=True)


def union_tokenizer(base: str, tokenizers: Mapping[str, Any], vocab_sizes: Mapping[str, int | None]) -> Any:
    """The base tokenizer plus every other token of `tokenizers` (base first, then the parents in order).
    Tokens past a parent's `vocab_size` are left out; an added token keeps the settings of the first parent
    that has it."""
    regular: dict[str, None] = {}
    added: dict[str, Any] = {}
    for model, tokenizer in tokenizers.items():
        limit = vocab_sizes.get(model) or tokenizer.vocab_size
        for token, index in sorted(tokenizer.get_vocab().items(), key=lambda item: item[1]):
            if index < limit:
                regular.setdefault(token)
        for index, info in sorted(tokenizer.added_tokens_decoder.items()):
            if index < limit:
                added.setdefault(info.content, info)
    base_vocab = tokenizers[base].get_vocab()
    result = fresh_copy(tokenizers[base])
    result.add_tokens([token for token in regular if token not in added and token not in base_vocab])
    result.add_tokens(list(added.values()))
    return result


def build_output_vocabulary(
    source: str,
    base: str,
    models: Sequence[str],
    paths: Mapping[str, Path],
    vocab_sizes: Mapping[str, int | None],
    *,
    add_tokens: Sequence[str] = (),
    pad_to_multiple_of: int | None = None,
    notes: list[str] | None = None,
) -> OutputVocabulary:
    """The output tokenizer for `source` (`base`, `union` or one of `models`) and every parent's id map.
    `base` is the recipe's base model (else its first model); `models` are all the recipe's models."""
    try:
        base_tokenizer = load_tokenizer(paths[base])
    except Exception as error:  # noqa: BLE001 - transformers raises many types for an unreadable tokenizer
        raise ModelMismatchError(f"model {base!r}: cannot load its tokenizer ({_first_line(error)})") from None
    base_tokenizer = strip_unused_tokens(base_tokenizer, vocab_sizes.get(base), base)
    tokenizers: dict[str, Any] = {base: base_tokenizer}
    for model in models:
        if model in tokenizers:
            continue
        try:
            tokenizers[model] = load_tokenizer(paths[model])
        except Exception as error:  # noqa: BLE001 - as mergekit: a parent without a tokenizer shares the base's
            if notes is not None:
                notes.append(
                    f"model {model!r}: no tokenizer ({_first_line(error)}); assuming the vocabulary of {base!r}"
                )

    if source == "union":
        output = union_tokenizer(base, tokenizers, vocab_sizes)
    elif source == "base":
        # mergekit adds `tokens:` to the base tokenizer itself, which then also passes for the base model's own
        # vocabulary; a copy keeps the base's map honest (those tokens have no row in the base model)
        output = fresh_copy(base_tokenizer) if add_tokens else base_tokenizer
    else:
        try:
            output = load_tokenizer(paths[source])
        except Exception as error:  # noqa: BLE001 - transformers raises many types for an unreadable tokenizer
            raise ModelMismatchError(f"model {source!r}: cannot load its tokenizer ({_first_line(error)})") from None
    present = set(output.get_vocab())
    missing = [token for token in dict.fromkeys(add_tokens) if token not in present]
    if missing:
        output.add_tokens(missing)

    vocab = dict(output.get_vocab())
    holes = [index for index in vocab.values() if index >= len(vocab)]
    if holes:
        raise ModelMismatchError(
            f"the output tokenizer's ids are not contiguous: {len(vocab)} tokens, but id {max(holes)} is used"
        )
    tokens = sorted(vocab, key=vocab.__getitem__)
    parent_ids: dict[str, torch.Tensor] = {}
    for model in models:
        own = tokenizers.get(model, base_tokenizer).get_vocab()
        limit = vocab_sizes.get(model)
        if limit is None:
            limit = len(own)
        ids = [own.get(token, -1) for token in tokens]
        parent_ids[model] = torch.tensor([index if index < limit else -1 for index in ids], dtype=torch.int64)
    return OutputVocabulary(
        tokenizer=output,
        vocab=vocab,
        rows=padded_rows(len(vocab), pad_to_multiple_of),
        parent_ids=parent_ids,
        parent_vocabs={model: tokenizer.get_vocab() for model, tokenizer in tokenizers.items()},
    )
