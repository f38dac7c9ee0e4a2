"""Recipe templates for the parity suite: data, one entry per (method, variant).

A template is a function of the layout's parent models (`Ctx`: paths of base/a/b/c and the layer count)
returning a mergekit recipe as a dict; it is written to YAML with absolute local paths and run by both
`mergekit-yaml` and `evomerge merge`. To cover a new method, add entries here: the suite runs every
template whose `merge_method` evomerge registers (tasks.merge.registry.METHODS) on every layout listed
in `layouts` (default: all), and `test_every_method_has_a_template` fails for a registered method with none.

`exact=False` marks randomised methods (DARE/DELLA with density < 1): mergekit draws its masks from the
global torch RNG in scheduler order, evomerge from a per-tensor generator, so only names, shapes, dtypes
and finiteness are compared there. Their density-1 variants are exact and test the rest of the pipeline.

`TIED_CUTOFF_METHODS` marks the methods that prune task vectors by magnitude (TIES, breadcrumbs): where
entries share the magnitude at a cut-off, mergekit keeps whichever its unstable argsort puts first and
evomerge the lowest indices, so their outputs must be bit-identical everywhere except at those tied
entries, which the harness recomputes from mergekit's own plan (harness.TIE_ORACLE).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Recipe = dict[str, Any]
"""One recipe; a template may also return a list of them: a multi-document recipe, run by `mergekit-multi`
and `evomerge merge` alike, whose output (the unnamed document, else the last) is compared."""


@dataclass(frozen=True)
class Ctx:
    layout: str
    base: str
    a: str
    b: str
    c: str
    layers: int
    va: str = ""  # parents with their own vocabularies (layouts with a tokenizer only; see models.py)
    vb: str = ""


@dataclass(frozen=True)
class RecipeSpec:
    build: Callable[[Ctx], Recipe | list[Recipe]]
    exact: bool = True
    random_seed: int | None = None
    layouts: tuple[str, ...] | None = None  # None: every layout
    # layout -> why mergekit 0.1.5 itself cannot run this case (the test xfails instead of comparing)
    mergekit_broken: dict[str, str] = field(default_factory=dict)
    # both tools must refuse this recipe; evomerge's message must contain this text
    refused_with: str | None = None
    # extra `evomerge merge` flags for this case (e.g. where a multi-document recipe keeps its intermediates)
    evomerge_args: tuple[str, ...] = ()

    def documents(self, ctx: Ctx) -> list[Recipe]:
        built = self.build(ctx)
        return built if isinstance(built, list) else [built]

    def method(self, ctx: Ctx) -> str:
        documents = self.documents(ctx)
        return MULTI if len(documents) > 1 else str(documents[0]["merge_method"])

    def methods(self, ctx: Ctx) -> set[str]:
        """Every merge method the case runs (all of them must be registered for it to run)."""
        return {str(document["merge_method"]) for document in self.documents(ctx)}


MULTI = "multi"
"""The recipe id prefix of multi-document cases."""


# Conditional settings reused below: per-layer gradients, `filter:` branches, and a filter-less default.
def attn_mlp(attn: Any, mlp: Any, default: Any) -> list[dict[str, Any]]:
    return [{"filter": "self_attn", "value": attn}, {"filter": "mlp", "value": mlp}, {"value": default}]


def _models(ctx: Ctx, *entries: tuple[str, dict[str, Any] | None]) -> list[dict[str, Any]]:
    out = []
    for model, params in entries:
        entry: dict[str, Any] = {"model": model}
        if params is not None:
            entry["parameters"] = params
        out.append(entry)
    return out


# ------------------------------------------------------------------------------------------------
# linear
def linear_grad_filters(x: Ctx) -> Recipe:
    return {
        "merge_method": "linear",
        "models": _models(
            x,
            (x.a, {"weight": attn_mlp([0.2, 0.7, 0.4], 0.6, 0.5)}),
            (x.b, {"weight": [0.8, 0.3]}),
            (x.c, {"weight": 0.25}),
        ),
    }


def linear_no_normalize(x: Ctx) -> Recipe:
    return {
        "merge_method": "linear",
        "models": _models(x, (x.a, {"weight": 0.3}), (x.b, {"weight": 0.45}), (x.c, {"weight": 0.25})),
        "parameters": {"normalize": False},
    }


def linear_top_level_weight(x: Ctx) -> Recipe:
    # A top-level per-model parameter applies to every model; model-level settings override it.
    return {
        "merge_method": "linear",
        "models": _models(x, (x.a, None), (x.b, {"weight": [0.1, 0.9]}), (x.c, None)),
        "parameters": {"weight": attn_mlp(0.7, [0.3, 0.6], 0.4), "normalize": True},
    }


def linear_dtype_bf16(x: Ctx) -> Recipe:
    recipe = linear_grad_filters(x)
    recipe["dtype"] = "bfloat16"
    return recipe


def linear_out_dtype_bf16(x: Ctx) -> Recipe:
    recipe = linear_grad_filters(x)
    recipe["out_dtype"] = "bfloat16"
    return recipe


def linear_base_unlisted(x: Ctx) -> Recipe:
    # mergekit (plan.py::normalize_config) appends a base_model missing from `models:` as one more input,
    # whatever the method; linear's weight is INPUT-scoped, so the base then needs a weight too.
    recipe = linear_no_normalize(x)
    recipe["base_model"] = x.base
    return recipe


def linear_base_unlisted_top_weight(x: Ctx) -> Recipe:
    # ... and a top-level weight reaches it: the base enters the average.
    return {
        "merge_method": "linear",
        "base_model": x.base,
        "models": _models(x, (x.a, {"weight": 0.5}), (x.b, None)),
        "parameters": {"weight": 0.25},
    }


def linear_out_dtype_fp32(x: Ctx) -> Recipe:
    recipe = linear_grad_filters(x)
    recipe["out_dtype"] = "float32"
    return recipe


def linear_tokenizer_base(x: Ctx) -> Recipe:
    return {
        "merge_method": "linear",
        "base_model": x.base,
        "models": _models(x, (x.base, {"weight": 0.2}), (x.a, {"weight": 0.5}), (x.b, {"weight": 0.3})),
        "tokenizer_source": "base",
    }


# ------------------------------------------------------------------------------------------------
# tokenizers: parents with different vocabularies (va, vb), rows remapped onto the output vocabulary.
# Every recipe names base_model: without it mergekit takes the tokenizer base from a set (random order).
def linear_tokenizer_union(x: Ctx) -> Recipe:
    # <|im_start|>/<|im_end|>: in va and vb, not the base -> mean of va's and vb's rows; xa: va's row;
    # w3..w9 (not in vb) and w90..w95 (not in va): the base's row
    return {
        "merge_method": "linear",
        "base_model": x.base,
        "models": _models(x, (x.base, {"weight": 0.2}), (x.va, {"weight": 0.5}), (x.vb, {"weight": 0.3})),
        "tokenizer_source": "union",
    }


def linear_tokenizer_base_vocab(x: Ctx) -> Recipe:
    recipe = linear_tokenizer_union(x)
    recipe["tokenizer_source"] = "base"
    return recipe


def linear_tokenizer_union_bf16(x: Ctx) -> Recipe:
    # the mean of two rows and the padding rows' mean computed in bfloat16, as mergekit does
    recipe = linear_tokenizer_union(x)
    del recipe["tokenizer_source"]
    recipe["tokenizer"] = {"source": "union", "pad_to_multiple_of": 64}
    recipe["dtype"] = "bfloat16"
    return recipe


def linear_chat_template_literal(x: Ctx) -> Recipe:
    # no tokenizer_source: mergekit re-serialises the donor's tokenizer with the template set on it
    return {
        "merge_method": "linear",
        "base_model": x.base,
        "models": _models(x, (x.base, {"weight": 0.2}), (x.a, {"weight": 0.5}), (x.b, {"weight": 0.3})),
        "chat_template": "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}",
    }


def linear_chat_template_auto_union(x: Ctx) -> Recipe:
    # the template va and vb both carry wins the plurality (the base has none)
    recipe = linear_tokenizer_union(x)
    recipe["chat_template"] = "auto"
    return recipe


def ta_tokenizer_model(x: Ctx) -> Recipe:
    # va's tokenizer as it is: base and vb lack xa (va's row is the only one), vb lacks w3..w9 (the base's)
    return {
        "merge_method": "task_arithmetic",
        "base_model": x.base,
        "models": _models(x, (x.va, {"weight": 0.6}), (x.vb, {"weight": [0.2, 0.7]})),
        "tokenizer_source": x.va,
    }


def ties_tokenizer_tokens(x: Ctx) -> Recipe:
    """`tokenizer:` with per-token sources, `force`, new tokens and padding."""
    return {
        "merge_method": "ties",
        "base_model": x.base,
        "models": _models(
            x,
            (x.base, None),
            (x.va, {"weight": 0.6, "density": 0.7}),
            (x.vb, {"weight": 0.4, "density": 0.5}),
        ),
        "tokenizer": {
            "source": "union",
            "pad_to_multiple_of": 32,
            "tokens": {
                "<|im_start|>": {"source": {"kind": "model_token", "model": x.base, "token": "<s>"}},
                "<|im_end|>": {"source": x.vb},
                "xa": {"source": {"kind": "zero"}},
                "w5": {"source": {"kind": "model_token", "model": x.va, "token_id": 7}, "force": True},
                "<tool>": {"source": {"kind": "zero"}},
                "<think>": {"source": {"kind": "model_token", "model": x.vb, "token": "w50"}},
            },
        },
    }


def slerp_tokenizer_model_bf16(x: Ctx) -> Recipe:
    # vb's vocabulary; the base lacks the added tokens (vb's rows), vb lacks w3..w9 (the base's rows)
    return {
        "merge_method": "slerp",
        "base_model": x.base,
        "models": _models(x, (x.base, None), (x.vb, None)),
        "parameters": {"t": [0.3, 0.7]},
        "tokenizer": {"source": x.vb, "pad_to_multiple_of": 8},
        "dtype": "bfloat16",
    }


# ------------------------------------------------------------------------------------------------
# task arithmetic
def ta_grad_lambda(x: Ctx) -> Recipe:
    return {
        "merge_method": "task_arithmetic",
        "base_model": x.base,
        "models": _models(
            x,
            (x.base, None),
            (x.a, {"weight": [1.0, 0.5, 0.0]}),
            (x.b, {"weight": attn_mlp(0.7, [0.2, 0.9], 0.3)}),
            (x.c, {"weight": -0.2}),
        ),
        "parameters": {"lambda": 0.8},
    }


def ta_normalize(x: Ctx) -> Recipe:
    return {
        "merge_method": "task_arithmetic",
        "base_model": x.base,
        "models": _models(x, (x.a, {"weight": 0.6}), (x.b, {"weight": attn_mlp(0.4, 0.1, 0.3)})),
        "parameters": {"normalize": True, "lambda": [1.0, 1.5]},
    }


def ta_zero_sum_normalize(x: Ctx) -> Recipe:
    # weights summing to 0 with normalize: mergekit replaces the |divisor| < 1e-8 by 1
    return {
        "merge_method": "task_arithmetic",
        "base_model": x.base,
        "models": _models(x, (x.a, {"weight": 0.5}), (x.b, {"weight": -0.5})),
        "parameters": {"normalize": True},
    }


def ta_overlapping_filters(x: Ctx) -> Recipe:
    """First matching filter wins; a model-level setting whose filters all miss falls through to the top."""
    return {
        "merge_method": "task_arithmetic",
        "base_model": x.base,
        "models": _models(
            x,
            (x.a, {"weight": [{"filter": "mlp", "value": 0.2}]}),
            (
                x.b,
                {
                    "weight": [
                        {"filter": "q_proj", "value": 0.9},
                        {"filter": "self_attn", "value": [0.1, 0.5]},
                        {"filter": "layers.1.", "value": 0.3},
                        {"filter": "h.1.", "value": 0.35},
                        {"value": 0.6},
                    ]
                },
            ),
        ),
        "parameters": {"weight": [0.5, 0.25], "lambda": [{"filter": "embed", "value": 0.5}, {"value": 1.1}]},
    }


def ta_dtype_fp16(x: Ctx) -> Recipe:
    recipe = ta_grad_lambda(x)
    recipe["dtype"] = "float16"
    return recipe


def ta_dtype_bf16(x: Ctx) -> Recipe:
    recipe = ta_grad_lambda(x)
    recipe["dtype"] = "bfloat16"
    return recipe


def ta_fp32_out_bf16(x: Ctx) -> Recipe:
    recipe = ta_grad_lambda(x)
    recipe["dtype"] = "float32"
    recipe["out_dtype"] = "bfloat16"
    return recipe


# ------------------------------------------------------------------------------------------------
# TIES and the other sparsified task-vector methods
def ties_density_grad(x: Ctx) -> Recipe:
    return {
        "merge_method": "ties",
        "base_model": x.base,
        "models": _models(
            x,
            (x.base, None),
            (x.a, {"weight": 0.6, "density": [0.9, 0.5, 0.2]}),
            (x.b, {"weight": [0.2, 0.8], "density": attn_mlp(0.3, 0.6, 0.7)}),
            (x.c, {"weight": 0.4, "density": 0.5}),
        ),
        "parameters": {"lambda": 1.2},
    }


def ties_rescale_no_normalize(x: Ctx) -> Recipe:
    return {
        "merge_method": "ties",
        "base_model": x.base,
        "models": _models(
            x, (x.a, {"weight": 0.5, "density": 0.4}), (x.b, {"weight": 0.5, "density": 0.6}), (x.c, {"weight": 0.3})
        ),
        "parameters": {"normalize": False, "rescale": True, "int8_mask": True},
    }


def ties_dtype_bf16(x: Ctx) -> Recipe:
    recipe = ties_density_grad(x)
    recipe["dtype"] = "bfloat16"
    return recipe


def _gta(method: str, density: Any, extra: dict[str, Any] | None = None, **top: Any) -> Callable[[Ctx], Recipe]:
    def build(x: Ctx) -> Recipe:
        per_a = {"weight": 0.5, "density": density, **(extra or {})}
        per_b = {"weight": attn_mlp(0.6, 0.3, 0.4), "density": density, **(extra or {})}
        per_c = {"weight": [0.2, 0.5], "density": density, **(extra or {})}
        return {
            "merge_method": method,
            "base_model": x.base,
            "models": _models(x, (x.base, None), (x.a, per_a), (x.b, per_b), (x.c, per_c)),
            "parameters": {"lambda": 0.9, **top},
        }

    return build


# ------------------------------------------------------------------------------------------------
# SLERP
def slerp_models_filters(x: Ctx) -> Recipe:
    return {
        "merge_method": "slerp",
        "base_model": x.base,
        "models": _models(x, (x.base, None), (x.a, None)),
        "parameters": {"t": attn_mlp([0.0, 0.5, 0.3, 0.7, 1.0], [1.0, 0.5, 0.7, 0.3, 0.0], 0.3)},
    }


def slerp_base_unlisted(x: Ctx) -> Recipe:
    # base_model not listed under `models:` (mergekit appends it as an input)
    return {
        "merge_method": "slerp",
        "base_model": x.base,
        "models": _models(x, (x.c, None)),
        "parameters": {"t": [0.6, 0.1, 0.9]},
    }


def slerp_slices(x: Ctx) -> Recipe:
    """Two output slices: t restarts at 0 in each slice; slice-level t overrides the top level."""
    half = x.layers // 2
    return {
        "merge_method": "slerp",
        "base_model": x.base,
        "slices": [
            {
                "sources": [
                    {"model": x.base, "layer_range": [0, half]},
                    {"model": x.b, "layer_range": [0, half]},
                ],
                "parameters": {"t": attn_mlp([0.1, 0.9], 0.4, 0.6)},
            },
            {
                "sources": [
                    {"model": x.base, "layer_range": [half, x.layers]},
                    {"model": x.b, "layer_range": [half, x.layers]},
                ]
            },
        ],
        "parameters": {"t": [0.25, 0.75]},
    }


def slerp_slices_stack(x: Ctx) -> Recipe:
    """Overlapping slices: more output layers than the parents have (renumbering, num_hidden_layers)."""
    return {
        "merge_method": "slerp",
        "base_model": x.base,
        "slices": [
            {"sources": [{"model": x.base, "layer_range": [0, 2]}, {"model": x.a, "layer_range": [0, 2]}]},
            {
                "sources": [
                    {"model": x.base, "layer_range": [x.layers - 2, x.layers]},
                    {"model": x.a, "layer_range": [x.layers - 2, x.layers]},
                ]
            },
        ],
        "parameters": {"t": attn_mlp([0.2, 0.8], [0.9, 0.1], 0.5)},
    }


def slerp_out_dtype_bf16(x: Ctx) -> Recipe:
    recipe = slerp_models_filters(x)
    recipe["out_dtype"] = "bfloat16"
    return recipe


def slerp_dtype_bf16(x: Ctx) -> Recipe:
    recipe = slerp_models_filters(x)
    recipe["dtype"] = "bfloat16"
    return recipe


# ------------------------------------------------------------------------------------------------
# other methods mergekit 0.1.5 registers
def nuslerp_plain(x: Ctx) -> Recipe:
    return {
        "merge_method": "nuslerp",
        "models": _models(x, (x.a, {"weight": 0.3}), (x.b, {"weight": [0.9, 0.4]})),
    }


def nuslerp_base_rowwise(x: Ctx) -> Recipe:
    return {
        "merge_method": "nuslerp",
        "base_model": x.base,
        "models": _models(x, (x.a, {"weight": 0.6}), (x.b, {"weight": 0.4})),
        "parameters": {"nuslerp_flatten": False, "nuslerp_row_wise": True},
    }


def multislerp_plain(x: Ctx) -> Recipe:
    return {
        "merge_method": "multislerp",
        "models": _models(x, (x.a, {"weight": 0.5}), (x.b, {"weight": [0.2, 0.6]}), (x.c, {"weight": 0.3})),
    }


def multislerp_base(x: Ctx) -> Recipe:
    return {
        "merge_method": "multislerp",
        "base_model": x.base,
        "models": _models(x, (x.a, {"weight": 0.5}), (x.b, {"weight": 0.5})),
        "parameters": {"normalize_weights": False},
    }


def karcher_plain(x: Ctx) -> Recipe:
    return {
        "merge_method": "karcher",
        "models": _models(x, (x.a, None), (x.b, None), (x.c, None)),
        "parameters": {"max_iter": 20, "tol": 1e-6},
    }


def karcher_single(x: Ctx) -> Recipe:
    # one input: mergekit returns it unchanged (karcher.py: `if len(tensors) == 1: return tensors[0]`)
    return {"merge_method": "karcher", "models": _models(x, (x.a, None))}


def karcher_base_unlisted(x: Ctx) -> Recipe:
    # mergekit appends the unlisted base_model as a fourth input of the mean
    recipe = karcher_plain(x)
    recipe["base_model"] = x.base
    return recipe


def model_stock_plain(x: Ctx) -> Recipe:
    return {
        "merge_method": "model_stock",
        "base_model": x.base,
        "models": _models(x, (x.base, None), (x.a, None), (x.b, None), (x.c, None)),
    }


def model_stock_filter_wise(x: Ctx) -> Recipe:
    recipe = model_stock_plain(x)
    recipe["parameters"] = {"filter_wise": True}
    return recipe


def nearswap_plain(x: Ctx) -> Recipe:
    return {
        "merge_method": "nearswap",
        "base_model": x.base,
        "models": _models(x, (x.base, None), (x.a, None)),
        "parameters": {"t": [0.001, 0.01]},
    }


def passthrough_frankenmerge(x: Ctx) -> Recipe:
    return {
        "merge_method": "passthrough",
        "slices": [
            {"sources": [{"model": x.base, "layer_range": [0, 2]}]},
            {
                "sources": [
                    {"model": x.a, "layer_range": [1, x.layers], "parameters": {"scale": attn_mlp(0.5, 1.0, 1.0)}}
                ]
            },
        ],
    }


def sce_topk(x: Ctx) -> Recipe:
    return {
        "merge_method": "sce",
        "base_model": x.base,
        "models": _models(x, (x.base, None), (x.a, None), (x.b, None), (x.c, None)),
        "parameters": {"select_topk": 0.5},
    }


def sce_all(x: Ctx) -> Recipe:
    recipe = sce_topk(x)
    recipe["parameters"] = {"select_topk": 1.0}
    return recipe


def arcee_fusion_plain(x: Ctx) -> Recipe:
    return {
        "merge_method": "arcee_fusion",
        "base_model": x.base,
        "models": _models(x, (x.base, None), (x.a, None)),
    }


def ram_default(x: Ctx) -> Recipe:
    # mergekit's default epsilon (1e-5): every seeded delta moves its entry, so each entry is shared
    return {"merge_method": "ram", "base_model": x.base, "models": _models(x, (x.a, None), (x.b, None), (x.c, None))}


def ram_epsilon(x: Ctx) -> Recipe:
    # an epsilon near the deltas' spread: entries moved by no model, by one (kept whole) and by several (averaged)
    recipe = ram_default(x)
    recipe["parameters"] = {"epsilon": [0.003, 0.008]}
    return recipe


def ram_dtype_bf16(x: Ctx) -> Recipe:
    recipe = ram_epsilon(x)
    recipe["dtype"] = "bfloat16"
    return recipe


def ramplus_default(x: Ctx) -> Recipe:
    recipe = ram_default(x)
    recipe["merge_method"] = "ramplus_tl"
    return recipe


def ramplus_tuned(x: Ctx) -> Recipe:
    return {
        "merge_method": "ramplus_tl",
        "base_model": x.base,
        "models": _models(x, (x.base, None), (x.a, None), (x.b, None)),
        "parameters": {"r": 0.5, "alpha": [0.3, 0.9], "epsilon": 0.005},
    }


def ramplus_dtype_bf16(x: Ctx) -> Recipe:
    recipe = ramplus_tuned(x)
    recipe["dtype"] = "bfloat16"
    return recipe


# multi-document recipes (mergekit-multi): later documents use earlier ones' names as models
def multi_docs_example(x: Ctx) -> list[Recipe]:
    # mergekit's docs/multimerge.md example, on the layout's parents (dare_ties at density 1: deterministic)
    return [
        {
            "name": "first-merge",
            "merge_method": "linear",
            "models": _models(x, (x.a, None), (x.b, None)),
            "parameters": {"weight": 0.5},
        },
        {
            "name": "second-merge",
            "merge_method": "slerp",
            "base_model": "first-merge",
            "models": _models(x, (x.c, None)),
            "parameters": {"t": 0.5},
        },
        {
            "merge_method": "dare_ties",
            "base_model": x.base,
            "models": _models(
                x, ("second-merge", {"density": 1.0, "weight": 0.5}), (x.a, {"density": 1.0, "weight": 0.5})
            ),
        },
    ]


def multi_all_named(x: Ctx) -> list[Recipe]:
    # no unnamed document: the last is the output; `unused` is read by nobody (mergekit merges it anyway)
    return [
        {
            "name": "pair",
            "merge_method": "nuslerp",
            "base_model": x.base,
            "models": _models(x, (x.a, {"weight": 0.6}), (x.b, {"weight": [0.3, 0.7]})),
            "dtype": "bfloat16",
        },
        {"name": "unused", "merge_method": "linear", "models": _models(x, (x.b, {"weight": 1.0}))},
        {
            "name": "stock",
            "merge_method": "model_stock",
            "base_model": x.base,
            "models": _models(x, (x.base, None), ("pair", None), (x.c, None)),
        },
    ]


def multi_diamond(x: Ctx) -> list[Recipe]:
    # `mix` is read twice (by `spherical` and by the output): kept until its last reader is merged
    return [
        {
            "name": "mix",
            "merge_method": "task_arithmetic",
            "base_model": x.base,
            "models": _models(x, (x.a, {"weight": 0.7}), (x.b, {"weight": 0.4})),
        },
        {
            "name": "spherical",
            "merge_method": "slerp",
            "base_model": "mix",
            "models": _models(x, (x.c, None)),
            "parameters": {"t": [0.2, 0.8]},
        },
        {
            "merge_method": "linear",
            "models": _models(x, ("mix", {"weight": 0.3}), ("spherical", {"weight": 0.7})),
            "out_dtype": "bfloat16",
        },
    ]


def multi_frankenmerge(x: Ctx) -> list[Recipe]:
    # a weight-space merge, then a layer stack over it and the base: the output has more layers than either
    return [
        {
            "name": "ta",
            "merge_method": "ram",
            "base_model": x.base,
            "models": _models(x, (x.a, None), (x.b, None)),
            "parameters": {"epsilon": 0.004},
        },
        {
            "merge_method": "passthrough",
            "slices": [
                {"sources": [{"model": x.base, "layer_range": [0, 2]}]},
                {"sources": [{"model": "ta", "layer_range": [1, x.layers]}]},
            ],
        },
    ]


def multi_cycle(x: Ctx) -> list[Recipe]:
    return [
        {
            "name": "one",
            "merge_method": "linear",
            "models": _models(x, ("two", {"weight": 1.0}), (x.a, {"weight": 1.0})),
        },
        {
            "name": "two",
            "merge_method": "linear",
            "models": _models(x, ("one", {"weight": 1.0}), (x.b, {"weight": 1.0})),
        },
        {"merge_method": "linear", "models": _models(x, ("two", {"weight": 1.0}))},
    ]


def multi_duplicate_name(x: Ctx) -> list[Recipe]:
    return [
        {"name": "same", "merge_method": "linear", "models": _models(x, (x.a, {"weight": 1.0}))},
        {"name": "same", "merge_method": "linear", "models": _models(x, (x.b, {"weight": 1.0}))},
        {"merge_method": "linear", "models": _models(x, ("same", {"weight": 1.0}))},
    ]


QWEN2_LAYER_TYPES = (
    "mergekit 0.1.5 sets num_hidden_layers on the loaded Qwen2Config (merge.py::_model_out_config -> "
    "set_config_value) without resizing `layer_types`; transformers 5.x validates the config and raises "
    "'num_hidden_layers (4) must be equal to the number of layer_types (3)'"
)

RECIPES: dict[str, RecipeSpec] = {
    # the four core methods, many variants, every layout
    "linear/grad_filters": RecipeSpec(linear_grad_filters),
    "linear/no_normalize": RecipeSpec(linear_no_normalize),
    "linear/top_level_weight": RecipeSpec(linear_top_level_weight),
    "linear/dtype_bf16": RecipeSpec(linear_dtype_bf16),
    "linear/out_dtype_bf16": RecipeSpec(linear_out_dtype_bf16),
    "linear/out_dtype_fp32": RecipeSpec(linear_out_dtype_fp32),
    "linear/base_unlisted": RecipeSpec(linear_base_unlisted, refused_with="parameters.weight: required by linear"),
    "linear/base_unlisted_top_weight": RecipeSpec(linear_base_unlisted_top_weight),
    "linear/tokenizer_base": RecipeSpec(linear_tokenizer_base, layouts=("llama",)),
    "linear/tokenizer_union": RecipeSpec(linear_tokenizer_union, layouts=("llama",)),
    "linear/tokenizer_base_vocab": RecipeSpec(linear_tokenizer_base_vocab, layouts=("llama",)),
    "linear/tokenizer_union_bf16": RecipeSpec(linear_tokenizer_union_bf16, layouts=("llama",)),
    "linear/tokenizer_chat_template_literal": RecipeSpec(linear_chat_template_literal, layouts=("llama",)),
    "linear/tokenizer_union_chat_template_auto": RecipeSpec(linear_chat_template_auto_union, layouts=("llama",)),
    "task_arithmetic/tokenizer_model": RecipeSpec(ta_tokenizer_model, layouts=("llama",)),
    "ties/tokenizer_tokens": RecipeSpec(ties_tokenizer_tokens, layouts=("llama",)),
    "slerp/tokenizer_model_bf16": RecipeSpec(slerp_tokenizer_model_bf16, layouts=("llama",)),
    "task_arithmetic/grad_lambda": RecipeSpec(ta_grad_lambda),
    "task_arithmetic/normalize": RecipeSpec(ta_normalize),
    "task_arithmetic/zero_sum_normalize": RecipeSpec(ta_zero_sum_normalize),
    "task_arithmetic/overlapping_filters": RecipeSpec(ta_overlapping_filters),
    "task_arithmetic/dtype_bf16": RecipeSpec(ta_dtype_bf16),
    "task_arithmetic/dtype_fp16": RecipeSpec(ta_dtype_fp16),
    "task_arithmetic/fp32_out_bf16": RecipeSpec(ta_fp32_out_bf16),
    "ties/density_grad": RecipeSpec(ties_density_grad),
    "ties/rescale_no_normalize": RecipeSpec(ties_rescale_no_normalize),
    "ties/dtype_bf16": RecipeSpec(ties_dtype_bf16),
    "slerp/models_filters": RecipeSpec(slerp_models_filters),
    "slerp/base_unlisted": RecipeSpec(slerp_base_unlisted),
    "slerp/slices": RecipeSpec(slerp_slices),
    "slerp/slices_stack": RecipeSpec(slerp_slices_stack, mergekit_broken={"qwen2": QWEN2_LAYER_TYPES}),
    "slerp/dtype_bf16": RecipeSpec(slerp_dtype_bf16),
    "slerp/out_dtype_bf16": RecipeSpec(slerp_out_dtype_bf16),
    # the rest of mergekit 0.1.5's registry: run when evomerge registers the method
    "dare_ties/dense": RecipeSpec(_gta("dare_ties", 1.0)),
    "dare_ties/sparse": RecipeSpec(_gta("dare_ties", 0.5), exact=False, random_seed=7),
    "dare_linear/dense": RecipeSpec(_gta("dare_linear", 1.0)),
    "dare_linear/sparse": RecipeSpec(_gta("dare_linear", [0.3, 0.8]), exact=False, random_seed=7),
    "breadcrumbs/basic": RecipeSpec(_gta("breadcrumbs", 0.8, {"gamma": 0.05})),
    "breadcrumbs/default_gamma": RecipeSpec(_gta("breadcrumbs", 0.7)),
    "breadcrumbs_ties/basic": RecipeSpec(_gta("breadcrumbs_ties", [0.9, 0.6], {"gamma": 0.05}, normalize=True)),
    "della/dense": RecipeSpec(_gta("della", 1.0)),
    "della/sparse": RecipeSpec(_gta("della", 0.5, {"epsilon": 0.1}), exact=False, random_seed=7),
    "della_linear/dense": RecipeSpec(_gta("della_linear", 1.0)),
    "della_linear/sparse": RecipeSpec(_gta("della_linear", 0.6, {"epsilon": 0.2}), exact=False, random_seed=7),
    "nuslerp/plain": RecipeSpec(nuslerp_plain),
    "nuslerp/base_rowwise": RecipeSpec(nuslerp_base_rowwise),
    "multislerp/plain": RecipeSpec(multislerp_plain),
    "multislerp/base": RecipeSpec(multislerp_base),
    "karcher/plain": RecipeSpec(karcher_plain),
    "karcher/base_unlisted": RecipeSpec(karcher_base_unlisted),
    "karcher/single": RecipeSpec(karcher_single),
    "model_stock/plain": RecipeSpec(model_stock_plain),
    "model_stock/filter_wise": RecipeSpec(model_stock_filter_wise),
    "nearswap/plain": RecipeSpec(nearswap_plain),
    "passthrough/frankenmerge": RecipeSpec(passthrough_frankenmerge, mergekit_broken={"qwen2": QWEN2_LAYER_TYPES}),
    "sce/topk": RecipeSpec(sce_topk),
    "sce/all": RecipeSpec(sce_all),
    "arcee_fusion/plain": RecipeSpec(arcee_fusion_plain),
    "ram/default": RecipeSpec(ram_default),
    "ram/epsilon": RecipeSpec(ram_epsilon),
    "ram/dtype_bf16": RecipeSpec(ram_dtype_bf16),
    "ramplus_tl/default": RecipeSpec(ramplus_default),
    "ramplus_tl/tuned": RecipeSpec(ramplus_tuned),
    "ramplus_tl/dtype_bf16": RecipeSpec(ramplus_dtype_bf16),
    # multi-document recipes, against mergekit-multi
    "multi/docs_example": RecipeSpec(multi_docs_example),
    "multi/docs_example_on_disk": RecipeSpec(multi_docs_example, evomerge_args=("--intermediates", "disk")),
    "multi/all_named": RecipeSpec(multi_all_named),
    "multi/diamond": RecipeSpec(multi_diamond),
    "multi/diamond_on_disk": RecipeSpec(multi_diamond, evomerge_args=("--intermediates", "disk")),
    "multi/frankenmerge": RecipeSpec(multi_frankenmerge, mergekit_broken={"qwen2": QWEN2_LAYER_TYPES}),
    "multi/cycle": RecipeSpec(multi_cycle, layouts=("llama",), refused_with="read each other in a cycle"),
    "multi/duplicate_name": RecipeSpec(multi_duplicate_name, layouts=("llama",), refused_with="are both named 'same'"),
}


def method_of(recipe_id: str) -> str:
    return recipe_id.split("/", 1)[0]


# merge method -> mergekit's sparsification of its task vectors, for the methods compared tie-aware
TIED_CUTOFF_METHODS: dict[str, str] = {
    "ties": "magnitude",
    "breadcrumbs": "magnitude_outliers",
    "breadcrumbs_ties": "magnitude_outliers",
}


METHOD_TEMPLATES: dict[str, list[str]] = {}
for _recipe_id in RECIPES:
    METHOD_TEMPLATES.setdefault(method_of(_recipe_id), []).append(_recipe_id)


def ctx_for(layout: str, paths: dict[str, Any], layers: int) -> Ctx:
    return Ctx(
        layout,
        *(str(paths[k]) for k in ("base", "a", "b", "c")),
        layers=layers,
        va=str(paths.get("va", "")),
        vb=str(paths.get("vb", "")),
    )
