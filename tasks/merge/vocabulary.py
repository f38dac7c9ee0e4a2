"""Embedding rows moved onto the output vocabulary before the merge method sees them.

When the recipe builds a tokenizer (`tokenizer_source` / `tokenizer:`), every token-indexed tensor of
every parent (input embeddings, LM head, its bias) is rewritten row by row so that row i holds output
token i, as mergekit 0.1.5 does (mergekit/tokenizer/embed.py, PermutedVocabulary):

- a parent that has the token keeps its own row (unless the token's `tokens:` entry says `force`);
- a token some parents lack gets one row shared by all parents that lack it: the row of the only parent
  that has it; else the base model's row when the base feeds this tensor and has it; else the mean of
  the rows of the parents that have it (summed in source order, then divided); a token no parent has
  is zero. A `tokens:` entry replaces that choice: a model's row for the token (`source: MODEL`), a given
  row of a model (`{kind: model_token, model, token | token_id}`), or zero (`{kind: zero}`);
- rows past the vocabulary (`pad_to_multiple_of`) are the mean of the parent's rewritten rows.

Everything runs in the dtype the merge method would get: the recipe's `dtype`, promoted across parents.
After the rewrite all parents agree in shape and the normal method runs. Only which rows to take is
planned up front (`plan_row_map`); `RowMap.apply` does the tensor work per job.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from tasks.errors import ModelMismatchError, RecipeError
from tasks.merge.output_tokenizer import OutputVocabulary
from tasks.merge.recipe import ModelTokenEmbedding, TokenEmbeddingConfig, ZeroEmbedding

VOCABULARY_TENSOR_SUFFIXES = (
    "embed_tokens.weight",
    "embed_in.weight",
    "embed_out.weight",
    "tok_embeddings.weight",
    "word_embeddings.weight",
    "wte.weight",
    "lm_head.weight",
    "lm_head.bias",
    "output_layer.weight",
)
"""Tensors indexed by token id along their first axis: the input embeddings and the LM head of the
decoder families mergekit 0.1.5 describes (its architecture files mark them with `vocabulary_axis: 0`)."""


def is_vocabulary_tensor(name: str) -> bool:
    return name.endswith(VOCABULARY_TENSOR_SUFFIXES) or name == "output.weight"


def remap_rows(tensor: Tensor, rows: Tensor, fill_ids: Tensor, fill: Tensor, size: int) -> Tensor:
    """`size` rows: row i is `tensor[rows[i]]` where rows[i] >= 0; the rows listed in `fill_ids` where
    rows[i] < 0 are the matching rows of `fill`; any other row i < len(rows) is zero; rows from len(rows) on
    (padding) are the mean of the first len(rows) rows. Trailing dimensions and dtype are `tensor`'s."""
    vocab = rows.shape[0]
    if size < vocab:
        raise ValueError(f"size {size} is smaller than the vocabulary ({vocab} rows)")
    if size == vocab == tensor.shape[0] and torch.equal(rows, torch.arange(vocab, dtype=rows.dtype)):
        return tensor  # every row is the parent's own, in place: nothing to copy
    result = tensor.new_zeros((size, *tensor.shape[1:]))
    if fill_ids.numel():
        result[fill_ids] = fill.to(tensor.dtype)
    own = torch.nonzero(rows >= 0).squeeze(1)
    result.index_copy_(0, own, tensor.index_select(0, rows[own]))
    if size > vocab:
        result[vocab:] = torch.mean(result[:vocab], dim=0)
    return result


@dataclass(frozen=True)
class FillRows:
    """The rows shared by every parent that lacks a token (mergekit's "default embeddings")."""

    ids: Tensor
    """int64[F]: the output ids they fill."""
    copies: tuple[tuple[str, Tensor, Tensor], ...]
    """(model, positions in the fill, rows of that model's tensor): rows copied from one parent."""
    average_positions: Tensor
    """int64[A]: fill positions that average the parents having the token."""
    average_rows: Mapping[str, Tensor]
    """Per parent, int64[A]: its row for each averaged token, -1 where it lacks it."""

    def build(self, models: Sequence[str], tensors: Mapping[str, Tensor]) -> Tensor:
        """The fill rows, in the tensors' (common) dtype; rows that are neither copied nor averaged are zero."""
        first = tensors[models[0]]
        fill = first.new_zeros((self.ids.shape[0], *first.shape[1:]))
        for model, positions, rows in self.copies:
            fill[positions] = tensors[model][rows]
        if self.average_positions.numel():
            total = first.new_zeros((self.average_positions.shape[0], *first.shape[1:]))
            count = torch.zeros(self.average_positions.shape[0], dtype=torch.int64)
            for model in models:  # the order of the sum is the order of the sources, as in mergekit
                rows = self.average_rows[model]
                has = torch.nonzero(rows >= 0).squeeze(1)
                total[has] = total[has] + tensors[model][rows[has]]
                count[has] += 1
            for divisor in torch.unique(count).tolist():
                group = torch.nonzero(count == divisor).squeeze(1)
                part = total[group]
                part /= divisor
                total[group] = part
            fill[self.average_positions] = total
        return fill


