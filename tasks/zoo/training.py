"""Train one zoo model, deterministically, on one CPU thread, in a worker process of its own.

A job is a plain JSON record: the build starts `python -m tasks.zoo.training` with the job on stdin and
reads the result from stdout. A process of its own lets the build choose the environment the worker's
libraries start with (`tasks/zoo/numerics.py`), which decides their kernels before any of them loads. The
worker runs one torch thread with deterministic algorithms and derives all randomness (init, data,
shuffling) from the job's seed, so a job gives the same weight files wherever it runs with those numerics.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict
from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

from tasks.zoo.architecture import zoo_generation_config, zoo_model_config
from tasks.zoo.blas_linear import use_blas_linears
from tasks.zoo.numerics import PINNED_BLAS_CORE, PINNED_CPU_CAPABILITY, ZooNumerics
from tasks.zoo.recipe import TrainingStage, ZooRecipe
from tasks.zoo.skills import Example, training_examples
from tasks.zoo.tokenizer import MODEL_MAX_LENGTH, build_tokenizer

IGNORE_INDEX = -100
"""Label value the loss skips: prompts and padding carry no gradient, only answers and `<eos>` do."""

ROW_TOKENS = 2 * MODEL_MAX_LENGTH
"""Length of a packed row: several examples share a row, each attending only to itself."""

READY_LINE = "evomerge-training-ready"
"""A worker prints it once its imports are done, then waits for its job on stdin."""

RESULT_PREFIX = "evomerge-training-result "
"""Marks the worker's result line on stdout, so stray prints from libraries cannot be mistaken for it."""


