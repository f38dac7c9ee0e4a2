"""The same zoo on every machine: full builds of the default zoo under simulated machines, each giving the
weight files recorded in `tasks/zoo/expected_weights.json`.

A machine decides kernels through what its CPU offers, which the libraries read at start-up; these
variables make them choose as another machine would: ATen's kernel build (`ATEN_CPU_CAPABILITY`: the default,
AVX2 or AVX-512 build), OpenBLAS's core type, MKL's code branch and instruction cap, glibc's CPU-specific
variants of its maths functions (`GLIBC_TUNABLES`), thread counts and how many experts train at once. Each
builds in full (base and three experts, as `make demo` does). Before numerics were pinned, ATen's default,
AVX2 and AVX-512 builds alone gave three different zoos from one seed on this machine.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tasks.zoo import build_zoo, read_manifest
from tasks.zoo.expected_weights import describe_weight_check, expected_weights
from tasks.zoo.numerics import cpu_flags, pinned_numerics, unsupported_reason

pytestmark = pytest.mark.integration

AVX512 = "avx512f" in cpu_flags()
NO_AVX_LIBC = "glibc.cpu.hwcaps=-AVX512F,-AVX512VL,-AVX512BW,-AVX512DQ,-AVX512CD,-AVX2,-FMA,-AVX,-F16C,-BMI1,-BMI2"

MACHINES: dict[str, tuple[dict[str, str], int]] = {
    "older CPU: default ATen build, SSE-only libm and OpenBLAS, one expert at a time": (
        {
            "ATEN_CPU_CAPABILITY": "default",
            "OPENBLAS_CORETYPE": "Nehalem",
            "MKL_CBWR": "AUTO",
            "MKL_ENABLE_INSTRUCTIONS": "SSE4_2",
            "GLIBC_TUNABLES": NO_AVX_LIBC,
        },
        1,
    ),
    "AVX2 CPU: AVX2 ATen build, Zen OpenBLAS, three threads": (
        {
            "ATEN_CPU_CAPABILITY": "avx2",
            "OPENBLAS_CORETYPE": "Zen",
            "MKL_ENABLE_INSTRUCTIONS": "AVX2",
            "OMP_NUM_THREADS": "3",
            "MKL_NUM_THREADS": "3",
            "OPENBLAS_NUM_THREADS": "3",
        },
        3,
    ),
    "AVX-512 CPU: AVX-512 ATen build, SkylakeX OpenBLAS, MKL's AVX-512 branch": (
        {
            "ATEN_CPU_CAPABILITY": "avx512" if AVX512 else "avx2",
            "OPENBLAS_CORETYPE": "SkylakeX" if AVX512 else "Haswell",
            "MKL_CBWR": "AVX512" if AVX512 else "AVX2",
            "MKL_DYNAMIC": "TRUE",
            "OMP_NUM_THREADS": "2",
        },
        2,
    ),
}


def test_the_default_zoo_has_the_recorded_weights(zoo_dir: Path) -> None:
    """The zoo every other test uses, built on this machine as it is."""
    manifest = read_manifest(zoo_dir)
    assert manifest is not None
    assert manifest.numerics == pinned_numerics(), unsupported_reason()
    assert manifest.weight_hashes() == expected_weights().weight_sha256, describe_weight_check(manifest.weight_check)
    assert manifest.weight_check.status == "match"


@pytest.mark.parametrize(("environment", "workers"), list(MACHINES.values()), ids=list(MACHINES))
def test_a_build_on_a_simulated_machine_has_the_recorded_weights(
    environment: dict[str, str], workers: int, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    manifest = build_zoo(tmp_path / "zoo", workers=workers)
    assert manifest.numerics == pinned_numerics()
    assert manifest.weight_hashes() == expected_weights().weight_sha256, describe_weight_check(manifest.weight_check)
    assert manifest.weight_check.status == "match"


def test_a_zoo_whose_weights_differ_from_the_record_says_so_loudly(
    zoo_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CLI's path (`evomerge zoo build` / `demo` on an existing zoo), against a record that names other
    bytes for one model: the manifest says `differ`, and stderr names the file, both hashes and the cause."""
    from flows.cli import _ensure_zoo
    from tasks.zoo import expected_weights as record_module

    copy = tmp_path / "zoo"
    shutil.copytree(zoo_dir, copy)
    record = expected_weights()
    other = {**record.weight_sha256, "sort/model.safetensors": "f" * 64}
    monkeypatch.setattr(record_module, "expected_weights", lambda: record.model_copy(update={"weight_sha256": other}))

    manifest = _ensure_zoo(copy)
    assert manifest.weight_check.status == "differ"
    stderr = " ".join(capsys.readouterr().err.split())
    built = record.weight_sha256["sort/model.safetensors"]
    assert f"sort/model.safetensors: expected {'f' * 64}, built {built}" in stderr
    assert "cause: same libraries and pinned numerics" in stderr and "warning:" in stderr
    assert read_manifest(copy).weight_check.status == "differ"  # the manifest on disk says so too
