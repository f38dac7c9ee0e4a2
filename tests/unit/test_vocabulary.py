"""Embedding rows moved onto an output vocabulary, and the output tokenizers they follow (mergekit 0.1.5's
tokenizer_source / tokenizer: semantics), on tiny tensors and tokenizers built here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tiny_models import word_tokenizer
from tokenizers import Tokenizer
from tokenizers.models import BPE
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from tasks.errors import ModelMismatchError, RecipeError
from tasks.merge.chat_templates import BUILTIN_TEMPLATES, chat_template_problem, resolve_chat_template
from tasks.merge.output_tokenizer import (
    OutputVocabulary,
    build_output_vocabulary,
    padded_rows,
    union_tokenizer,
)
from tasks.merge.recipe import TokenEmbeddingConfig
from tasks.merge.vocabulary import is_vocabulary_tensor, plan_row_map, remap_rows


def save_parent(directory: Path, tokenizer: PreTrainedTokenizerFast, vocab_size: int | None = None) -> Path:
    directory.mkdir(parents=True)
    tokenizer.save_pretrained(directory)
    rows = vocab_size if vocab_size is not None else len(tokenizer)
    (directory / "config.json").write_text(json.dumps({"vocab_size": rows}))
    return directory


def vocabulary_of(vocabs: dict[str, list[str]], output: list[str], pad: int | None = None) -> OutputVocabulary:
    """An OutputVocabulary without transformers: each parent's tokens in id order, the output's too."""
    vocab = {token: index for index, token in enumerate(output)}
    parent_ids = {
        model: torch.tensor([tokens.index(t) if t in tokens else -1 for t in output], dtype=torch.int64)
        for model, tokens in vocabs.items()
    }
    own = {model: {t: i for i, t in enumerate(tokens)} for model, tokens in vocabs.items()}
    return OutputVocabulary(None, vocab, padded_rows(len(vocab), pad), parent_ids, own)


# ------------------------------------------------------------------------------------------------
# remap_rows
def test_remap_rows_copies_own_rows_bit_for_bit_and_fills_the_rest() -> None:
    tensor = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    rows = torch.tensor([2, -1, 0, -1, 3])
    fill = torch.tensor([[7.0, 8.0, 9.0]])
    result = remap_rows(tensor, rows, torch.tensor([1]), fill, 5)
    assert result.shape == (5, 3) and result.dtype == tensor.dtype
    assert torch.equal(result[0], tensor[2]) and torch.equal(result[2], tensor[0]) and torch.equal(result[4], tensor[3])
    assert torch.equal(result[1], fill[0])
    assert torch.equal(result[3], torch.zeros(3))  # not own, not filled: zero


def test_remap_rows_prefers_the_parents_own_row_over_a_fill_row() -> None:
    tensor = torch.arange(6.0).reshape(3, 2)
    result = remap_rows(tensor, torch.tensor([1, 2]), torch.tensor([0, 1]), torch.full((2, 2), -5.0), 2)
    assert torch.equal(result, tensor[[1, 2]])


def test_padding_rows_are_the_mean_of_the_vocabulary_rows() -> None:
    tensor = torch.randn(3, 4, generator=torch.Generator().manual_seed(1)).to(torch.bfloat16)
    result = remap_rows(tensor, torch.tensor([0, 1, 2]), torch.empty(0, dtype=torch.int64), torch.empty(0, 4), 8)
    assert result.shape == (8, 4) and result.dtype == torch.bfloat16
    assert torch.equal(result[:3], tensor)
    expected = torch.mean(tensor, dim=0)
    for row in range(3, 8):
        assert torch.equal(result[row], expected)


def test_remap_rows_keeps_trailing_dimensions_of_a_bias() -> None:
    bias = torch.tensor([1.5, -2.0, 3.0])
    result = remap_rows(bias, torch.tensor([2, 0, -1]), torch.tensor([2]), torch.tensor([9.0]), 4)
    assert torch.equal(result, torch.tensor([3.0, 1.5, 9.0, (3.0 + 1.5 + 9.0) / 3]))


def test_remap_rows_refuses_a_size_below_the_vocabulary() -> None:
    with pytest.raises(ValueError, match="smaller than the vocabulary"):
        remap_rows(torch.zeros(2, 2), torch.tensor([0, 1]), torch.empty(0, dtype=torch.int64), torch.empty(0, 2), 1)


def test_vocabulary_tensors_are_embeddings_and_lm_heads_only() -> None:
    for name in ("model.embed_tokens.weight", "lm_head.weight", "transformer.wte.weight", "lm_head.bias"):
        assert is_vocabulary_tensor(name), name
    for name in ("transformer.wpe.weight", "model.norm.weight", "model.layers.0.mlp.up_proj.weight"):
        assert not is_vocabulary_tensor(name), name


# ------------------------------------------------------------------------------------------------
# which row each token takes (plan_row_map + RowMap.apply)
BASE = ["<unk>", "a", "b", "c", "d"]
LEFT = ["<unk>", "c", "a", "e", "f"]
RIGHT = ["<unk>", "a", "f", "d", "g"]
OUTPUT = ["<unk>", "a", "b", "c", "d", "e", "f", "g", "h"]


def parents(dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    return {name: torch.randn(5, 4, generator=generator).to(dtype) for name in ("base", "left", "right")}


def test_missing_tokens_take_mergekits_default_rows() -> None:
    vocabulary = vocabulary_of({"base": BASE, "left": LEFT, "right": RIGHT}, OUTPUT)
    x = parents()
    row_map = plan_row_map(vocabulary, ["base", "left", "right"], "base", {m: 5 for m in x}, None, "t")
    out = dict(zip(x, row_map.apply(list(x), list(x.values())), strict=True))
    for model, tokens in (("base", BASE), ("left", LEFT), ("right", RIGHT)):
        assert out[model].shape == (9, 4)
        for token in tokens:  # a parent's own rows, bit for bit
            assert torch.equal(out[model][OUTPUT.index(token)], x[model][tokens.index(token)])
    # b: base only -> the base's row in every parent
    assert torch.equal(out["left"][2], x["base"][2]) and torch.equal(out["right"][2], x["base"][2])
    # c: base and left -> the base's row where missing (right)
    assert torch.equal(out["right"][3], x["base"][3])
    # e: left only -> left's row
    assert torch.equal(out["base"][5], x["left"][3])
    # f: left and right, not the base -> their mean, summed in source order then divided
    assert torch.equal(out["base"][6], (torch.zeros(4) + x["left"][4] + x["right"][2]) / 2)
    # h: nobody -> zero
    for model in x:
        assert torch.equal(out[model][8], torch.zeros(4))


def test_without_the_base_among_the_inputs_shared_tokens_are_averaged() -> None:
    vocabulary = vocabulary_of({"base": BASE, "left": LEFT, "right": RIGHT}, OUTPUT)
    x = parents()
    del x["base"]
    row_map = plan_row_map(vocabulary, ["left", "right"], "base", {m: 5 for m in x}, None, "t")
    out = dict(zip(x, row_map.apply(list(x), list(x.values())), strict=True))
    assert torch.equal(out["right"][3], x["left"][1])  # c: left only
    assert torch.equal(out["left"][2], torch.zeros(4))  # b: only the (absent) base


def test_average_runs_in_the_promoted_dtype() -> None:
    vocabulary = vocabulary_of({"base": BASE, "left": LEFT, "right": RIGHT}, OUTPUT)
    x = {name: tensor.to(torch.bfloat16) for name, tensor in parents().items()}
    row_map = plan_row_map(vocabulary, list(x), "base", {m: 5 for m in x}, None, "t")
    out = row_map.apply(list(x), list(x.values()))
    expected = torch.zeros(4, dtype=torch.bfloat16) + x["left"][4]
    expected = expected + x["right"][2]
    expected /= 2
    assert out[0].dtype == torch.bfloat16 and torch.equal(out[0][6], expected)
    promoted = row_map.apply(list(x), [x["base"], x["left"], x["right"].float()])
    assert all(tensor.dtype == torch.float32 for tensor in promoted)
    assert torch.equal(promoted[0][6], (torch.zeros(4) + x["left"][4].float() + x["right"][2].float()) / 2)
    cast = row_map.apply(list(x), [tensor.float() for tensor in x.values()], torch.float16)
    assert all(tensor.dtype == torch.float16 for tensor in cast)


def test_configured_tokens_and_force() -> None:
    vocabulary = vocabulary_of({"base": BASE, "left": LEFT, "right": RIGHT}, OUTPUT, pad=16)
    x = parents()
    tokens = {
        "f": TokenEmbeddingConfig(source="right"),
        "e": TokenEmbeddingConfig(source={"kind": "zero"}),
        "a": TokenEmbeddingConfig(source={"kind": "model_token", "model": "left", "token_id": 4}, force=True),
        "h": TokenEmbeddingConfig(source={"kind": "model_token", "model": "base", "token": "d"}),
    }
    row_map = plan_row_map(vocabulary, list(x), "base", {m: 5 for m in x}, tokens, "t")
    out = dict(zip(x, row_map.apply(list(x), list(x.values())), strict=True))
    assert torch.equal(out["base"][6], x["right"][2])  # f: right's row instead of the mean
    assert torch.equal(out["base"][5], torch.zeros(4))  # e: zero instead of left's row
    assert torch.equal(out["left"][5], x["left"][3])  # ... where left has e, its own row stays
    for model in x:  # a, forced: left's row 4 everywhere, even where the parent has a
        assert torch.equal(out[model][1], x["left"][4])
        assert torch.equal(out[model][8], x["base"][4])  # h: base's row of token d
        assert out[model].shape == (16, 4)
        assert torch.equal(out[model][9], torch.mean(out[model][:9], dim=0))


def test_configured_sources_that_cannot_be_honoured_are_named() -> None:
    vocabulary = vocabulary_of({"base": BASE, "left": LEFT, "right": RIGHT}, OUTPUT)
    rows = {"base": 5, "left": 5, "right": 5}
    cases = [
        ({"f": TokenEmbeddingConfig(source="base")}, "does not have the token 'f'"),
        ({"b": TokenEmbeddingConfig(source={"kind": "model_token", "model": "left", "token": "zz"})}, "'zz' is not"),
        ({"b": TokenEmbeddingConfig(source={"kind": "model_token", "model": "left", "token_id": 9})}, "row 9 is out"),
        ({"b": TokenEmbeddingConfig()}, "say where its row comes from"),
    ]
    for tokens, message in cases:
        with pytest.raises(RecipeError, match=message):
            plan_row_map(vocabulary, ["base", "left", "right"], "base", rows, tokens, "t")
    with pytest.raises(RecipeError, match="does not feed t"):
        plan_row_map(vocabulary, ["base", "left"], "base", rows, {"f": TokenEmbeddingConfig(source="right")}, "t")
    with pytest.raises(ModelMismatchError, match="has 3 rows"):
        plan_row_map(vocabulary, ["base", "left"], "base", {"base": 5, "left": 3}, None, "t")


# ------------------------------------------------------------------------------------------------
# output tokenizers
def test_union_appends_missing_tokens_in_parent_then_id_order(tmp_path: Path) -> None:
    base = word_tokenizer(["a", "b", "c"])
    left = word_tokenizer(["c", "z", "y", "a"], added=("<x>",))
    right = word_tokenizer(["q", "b"], added=("<w>", "<x>"))
    union = union_tokenizer("base", {"base": base, "left": left, "right": right}, {"base": 6, "left": 8, "right": 7})
    vocab = union.get_vocab()
    assert {t: vocab[t] for t in base.get_vocab()} == base.get_vocab()  # the base keeps its ids
    assert [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])][6:] == ["z", "y", "q", "<x>", "<w>"]
    assert len(union) == len(vocab) == 11
    assert union.convert_tokens_to_ids("<x>") == 9
    assert "<x>" in {info.content for info in union.added_tokens_decoder.values()}
    assert base.get_vocab() == word_tokenizer(["a", "b", "c"]).get_vocab()  # the base is untouched


def test_union_leaves_out_tokens_past_a_parents_vocab_size() -> None:
    base = word_tokenizer(["a"])
    other = word_tokenizer(["b", "c", "d"], added=("<x>",))  # ids 3..6; only 3 and 4 have rows
    union = union_tokenizer("base", {"base": base, "other": other}, {"base": 4, "other": 5})
    assert "c" in union.get_vocab() and "d" not in union.get_vocab() and "<x>" not in union.get_vocab()
    # without a config vocab_size, the tokenizer's own vocab_size (added tokens excluded) is the limit
    union = union_tokenizer("base", {"base": base, "other": other}, {})
    assert "d" in union.get_vocab() and "<x>" not in union.get_vocab()


def test_build_output_vocabulary_maps_every_parent(tmp_path: Path) -> None:
    paths = {
        "base": save_parent(tmp_path / "base", word_tokenizer(["a", "b", "c"])),
        "other": save_parent(tmp_path / "other", word_tokenizer(["c", "d"], added=("<x>",))),
    }
    sizes = {"base": 6, "other": 6}
    union = build_output_vocabulary("union", "base", ["base", "other"], paths, sizes, pad_to_multiple_of=4)
    assert list(union.vocab) and union.rows == 8 and len(union.vocab) == 8
    assert union.parent_ids["base"].tolist() == [0, 1, 2, 3, 4, 5, -1, -1]
    assert union.parent_ids["other"].tolist() == [0, 1, 2, -1, -1, 3, 4, 5]

    base = build_output_vocabulary("base", "base", ["base", "other"], paths, sizes, add_tokens=["<new>", "a"])
    assert len(base.vocab) == 7 and base.vocab["<new>"] == 6
    assert base.parent_ids["base"].tolist() == [0, 1, 2, 3, 4, 5, -1]  # the base has no row for <new>
    assert base.parent_ids["other"].tolist() == [0, 1, 2, -1, -1, 3, -1]

    model = build_output_vocabulary("other", "base", ["base", "other"], paths, sizes)
    assert model.parent_ids["other"].tolist() == [0, 1, 2, 3, 4, 5]
    assert model.parent_ids["base"].tolist() == [0, 1, 2, 5, -1, -1]


def test_base_tokenizer_is_stripped_of_tokens_without_rows(tmp_path: Path) -> None:
    vocab = {"<unk>": 0, "a": 1, "b": 2, "ab": 3, "c": 4}
    backend = Tokenizer(BPE(vocab=vocab, merges=[("a", "b")], unk_token="<unk>"))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>")
    tokenizer.add_tokens(["<pad>"])  # id 5
    path = save_parent(tmp_path / "bpe", tokenizer, vocab_size=4)  # rows for ids 0..3 only
    built = build_output_vocabulary("base", "bpe", ["bpe"], {"bpe": path}, {"bpe": 4})
    assert dict(built.vocab) == {"<unk>": 0, "a": 1, "b": 2, "ab": 3}
    assert built.tokenizer.tokenize("ab") == ["ab"]


def test_a_base_without_a_tokenizer_is_named(tmp_path: Path) -> None:
    (tmp_path / "bare").mkdir()
    (tmp_path / "bare" / "config.json").write_text('{"vocab_size": 4}')
    with pytest.raises(ModelMismatchError, match="model 'bare': cannot load its tokenizer"):
        build_output_vocabulary("union", "bare", ["bare"], {"bare": tmp_path / "bare"}, {"bare": 4})


# ------------------------------------------------------------------------------------------------
# chat templates
@pytest.mark.parametrize("name", sorted(BUILTIN_TEMPLATES))
def test_builtin_chat_templates_render(name: str, tmp_path: Path) -> None:
    tokenizer = word_tokenizer(["hi"])
    tokenizer.chat_template = resolve_chat_template(name, [])
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    messages = [{"role": "user", "content": "hi there"}, {"role": "assistant", "content": "hello"}]
    text = loaded.apply_chat_template(messages, tokenize=False)
    assert "hi there" in text and "hello" in text
    prompt = loaded.apply_chat_template(messages[:1], tokenize=False, add_generation_prompt=True)
    assert prompt.startswith(loaded.apply_chat_template(messages[:1], tokenize=False))


def test_chatml_renders_the_standard_format() -> None:
    tokenizer = word_tokenizer(["hi"])
    tokenizer.chat_template = resolve_chat_template("chatml", [])
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_chat_template_values() -> None:
    assert chat_template_problem("auto") is None and chat_template_problem("llama3") is None
    assert chat_template_problem("{% for m in messages %}{{ m }}{% endfor %}") is None
    assert "neither `auto`" in (chat_template_problem("zephyr") or "")
    assert "neither `auto`" in (chat_template_problem("{{ x }}") or "")  # shorter than 20 characters
    literal = "{% for m in messages %}{{ m.content }}{% endfor %}"
    assert resolve_chat_template(literal, []) == literal
    assert resolve_chat_template("auto", ["a ", None, {"default": "b"}, "b"]) == "b"
    assert resolve_chat_template("auto", ["a", "b"]) == "a"  # a tie: the first seen
    assert resolve_chat_template("auto", [None, ""]) is None


def test_an_identity_map_returns_the_parents_tensor_itself() -> None:
    tensor = torch.randn(3, 2)
    rows = torch.arange(3)
    assert remap_rows(tensor, rows, torch.empty(0, dtype=torch.int64), torch.empty(0, 2), 3) is tensor
    assert remap_rows(tensor, rows, torch.empty(0, dtype=torch.int64), torch.empty(0, 2), 4) is not tensor