@dataclass(frozen=True)
class RowMap:
    """How the parents of one token-indexed tensor become rows of the output vocabulary."""

    models: tuple[str, ...]
    """The parents in the order of the recipe's sources (the order mergekit sums averages in)."""
    rows: Mapping[str, Tensor]
    """Per parent, int64[len(vocab)]: its own row for each output token, -1 where it takes the fill row."""
    fill: FillRows
    size: int
    """Rows of the result (the vocabulary padded to `pad_to_multiple_of`)."""

    def apply(
        self, models: Sequence[str], tensors: Sequence[Tensor], compute_dtype: torch.dtype | None = None
    ) -> list[Tensor]:
        """`tensors` (of `models`, in that order) rewritten onto the output vocabulary, cast to
        `compute_dtype` (floating tensors) and promoted to a common dtype first, as the method would cast them."""
        cast = [t.to(compute_dtype) if compute_dtype is not None and t.is_floating_point() else t for t in tensors]
        common = cast[0].dtype
        for tensor in cast[1:]:
            common = torch.promote_types(common, tensor.dtype)
        by_model = {model: tensor.to(common) for model, tensor in zip(models, cast, strict=True)}
        fill = self.fill.build(self.models, by_model)
        return [remap_rows(by_model[model], self.rows[model], self.fill.ids, fill, self.size) for model in models]


def plan_row_map(
    vocabulary: OutputVocabulary,
    models: Sequence[str],
    base: str | None,
    row_counts: Mapping[str, int],
    tokens: Mapping[str, TokenEmbeddingConfig] | None,
    tensor: str,
) -> RowMap:
    """Which row every output token takes from each of `models` (the parents feeding `tensor`, in source
    order; `base` is the recipe's base model for it). `row_counts` are the parents' row counts of `tensor`."""
    models = tuple(dict.fromkeys(models))
    tokens = dict(tokens or {})
    ids = {model: vocabulary.parent_ids[model] for model in models}
    for model in models:
        stored = ids[model][ids[model] >= 0]
        if stored.numel() and int(stored.max()) >= row_counts[model]:
            raise ModelMismatchError(
                f"model {model!r}: its tokenizer uses id {int(stored.max())}, but {tensor} has {row_counts[model]} rows"
            )
    present = torch.stack([ids[model] >= 0 for model in models])  # [models, vocab]
    everywhere = present.all(dim=0)
    forced = torch.zeros(len(vocabulary.vocab), dtype=torch.bool)
    for token, setting in tokens.items():
        if setting.force and token in vocabulary.vocab:
            forced[vocabulary.vocab[token]] = True
    rows = {model: torch.where(forced, -1, ids[model]) for model in models}

    fill_ids = torch.nonzero(~everywhere | forced).squeeze(1)
    position = {token_id: index for index, token_id in enumerate(fill_ids.tolist())}
    by_id = {token_id: token for token, token_id in vocabulary.vocab.items()}
    fill_ids_of = {model: ids[model][fill_ids].tolist() for model in models}
    copies: dict[str, tuple[list[int], list[int]]] = {model: ([], []) for model in models}
    averaged: list[int] = []
    for token_id, index in position.items():
        token = by_id[token_id]
        setting = tokens.get(token)
        if setting is not None:
            source = _configured_row(vocabulary, setting, token, token_id, models, row_counts, tensor)
            if source is not None:
                copies[source[0]][0].append(index)
                copies[source[0]][1].append(source[1])
            continue
        having = [model for model in models if fill_ids_of[model][index] >= 0]
        if len(having) == 1:
            donor = having[0]
        elif not having:
            continue  # no parent has it: zero
        elif base in having:
            donor = base
        else:
            averaged.append(token_id)
            continue
        copies[donor][0].append(index)
        copies[donor][1].append(fill_ids_of[donor][index])

    average_ids = torch.tensor(averaged, dtype=torch.int64)
    fill = FillRows(
        ids=fill_ids,
        copies=tuple(
            (model, torch.tensor(positions, dtype=torch.int64), torch.tensor(source_rows, dtype=torch.int64))
            for model, (positions, source_rows) in copies.items()
            if positions
        ),
        average_positions=torch.tensor([position[token_id] for token_id in averaged], dtype=torch.int64),
        average_rows={model: ids[model][average_ids] for model in models},
    )
    return RowMap(models=models, rows=rows, fill=fill, size=vocabulary.rows)


def _configured_row(
    vocabulary: OutputVocabulary,
    setting: TokenEmbeddingConfig,
    token: str,
    token_id: int,
    models: Sequence[str],
    row_counts: Mapping[str, int],
    tensor: str,
) -> tuple[str, int] | None:
    """(model, row) a `tokens:` entry takes the token's row from, or None for a zero row."""
    key = f"tokenizer.tokens.{token}.source"
    source = setting.source
    if isinstance(source, ZeroEmbedding):
        return None
    if source is None:
        raise RecipeError(f"{key}: {token!r} is missing from some parents of {tensor}; say where its row comes from")
    model = source.model if isinstance(source, ModelTokenEmbedding) else source
    if model not in models:
        raise RecipeError(f"{key}: model {model!r} does not feed {tensor}, so its row cannot be taken")
    if isinstance(source, ModelTokenEmbedding):
        row = source.token_id
        if row is None:
            own = vocabulary.parent_vocabs.get(model, {})
            if source.token not in own:
                raise RecipeError(f"{key}.token: {source.token!r} is not in the tokenizer of {model!r}")
            row = own[source.token]
        if not 0 <= row < row_counts[model]:
            raise RecipeError(f"{key}: row {row} is out of range for {tensor} of {model!r} ({row_counts[model]} rows)")
        return model, row
    row = int(vocabulary.parent_ids[model][token_id])
    if row < 0:
        raise RecipeError(f"{key}: model {model!r} does not have the token {token!r}")
    return model, row
