"""The zoo's pinned numerics: what a training worker starts with, which machines can run them, and how a
build's weights are checked against the recorded hashes."""

from __future__ import annotations

import pytest

from tasks.zoo import numerics
from tasks.zoo.expected_weights import check_weights, describe_weight_check, expected_weights
from tasks.zoo.numerics import (
    PINNED_ENVIRONMENT,
    native_numerics,
    pinned_numerics,
    unsupported_reason,
    worker_environment,
)
from tasks.zoo.recipe import ZooRecipe

VERSIONS = {"torch": "2.13.0+cpu", "transformers": "5.23.0", "numpy": "2.4.6"}


def test_a_worker_starts_with_the_pins_over_whatever_the_parent_has() -> None:
    parent = {"ATEN_CPU_CAPABILITY": "avx512", "MKL_CBWR": "AUTO", "OPENBLAS_CORETYPE": "SkylakeX", "HOME": "/h"}
    environment = worker_environment(pinned_numerics(), parent)
    assert {name: environment[name] for name in PINNED_ENVIRONMENT} == dict(PINNED_ENVIRONMENT)
    assert environment["ATEN_CPU_CAPABILITY"] == "avx2" and environment["OPENBLAS_CORETYPE"] == "Haswell"
    assert environment["HOME"] == "/h"
    assert parent["ATEN_CPU_CAPABILITY"] == "avx512"  # the parent's own mapping is left alone
    assert worker_environment(native_numerics(), parent) == parent


@pytest.mark.parametrize(
    ("machine", "flags", "reason"),
    [
        ("x86_64", {"sse2", "avx", "avx2", "fma", "avx512f"}, None),
        ("x86_64", {"sse2", "avx", "fma"}, "the CPU lacks avx2"),
        ("x86_64", {"sse2", "avx"}, "the CPU lacks avx2, fma"),
        ("aarch64", {"asimd"}, "this is a aarch64 machine; the pinned kernels are x86-64 ones"),
        ("x86_64", set(), "the CPU's instruction sets are unknown (no /proc/cpuinfo)"),
    ],
)
def test_machines_without_avx2_and_fma_train_with_their_own_numerics(
    monkeypatch: pytest.MonkeyPatch, machine: str, flags: set[str], reason: str | None
) -> None:
    monkeypatch.setattr(numerics.platform, "machine", lambda: machine)
    monkeypatch.setattr(numerics, "cpu_flags", lambda: frozenset(flags))
    assert unsupported_reason() == reason
    assert numerics.numerics_for_this_machine() == (pinned_numerics() if reason is None else native_numerics())


def test_the_record_is_for_the_default_recipe_seed_zero_and_pinned_numerics() -> None:
    record = expected_weights()
    assert (record.seed, record.recipe, record.numerics) == (0, ZooRecipe(), pinned_numerics())
    assert sorted(record.weight_sha256) == sorted(
        f"{name}/model.safetensors" for name in ("base", "add", "sort", "reverse")
    )
    assert all(len(digest) == 64 for digest in record.weight_sha256.values())


def test_recorded_hashes_match_and_a_subset_of_the_models_is_checked_too() -> None:
    recorded = expected_weights().weight_sha256
    check = check_weights(0, ZooRecipe(), pinned_numerics(), recorded, VERSIONS)
    assert (check.status, check.mismatches) == ("match", ())
    subset = {file: digest for file, digest in recorded.items() if file.split("/")[0] in ("base", "add")}
    assert check_weights(0, ZooRecipe(), pinned_numerics(), subset, VERSIONS).status == "match"


def test_other_bytes_are_reported_with_both_hashes_the_cause_and_the_machine() -> None:
    built = dict(expected_weights().weight_sha256)
    built["sort/model.safetensors"] = "0" * 64
    check = check_weights(0, ZooRecipe(), pinned_numerics(), built, {**VERSIONS, "torch": "2.14.1+cpu"})
    assert check.status == "differ"
    assert [(item.file, item.actual) for item in check.mismatches] == [("sort/model.safetensors", "0" * 64)]
    assert (
        check.reason
        == "other library versions than requirements.lock installs: torch 2.14.1+cpu (recorded with 2.13.0+cpu)"
    )
    message = describe_weight_check(check)
    assert f"expected {expected_weights().weight_sha256['sort/model.safetensors']}, built {'0' * 64}" in message
    assert "cpu capability torch picks" in message and "cpu vector extensions" in message

    native = check_weights(0, ZooRecipe(), native_numerics(), built, VERSIONS)
    assert native.reason is not None and native.reason.startswith("trained with this machine's own numerics")


def test_other_recipes_and_seeds_have_no_record() -> None:
    recorded = expected_weights().weight_sha256
    assert check_weights(1, ZooRecipe(), pinned_numerics(), recorded, VERSIONS).status == "not recorded"
    short = ZooRecipe().shortened(base_steps=30, expert_steps=15)
    assert check_weights(0, short, pinned_numerics(), recorded, VERSIONS).status == "not recorded"
    assert describe_weight_check(check_weights(1, ZooRecipe(), pinned_numerics(), recorded, VERSIONS)) == ""
