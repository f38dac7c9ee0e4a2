"""The zoo's model shape: a real `LlamaForCausalLM`, only tiny.

A stock Llama (not a custom module) keeps the zoo honest: the merge engine, transformers and lm-eval see
exactly the tensor names, config and safetensors layout they would see for a real checkpoint. Every zoo
model shares this config, which is what makes their weights mergeable.
"""

from __future__ import annotations

from transformers import GenerationConfig, LlamaConfig

from tasks.zoo.tokenizer import BOS, EOS, MODEL_MAX_LENGTH, PAD, vocabulary

HIDDEN_SIZE = 128
INTERMEDIATE_SIZE = 384
LAYERS = 4
HEADS = 4


def zoo_model_config() -> LlamaConfig:
    """~0.87M parameters; untied embeddings so input and output embeddings merge independently."""
    vocab = vocabulary()
    return LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=HIDDEN_SIZE,
        intermediate_size=INTERMEDIATE_SIZE,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        num_key_value_heads=HEADS,
        max_position_embeddings=MODEL_MAX_LENGTH,
        tie_word_embeddings=False,
        bos_token_id=vocab[BOS],
        eos_token_id=vocab[EOS],
        pad_token_id=vocab[PAD],
    )


def zoo_generation_config() -> GenerationConfig:
    """Greedy decoding that stops at `<eos>`: what both the zoo's scoring and lm-eval's generate_until use."""
    vocab = vocabulary()
    return GenerationConfig(
        do_sample=False,
        bos_token_id=vocab[BOS],
        eos_token_id=vocab[EOS],
        pad_token_id=vocab[PAD],
    )
