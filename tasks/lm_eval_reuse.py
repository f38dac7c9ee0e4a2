"""Work lm-eval redoes on every call although its inputs never change within a search: building each
task's requests (rendering every prompt's template), reading its documents back from the Arrow table,
tokenizing the same prompts, serialising each task's config for the results (it reads the source of the
task's `!function`s from disk), and decoding answers the candidates before gave too.

A search scores hundreds of candidates on the same prompts; on the demo zoo the first two cost ~40 % of
everything lm-eval did outside the forward passes. All of it is memoized on values that fully determine
it (the build arguments; the strings, tokens and tokenizer settings; the config until `set_config` changes
it), and every call still gets fresh request objects, so no answer of one candidate can leak into the next
candidate's scores.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lm_eval.api.instance import Instance
    from lm_eval.api.task import Task
    from lm_eval.models.huggingface import HFLM
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

_MAX_MEMOIZED_STRINGS = 200_000
"""Tokenizations kept per wrapper; past it the memo starts over (a search's prompts are far fewer)."""


def fresh_instances(instances: list[Instance]) -> list[Instance]:
    """Copies of built requests with no responses: what `build_all_requests` would produce again.
    (A shallow copy of each instance's fields: `dataclasses.replace` would rerun `__init__`, 10x slower.)"""
    copies = []
    for instance in instances:
        copy = object.__new__(type(instance))
        copy.__dict__.update(instance.__dict__)
        copy.resps = []
        copy.filtered_resps = {}
        copies.append(copy)
    return copies


def reuse_task_inputs(task: Task) -> None:
    """Make `task.build_all_requests` build once per distinct set of arguments and then hand out fresh
    copies of those requests (lm-eval's evaluate fills each request's responses in place), and
    `task.doc_iterator` read the documents once (they are only read, to score the answers), and
    `task.dump_config` serialise the config once until `task.set_config` changes it."""
    build = task.build_all_requests
    iterate = task.doc_iterator
    dump = task.dump_config
    set_config = task.set_config
    built: dict[str, list[Instance]] = {}
    documents: dict[str, list[tuple[int, Any]]] = {}
    dumped: list[dict[str, Any]] = []

    def build_all_requests(**kwargs: Any) -> None:
        key = repr(sorted(kwargs.items()))
        if key not in built:
            build(**kwargs)
            built[key] = fresh_instances(task._instances)
        task._instances = fresh_instances(built[key])

    def doc_iterator(**kwargs: Any) -> Iterator[tuple[int, Any]]:
        key = repr(sorted(kwargs.items()))
        if key not in documents:
            documents[key] = list(iterate(**kwargs))
        return iter(documents[key])

    def dump_config() -> dict[str, Any]:
        if not dumped:
            dumped.append(dump())
        return copy.deepcopy(dumped[0])

    def set_config_and_forget(*args: Any, **kwargs: Any) -> None:
        dumped.clear()
        set_config(*args, **kwargs)

    task.build_all_requests = build_all_requests  # type: ignore[method-assign]
    task.doc_iterator = doc_iterator  # type: ignore[method-assign]
    task.dump_config = dump_config  # type: ignore[method-assign]
    task.set_config = set_config_and_forget  # type: ignore[method-assign]


def memoizing_hflm(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, batch_size: int) -> HFLM:
    """An HFLM whose prompt tokenizations are computed once per string (or batch of strings), whose answer
    decodings are computed once per token sequence, and which draws no progress bar."""
    from lm_eval.models.huggingface import HFLM

    class MemoizingHFLM(HFLM):  # type: ignore[misc]
        _encoded: dict[tuple[Any, ...], list[int]]
        _batches: dict[tuple[Any, ...], tuple[Any, Any]]
        _decoded: dict[tuple[Any, ...], str]

        def tok_encode(
            self,
            string: str,
            add_special_tokens: bool | None = None,
            left_truncate_len: int | None = None,
            **kwargs: Any,
        ) -> list[int]:
            key = (string, add_special_tokens, left_truncate_len, tuple(sorted(kwargs.items())))
            cached = self._encoded.get(key)
            if cached is None:
                if len(self._encoded) >= _MAX_MEMOIZED_STRINGS:
                    self._encoded.clear()
                cached = self._encoded[key] = super().tok_encode(
                    string, add_special_tokens, left_truncate_len, **kwargs
                )
            return list(cached)

        def tok_batch_encode(
            self,
            strings: list[str],
            padding_side: str = "left",
            left_truncate_len: int | None = None,
            truncation: bool = False,
        ) -> tuple[Any, Any]:
            key = (tuple(strings), padding_side, left_truncate_len, truncation)
            cached = self._batches.get(key)
            if cached is None:
                if len(self._batches) >= _MAX_MEMOIZED_STRINGS // 64:
                    self._batches.clear()
                cached = self._batches[key] = super().tok_batch_encode(
                    strings, padding_side, left_truncate_len, truncation
                )
            input_ids, attention_mask = cached
            return input_ids.clone(), attention_mask.clone()

        def tok_decode(self, tokens: Any, skip_special_tokens: bool = True) -> str:
            if not isinstance(tokens, list | tuple):  # a single id, or a tensor
                return str(super().tok_decode(tokens, skip_special_tokens=skip_special_tokens))
            key = (tuple(tokens), skip_special_tokens)
            cached = self._decoded.get(key)
            if cached is None:
                if len(self._decoded) >= _MAX_MEMOIZED_STRINGS:
                    self._decoded.clear()
                cached = self._decoded[key] = super().tok_decode(list(tokens), skip_special_tokens=skip_special_tokens)
            return cached

        def generate_until(self, requests: list[Instance], disable_tqdm: bool = False) -> list[str]:
            # the bar is hidden anyway (redirected stderr); drawing it cost ~1 ms per call
            return list(super().generate_until(requests, disable_tqdm=True))

    lm = MemoizingHFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
    lm._encoded, lm._batches, lm._decoded = {}, {}, {}
    return lm
