"""Train one zoo model, deterministically, on one CPU thread.

A job is a plain picklable record so the build can run jobs in spawned worker processes (one core each)
and still get byte-identical weights for the same seed: each worker pins torch to one intra-op thread,
turns on deterministic algorithms, and derives all randomness (init, data, shuffling) from the job's seed.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

from tasks.zoo.architecture import zoo_generation_config, zoo_model_config
from tasks.zoo.recipe import TrainingStage, ZooRecipe
from tasks.zoo.skills import Example, training_examples
from tasks.zoo.tokenizer import build_tokenizer

IGNORE_INDEX = -100
"""Label value the loss skips: prompts and padding carry no gradient, only answers and `<eos>` do."""


@dataclass(frozen=True)
class TrainingJob:
    """Everything a worker needs to produce one model directory; `init_dir=None` means a fresh init."""

    name: str
    stage: TrainingStage
    recipe: ZooRecipe
    seed: int
    output_dir: Path
    init_dir: Path | None = None


@dataclass(frozen=True)
class TrainingResult:
    name: str
    output_dir: Path
    seconds: float
    final_loss: float
    """Mean loss over the last 20 steps: a cheap sanity check that the job actually learned."""


def job_seed(zoo_seed: int, model_name: str) -> int:
    """A seed per model, derived from its name, so an expert is the same whichever other experts are built."""
    digest = hashlib.sha256(f"{zoo_seed}/{model_name}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def encode_examples(
    examples: Sequence[Example], tokenizer: PreTrainedTokenizerFast
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Input ids, attention mask and labels for `<bos> prompt answer <eos>`, right-padded.

    Labels are set only on the answer and `<eos>`, so the model learns to answer and stop, not to predict
    random prompts. Right padding is harmless for a causal model: no real token attends to a pad.
    """
    prompts = tokenizer([example.prompt for example in examples])["input_ids"]
    answers = tokenizer([example.answer for example in examples], add_special_tokens=False)["input_ids"]
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    sequences = [prompt + answer + [eos] for prompt, answer in zip(prompts, answers, strict=True)]
    width = max(len(sequence) for sequence in sequences)
    padded_ids, padded_mask, padded_labels = [], [], []
    for prompt, sequence in zip(prompts, sequences, strict=True):
        padding = width - len(sequence)
        padded_ids.append(sequence + [pad] * padding)
        padded_mask.append([1] * len(sequence) + [0] * padding)
        padded_labels.append([IGNORE_INDEX] * len(prompt) + sequence[len(prompt) :] + [IGNORE_INDEX] * padding)
    input_ids = torch.tensor(padded_ids, dtype=torch.long)
    attention_mask = torch.tensor(padded_mask, dtype=torch.long)
    labels = torch.tensor(padded_labels, dtype=torch.long)
    return input_ids, attention_mask, labels


def learning_rate_factor(step: int, total_steps: int, warmup_fraction: float) -> float:
    """Linear warm-up then cosine decay to zero: the multiplier of the peak learning rate at `step`."""
    warmup_steps = max(1, round(total_steps * warmup_fraction))
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def train(
    model: LlamaForCausalLM,
    tokenizer: PreTrainedTokenizerFast,
    stage: TrainingStage,
    recipe: ZooRecipe,
    seed: int,
) -> list[float]:
    """Train `model` in place on `stage`'s mixture; returns the loss of every step."""
    examples = training_examples(stage.mixture, seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=stage.learning_rate, weight_decay=recipe.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: learning_rate_factor(step, stage.steps, recipe.warmup_fraction)
    )
    model.train()
    losses = []
    for _ in range(stage.steps):
        batch = list(itertools.islice(examples, recipe.batch_size))
        input_ids, attention_mask, labels = encode_examples(batch, tokenizer)
        loss = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
    model.eval()
    return losses


def configure_deterministic_torch() -> None:
    """One intra-op thread and deterministic kernels: the conditions under which rebuilds are bit-exact."""
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)


def prepare_worker() -> None:
    """Initializer of a build's worker processes: deterministic torch, and no transformers progress bars."""
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()
    torch.set_num_interop_threads(1)
    configure_deterministic_torch()


def run_training_job(job: TrainingJob) -> TrainingResult:
    """Worker entry point: train one model and save it as a loadable HF model directory."""
    started = time.perf_counter()
    configure_deterministic_torch()
    torch.manual_seed(job.seed)
    tokenizer = build_tokenizer()
    if job.init_dir is None:
        model = LlamaForCausalLM(zoo_model_config())
    else:
        model = LlamaForCausalLM.from_pretrained(job.init_dir, dtype=torch.float32)
    losses = train(model, tokenizer, job.stage, job.recipe, job.seed)
    save_model_dir(model, tokenizer, job.output_dir)
    tail = losses[-20:]
    return TrainingResult(
        name=job.name,
        output_dir=job.output_dir,
        seconds=time.perf_counter() - started,
        final_loss=sum(tail) / len(tail),
    )


def save_model_dir(model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast, output_dir: Path) -> None:
    """Weights as safetensors, config, greedy generation config and tokenizer: a complete offline model."""
    output_dir.mkdir(parents=True, exist_ok=True)
    model.generation_config = zoo_generation_config()
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
