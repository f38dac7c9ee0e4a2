"""The zoo's character-level tokenizer, built locally because nothing can be downloaded.

One token per character keeps the models tiny and makes every skill a pure sequence task. The tokenizer is
saved as a `PreTrainedTokenizerFast`, so `AutoTokenizer.from_pretrained(model_dir)` and lm-eval's HFLM load
it offline like any hub tokenizer. It prepends `<bos>` by default because HFLM (add_bos_token=None) uses the
tokenizer's default special tokens: training sees exactly the ids lm-eval feeds at evaluation time.
"""

from __future__ import annotations

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from tasks.zoo.skills import CHARACTERS

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIAL_TOKENS: tuple[str, ...] = (PAD, BOS, EOS, UNK)
MODEL_MAX_LENGTH = 32
"""Longest sequence the zoo models handle; prompts are at most 7 tokens with `<bos>`, answers 4 with `<eos>`."""


def vocabulary() -> dict[str, int]:
    """Token -> id: the four special tokens first (pad=0, bos=1, eos=2, unk=3), then one per character."""
    tokens = [*SPECIAL_TOKENS, *CHARACTERS]
    return {token: index for index, token in enumerate(tokens)}


def build_tokenizer() -> PreTrainedTokenizerFast:
    """A fresh tokenizer; deterministic, so every zoo model ships an identical one."""
    vocab = vocabulary()
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    # Every character is its own pre-token, so the word-level model maps characters to ids one to one.
    core.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    # Fuse joins tokens without the spaces a word-level decoder would insert: "81", not "8 1".
    core.decoder = decoders.Fuse()
    core.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, vocab[BOS])]
    )
    core.add_special_tokens(list(SPECIAL_TOKENS))
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        model_max_length=MODEL_MAX_LENGTH,
        clean_up_tokenization_spaces=False,
    )
