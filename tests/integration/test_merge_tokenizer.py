"""`evomerge merge` of parents with different vocabularies: `tokenizer_source` union / base / a model, and
the `tokenizer:` block. The output must load in transformers with as many embedding rows as its tokenizer
has tokens, and a token's merged row must be the method applied to the parents' rows for that token."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from cli_runner import run_merge
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from tasks.merge import methods  # noqa: F401  (fills the registry)
from tasks.merge.registry import get_method

pytestmark = pytest.mark.integration
EMBEDDINGS = ("model.embed_tokens.weight", "lm_head.weight")
WORDS_A = [f"w{i}" for i in range(20)]
WORDS_B = [f"w{i}" for i in reversed(range(5, 30))] + ["y1"]


@pytest.fixture(scope="module")
def parents(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """`a`: w0..w19 + added <x>; `b`: w29..w5 (reversed ids), y1, added <z> and <x>."""
    from tiny_models import make_tiny_llama_with_tokenizer

    root = tmp_path_factory.mktemp("vocab-parents")
    return {
        "a": make_tiny_llama_with_tokenizer(root / "a", 1, WORDS_A, added=("<x>",)),
        "b": make_tiny_llama_with_tokenizer(root / "b", 2, WORDS_B, added=("<z>", "<x>")),
    }


def merge(parents: dict[str, Path], tmp_path: Path, **settings: object) -> Path:
    recipe = {
        "merge_method": "linear",
        "base_model": str(parents["a"]),
        "models": [
            {"model": str(parents["a"]), "parameters": {"weight": 0.5}},
            {"model": str(parents["b"]), "parameters": {"weight": 0.5}},
        ],
        **settings,
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    out = tmp_path / "child"
    result = run_merge(str(path), str(out), env={"HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr
    return out


def rows_of(model_dir: Path) -> tuple[dict[str, int], dict[str, torch.Tensor]]:
    vocab = AutoTokenizer.from_pretrained(model_dir).get_vocab()
    return vocab, load_file(model_dir / "model.safetensors")


def linear_half(one: torch.Tensor, two: torch.Tensor) -> torch.Tensor:
    return get_method("linear").function(None, [one, two], weight=[0.5, 0.5], normalize=True)


def check_loads(out: Path, rows: int | None = None) -> tuple[dict[str, int], dict[str, torch.Tensor]]:
    tokenizer = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out)
    config = json.loads((out / "config.json").read_text())
    expected_rows = rows if rows is not None else len(tokenizer)
    assert config["vocab_size"] == expected_rows == model.get_input_embeddings().weight.shape[0]
    assert model.get_output_embeddings().weight.shape[0] == expected_rows
    ids = tokenizer("w7 w12 <x>", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logits = model(ids).logits
    assert logits.shape == (1, ids.shape[1], expected_rows) and bool(torch.isfinite(logits).all())
    return rows_of(out)


def test_union_vocabulary(parents: dict[str, Path], tmp_path: Path) -> None:
    out = merge(parents, tmp_path, tokenizer_source="union")
    vocab, merged = check_loads(out)
    (vocab_a, a), (vocab_b, b) = rows_of(parents["a"]), rows_of(parents["b"])
    assert set(vocab) == set(vocab_a) | set(vocab_b) and len(vocab) == 3 + 30 + 1 + 2
    assert {token: vocab[token] for token in vocab_a} == vocab_a  # the base keeps its ids
    for name in EMBEDDINGS:
        for token in ("w5", "w12", "w19", "<x>", "</s>"):  # in both parents: the method on their rows
            expected = linear_half(a[name][vocab_a[token]], b[name][vocab_b[token]])
            assert torch.equal(merged[name][vocab[token]], expected), (name, token)
        for token in ("y1", "w25", "<z>"):  # only in b: b's row for both parents
            assert torch.equal(merged[name][vocab[token]], b[name][vocab_b[token]]), (name, token)
        for token in ("w0", "w4"):  # only in a (the base): a's row for both
            assert torch.equal(merged[name][vocab[token]], a[name][vocab_a[token]]), (name, token)


def test_base_vocabulary(parents: dict[str, Path], tmp_path: Path) -> None:
    out = merge(parents, tmp_path, tokenizer_source="base")
    vocab, merged = check_loads(out)
    (vocab_a, a), (vocab_b, b) = rows_of(parents["a"]), rows_of(parents["b"])
    assert vocab == vocab_a
    for name in EMBEDDINGS:
        assert torch.equal(merged[name][vocab["w9"]], linear_half(a[name][vocab_a["w9"]], b[name][vocab_b["w9"]]))
        assert torch.equal(merged[name][vocab["w2"]], a[name][vocab_a["w2"]])


def test_a_models_vocabulary(parents: dict[str, Path], tmp_path: Path) -> None:
    out = merge(parents, tmp_path, tokenizer_source=str(parents["b"]))
    vocab, merged = check_loads(out)
    (vocab_a, a), (vocab_b, b) = rows_of(parents["a"]), rows_of(parents["b"])
    assert vocab == vocab_b
    for name in EMBEDDINGS:
        assert torch.equal(merged[name][vocab["<x>"]], linear_half(a[name][vocab_a["<x>"]], b[name][vocab_b["<x>"]]))
        assert torch.equal(merged[name][vocab["w29"]], b[name][vocab_b["w29"]])


def test_tokenizer_block_pads_adds_tokens_and_sets_the_chat_template(parents: dict[str, Path], tmp_path: Path) -> None:
    out = merge(
        parents,
        tmp_path,
        tokenizer={
            "source": "base",
            "pad_to_multiple_of": 16,
            "tokens": {"<tool>": {"source": {"kind": "zero"}}, "w7": {"source": str(parents["b"]), "force": True}},
        },
        chat_template="chatml",
    )
    vocab, merged = check_loads(out, rows=32)
    vocab_a, (vocab_b, b) = rows_of(parents["a"])[0], rows_of(parents["b"])
    assert len(vocab) == len(vocab_a) + 1 and vocab["<tool>"] == len(vocab_a)
    for name in EMBEDDINGS:
        assert merged[name].shape[0] == 32
        assert torch.equal(merged[name][vocab["<tool>"]], torch.zeros(16))
        assert torch.equal(merged[name][vocab["w7"]], b[name][vocab_b["w7"]])  # forced: b's row in both
        padding = merged[name][len(vocab) :]
        assert torch.equal(padding, padding[:1].expand_as(padding))  # every padding row is the same mean
    tokenizer = AutoTokenizer.from_pretrained(out)
    text = tokenizer.apply_chat_template([{"role": "user", "content": "w1"}], tokenize=False)
    assert text == "<|im_start|>user\nw1<|im_end|>\n"
    assert (out / "chat_template.jinja").exists()


def test_plan_only_with_a_union(parents: dict[str, Path], tmp_path: Path) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "merge_method": "linear",
                "models": [{"model": str(parents["a"]), "parameters": {"weight": 1.0}}, {"model": str(parents["b"])}],
                "parameters": {"weight": 0.5},
                "tokenizer_source": "union",
            }
        )
    )
    result = run_merge(str(recipe), "--plan")
    assert result.returncode == 0, result.stderr
    assert "compatible" in result.stdout


def test_vocabularies_need_a_tokenizer_source(parents: dict[str, Path], tmp_path: Path) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "merge_method": "linear",
                "models": [{"model": str(parents[n]), "parameters": {"weight": 1}} for n in "ab"],
            }
        )
    )
    result = run_merge(str(recipe), str(tmp_path / "out"))
    assert result.returncode == 2 and "set `tokenizer_source`" in " ".join(result.stderr.split())
