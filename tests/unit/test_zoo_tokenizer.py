"""The character tokenizer: one id per character, `<bos>` first, decoding without spaces, and the same
behaviour after a save/load round trip through `AutoTokenizer` (how lm-eval and the merge engine load it)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from transformers import AutoTokenizer

from tasks.zoo.skills import CHARACTERS, FORMATS
from tasks.zoo.tokenizer import SPECIAL_TOKENS, build_tokenizer, vocabulary

TOKENIZER = build_tokenizer()


def test_vocabulary_is_special_tokens_then_characters() -> None:
    vocab = vocabulary()
    assert len(vocab) == 47 == len(TOKENIZER)
    assert [vocab[token] for token in SPECIAL_TOKENS] == [0, 1, 2, 3]
    assert (TOKENIZER.pad_token_id, TOKENIZER.bos_token_id, TOKENIZER.eos_token_id) == (0, 1, 2)
    assert TOKENIZER.unk_token_id == 3
    assert vocab["0"] == 4 and vocab["a"] == 14 and vocab[" "] == 46


def test_known_encoding() -> None:
    vocab = vocabulary()
    ids = TOKENIZER("23+58=")["input_ids"]
    assert ids == [1, vocab["2"], vocab["3"], vocab["+"], vocab["5"], vocab["8"], vocab["="]]


@pytest.mark.parametrize("format_name", sorted(FORMATS))
def test_every_format_round_trips(format_name: str) -> None:
    rng = random.Random(format_name)
    for _ in range(50):
        example = FORMATS[format_name](rng)
        text = example.prompt + example.answer
        ids = TOKENIZER(text)["input_ids"]
        assert ids[0] == TOKENIZER.bos_token_id
        assert len(ids) == len(text) + 1
        assert TOKENIZER.decode(ids, skip_special_tokens=True) == text
        answer_ids = TOKENIZER(example.answer, add_special_tokens=False)["input_ids"]
        assert TOKENIZER.decode(answer_ids + [TOKENIZER.eos_token_id], skip_special_tokens=True) == example.answer


@given(st.text(alphabet=CHARACTERS, max_size=30))
def test_any_text_over_the_alphabet_round_trips_without_added_spaces(text: str) -> None:
    ids = TOKENIZER(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(text)
    assert TOKENIZER.unk_token_id not in ids
    assert TOKENIZER.decode(ids) == text


def test_unknown_characters_become_unk() -> None:
    assert TOKENIZER("A?", add_special_tokens=False)["input_ids"] == [3, 3]


def test_saved_tokenizer_loads_with_auto_tokenizer_and_behaves_the_same(tmp_path: Path) -> None:
    TOKENIZER.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    for text in ["23+58=81", "dbeca>abcde", "abcde|edcba", "abc:abc", "3+5=8"]:
        assert loaded(text)["input_ids"] == TOKENIZER(text)["input_ids"]
    batch = loaded(["ab|", "abc|"], padding="longest")["input_ids"]
    assert batch[0][-1] == loaded.pad_token_id
    assert loaded.decode([4 + 8, 4 + 1, 2, 0], skip_special_tokens=True) == "81"
    assert (loaded.bos_token, loaded.eos_token, loaded.pad_token) == ("<bos>", "<eos>", "<pad>")
