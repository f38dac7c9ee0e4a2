"""The numerics zoo training is pinned to, so one seed gives the same weight files on every x86-64 machine
with AVX2 and FMA, whatever else the CPU has.

Training a float32 model sums billions of products, and the order of those sums follows the kernels the
libraries pick for the CPU at hand: ATen's vectorised kernels come in a default, an AVX2 and an AVX-512
build; MKL and OpenBLAS pick their matrix-product kernels, and MKL its blocking, per CPU model and vendor.
An AVX-512 machine and an AVX2 machine therefore train other bits from the same seed. A training worker
starts with this environment, read by those libraries when they load, so each of them runs one code path
whatever machine it is on:

- `ATEN_CPU_CAPABILITY=avx2`: ATen's AVX2 kernels, whose exp/log/tanh come from the SLEEF library compiled
  into torch (not from the system's libm, whose versions and CPU variants differ between machines).
- Matrix products (every `nn.Linear`, forward and backward) run on numpy's OpenBLAS with
  `OPENBLAS_CORETYPE=Haswell`: one assembly kernel and, for that core, fixed blocking constants (OpenBLAS
  reads no cache size for it), on one thread. It is also faster than MKL on these shapes.
- `MKL_CBWR=COMPATIBLE` for what MKL still computes (attention's small products inside SDPA): Intel's
  documented branch for identical results on Intel and AMD processors. `MKL_DYNAMIC=FALSE` and one thread,
  as its reproducibility conditions ask; oneDNN is switched off in the worker.

ARM machines and x86-64 machines without AVX2 or FMA cannot run these kernels: there the build trains with
the machine's own numerics and says loudly that its weights differ from the recorded ones.

This module imports no torch: the parent builds the environment before any worker starts.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping
from functools import cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict

PINNED_CPU_CAPABILITY = "AVX2"
"""What `torch.backends.cpu.get_cpu_capability()` reports in a pinned worker."""

PINNED_BLAS_CORE = "Haswell"
"""The OpenBLAS kernel set every pinned worker forces."""

PINNED_ENVIRONMENT: Mapping[str, str] = {
    "ATEN_CPU_CAPABILITY": PINNED_CPU_CAPABILITY.lower(),
    "OPENBLAS_CORETYPE": PINNED_BLAS_CORE,
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_CBWR": "COMPATIBLE",
    "MKL_DYNAMIC": "FALSE",
    "MKL_NUM_THREADS": "1",
    "OMP_DYNAMIC": "FALSE",
    "OMP_NUM_THREADS": "1",
}
"""Set in every training worker's environment before it starts, overriding what the parent has."""

REQUIRED_CPU_FLAGS: tuple[str, ...] = ("avx2", "fma")
"""What the pinned kernels execute: the AVX2 build of ATen and OpenBLAS's Haswell kernels."""

RELEVANT_VARIABLES: tuple[str, ...] = (
    *PINNED_ENVIRONMENT,
    "MKL_ENABLE_INSTRUCTIONS",
    "MKL_DEBUG_CPU_TYPE",
    "ONEDNN_MAX_CPU_ISA",
    "DNNL_MAX_CPU_ISA",
    "GLIBC_TUNABLES",
)
"""Variables that change kernel choices: a weight-mismatch report shows the parent's values of these."""


class ZooNumerics(BaseModel):
    """How a zoo's weights were computed; recorded in the manifest and compared by `ensure_zoo`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    pinned: bool
    """True when training ran with `PINNED_ENVIRONMENT` (the weights are the same on every covered machine)."""
    environment: dict[str, str]
    """The variables a worker was started with on top of the parent's (empty when not pinned)."""


def pinned_numerics() -> ZooNumerics:
    return ZooNumerics(pinned=True, environment=dict(PINNED_ENVIRONMENT))


def native_numerics() -> ZooNumerics:
    return ZooNumerics(pinned=False, environment={})


def numerics_for_this_machine() -> ZooNumerics:
    """The pinned numerics where this CPU can run them, else the machine's own."""
    return pinned_numerics() if unsupported_reason() is None else native_numerics()


def unsupported_reason() -> str | None:
    """Why this machine cannot run the pinned kernels, or None when it can."""
    machine = platform.machine().lower()
    if machine not in ("x86_64", "amd64"):
        return f"this is a {platform.machine()} machine; the pinned kernels are x86-64 ones"
    flags = cpu_flags()
    if not flags:
        return "the CPU's instruction sets are unknown (no /proc/cpuinfo)"
    missing = [flag for flag in REQUIRED_CPU_FLAGS if flag not in flags]
    if missing:
        return f"the CPU lacks {', '.join(missing)}"
    return None


def worker_environment(numerics: ZooNumerics, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a training worker starts with: the parent's, with the numerics' variables on top."""
    environment = dict(os.environ if base is None else base)
    environment.update(numerics.environment)
    return environment


@cache
def cpu_flags() -> frozenset[str]:
    """The instruction-set flags of this CPU as Linux reports them (empty where unknown)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


@cache
def cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return platform.processor() or "unknown"
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            return value.strip()
    return platform.processor() or "unknown"


def machine_description() -> dict[str, str]:
    """What decides the numerics on this machine, for reports: CPU, its vector extensions, libraries, and
    the parent's values of every variable that changes kernel choices."""
    import numpy
    import torch
    import transformers

    flags = cpu_flags()
    vector = [flag for flag in ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_bf16", "amx_tile") if flag in flags]
    description = {
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "cpu vector extensions": " ".join(vector) or "unknown",
        "cpu capability torch picks": torch.backends.cpu.get_cpu_capability(),
        "libc": " ".join(platform.libc_ver()),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "numpy": numpy.__version__,
    }
    for name in RELEVANT_VARIABLES:
        if name in os.environ:
            description[f"${name}"] = os.environ[name]
    return description