class TrainingJob(BaseModel):
    """Everything a worker needs to produce one model directory; `init_dir=None` means a fresh init."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    stage: TrainingStage
    recipe: ZooRecipe
    seed: int
    output_dir: Path
    numerics: ZooNumerics
    init_dir: Path | None = None


class TrainingResult(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    output_dir: Path
    seconds: float
    final_loss: float
    """Mean loss over the last 20 steps: a cheap sanity check that the job actually learned."""
    cpu_capability: str
    """The ATen kernel build the worker ran (`AVX2` when pinned)."""


def job_seed(zoo_seed: int, model_name: str) -> int:
    """A seed per model, derived from its name, so an expert is the same whichever other experts are built."""
    digest = hashlib.sha256(f"{zoo_seed}/{model_name}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


@dataclass(frozen=True)
class PackedBatch:
    """Examples packed into rows: `position_ids` restart at 0 for each example, which tells transformers
    to let every example attend only to itself, so a packed batch computes exactly the loss of one padded
    row per example, with about a quarter fewer tokens."""

    input_ids: torch.Tensor
    labels: torch.Tensor
    position_ids: torch.Tensor


def pack_examples(
    examples: Sequence[Example], tokenizer: PreTrainedTokenizerFast, row_tokens: int = ROW_TOKENS
) -> PackedBatch:
    """`<bos> prompt answer <eos>` per example, labelled only on the answer and `<eos>`, packed into rows
    of at most `row_tokens` (first fit, longest first), the rows right-padded to the longest one.

    Labels on the answer only teach the model to answer and stop, not to predict random prompts. Padding
    is a segment of its own (its positions restart too), so no example attends to it.
    """
    prompts = tokenizer([example.prompt for example in examples])["input_ids"]
    answers = tokenizer([example.answer for example in examples], add_special_tokens=False)["input_ids"]
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    sequences = [
        (prompt + answer + [eos], [IGNORE_INDEX] * len(prompt) + answer + [eos])
        for prompt, answer in zip(prompts, answers, strict=True)
    ]
    longest = max(len(ids) for ids, _ in sequences)
    if longest > row_tokens:
        raise ValueError(f"an example of {longest} tokens does not fit a packed row of {row_tokens}")
    rows: list[tuple[list[int], list[int], list[int]]] = []
    for index in sorted(range(len(sequences)), key=lambda index: -len(sequences[index][0])):
        ids, labels = sequences[index]
        row = next((row for row in rows if len(row[0]) + len(ids) <= row_tokens), None)
        if row is None:
            row = ([], [], [])
            rows.append(row)
        row[0].extend(ids)
        row[1].extend(labels)
        row[2].extend(range(len(ids)))
    width = max(len(ids) for ids, _, _ in rows)
    padded = [(width - len(ids), ids, labels, positions) for ids, labels, positions in rows]
    return PackedBatch(
        input_ids=torch.tensor([ids + [pad] * extra for extra, ids, _, _ in padded], dtype=torch.long),
        labels=torch.tensor([labels + [IGNORE_INDEX] * extra for extra, _, labels, _ in padded], dtype=torch.long),
        position_ids=torch.tensor([positions + list(range(extra)) for extra, _, _, positions in padded]),
    )


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
        batch = pack_examples(list(itertools.islice(examples, recipe.batch_size)), tokenizer)
        loss = model(
            input_ids=batch.input_ids, position_ids=batch.position_ids, labels=batch.labels, use_cache=False
        ).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
    model.eval()
    return losses


def configure_deterministic_torch() -> None:
    """One thread, deterministic kernels and no oneDNN: the conditions under which rebuilds are bit-exact."""
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.backends.mkldnn.enabled = False


def check_worker_numerics(numerics: ZooNumerics) -> str:
    """The ATen kernel build this worker runs; raises when pinned numerics did not take effect."""
    capability = torch.backends.cpu.get_cpu_capability()
    if not numerics.pinned:
        return capability
    if capability != PINNED_CPU_CAPABILITY:
        raise RuntimeError(f"pinned numerics need ATen's {PINNED_CPU_CAPABILITY} kernels, the worker runs {capability}")
    core = os.environ.get("OPENBLAS_CORETYPE")
    if core != PINNED_BLAS_CORE:
        raise RuntimeError(f"pinned numerics need OPENBLAS_CORETYPE={PINNED_BLAS_CORE}, the worker has {core!r}")
    return capability


def run_training_job(job: TrainingJob) -> TrainingResult:
    """Train one model and save it as a loadable HF model directory."""
    started = time.perf_counter()
    configure_deterministic_torch()
    capability = check_worker_numerics(job.numerics)
    torch.manual_seed(job.seed)
    tokenizer = build_tokenizer()
    if job.init_dir is None:
        model = LlamaForCausalLM(zoo_model_config())
    else:
        model = LlamaForCausalLM.from_pretrained(job.init_dir, dtype=torch.float32)
    if job.numerics.pinned:
        use_blas_linears(model)
    losses = train(model, tokenizer, job.stage, job.recipe, job.seed)
    save_model_dir(model, tokenizer, job.output_dir)
    tail = losses[-20:]
    return TrainingResult(
        name=job.name,
        output_dir=job.output_dir,
        seconds=time.perf_counter() - started,
        final_loss=sum(tail) / len(tail),
        cpu_capability=capability,
    )


def save_model_dir(model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast, output_dir: Path) -> None:
    """Weights as safetensors, config, greedy generation config and tokenizer: a complete offline model."""
    output_dir.mkdir(parents=True, exist_ok=True)
    model.generation_config = zoo_generation_config()
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)


def main() -> None:
    """Worker entry point: a `TrainingJob` as JSON on stdin, the `TrainingResult` on stdout's last line."""
    from transformers.utils import logging as transformers_logging

    from tasks.child_process import die_with

    parent = os.environ.get("EVOMERGE_TRAINING_PARENT")
    if parent:
        die_with(int(parent))
    transformers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()
    torch.set_num_interop_threads(1)
    print(READY_LINE, flush=True)
    job = TrainingJob.model_validate_json(sys.stdin.read())
    result = run_training_job(job)
    print(RESULT_PREFIX + json.dumps(result.model_dump(mode="json")), flush=True)


if __name__ == "__main__":
    main()
