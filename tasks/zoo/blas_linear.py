"""`nn.Linear` whose matrix products run on numpy's OpenBLAS, for pinned zoo training.

torch's own products go to MKL, whose kernels and blocking depend on the CPU's vendor and model; the only
MKL setting documented to give the same results on Intel and AMD (`MKL_CBWR=COMPATIBLE`) runs them at
SSE2 speed, which made training twice as slow. OpenBLAS with a forced core type runs one kernel with fixed
blocking on every AVX2 machine (see `tasks/zoo/numerics.py`), at full speed. The three products of a
layer (output, input gradient, weight gradient) are the same ones torch computes, in float32.
"""

from __future__ import annotations

import types
from typing import Any

import torch
from torch import Tensor, nn


class _BlasLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, inputs: Tensor, weight: Tensor) -> Tensor:
        rows = inputs.detach().reshape(-1, inputs.shape[-1]).contiguous()
        matrix = weight.detach()
        ctx.save_for_backward(rows, matrix)
        ctx.input_shape = inputs.shape
        outputs = torch.from_numpy(rows.numpy() @ matrix.numpy().T)
        return outputs.view(*inputs.shape[:-1], matrix.shape[0])

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor | None, Tensor | None]:
        rows, matrix = ctx.saved_tensors
        grad_rows = grad_output.reshape(-1, matrix.shape[0]).contiguous().numpy()
        grad_inputs = grad_weight = None
        if ctx.needs_input_grad[0]:
            grad_inputs = torch.from_numpy(grad_rows @ matrix.numpy()).view(ctx.input_shape)
        if ctx.needs_input_grad[1]:
            grad_weight = torch.from_numpy(grad_rows.T @ rows.numpy())
        return grad_inputs, grad_weight


def blas_linear(inputs: Tensor, weight: Tensor) -> Tensor:
    """`inputs @ weight.T`, differentiable, computed by OpenBLAS (float32 CPU tensors, no bias)."""
    if inputs.dtype != torch.float32 or weight.dtype != torch.float32 or inputs.device.type != "cpu":
        raise ValueError(f"blas_linear takes float32 CPU tensors, got {inputs.dtype} on {inputs.device}")
    return _BlasLinear.apply(inputs, weight)


def _forward(self: nn.Linear, inputs: Tensor) -> Tensor:
    return blas_linear(inputs, self.weight)


def use_blas_linears(model: nn.Module) -> int:
    """Route every `nn.Linear` of `model` through `blas_linear` (this instance only); returns how many.

    The modules, their parameters and their state-dict names stay as they are, so the model saves and
    loads like any other.
    """
    count = 0
    for module in model.modules():
        if isinstance(module, nn.Linear):
            if module.bias is not None:
                raise ValueError("use_blas_linears supports linear layers without bias (the zoo's Llama has none)")
            module.forward = types.MethodType(_forward, module)  # type: ignore[method-assign]
            count += 1
    return count
