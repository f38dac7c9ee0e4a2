"""The pinned zoo training's linear layers: the same products as torch's, computed by numpy's OpenBLAS."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaForCausalLM

from tasks.zoo.architecture import zoo_model_config
from tasks.zoo.blas_linear import blas_linear, use_blas_linears


@pytest.mark.parametrize("shape", [(7, 16), (3, 5, 16), (2, 4, 3, 16)])
def test_output_and_both_gradients_equal_torch_linear(shape: tuple[int, ...]) -> None:
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(*shape, generator=generator, requires_grad=True)
    weight = torch.randn(24, 16, generator=generator, requires_grad=True)
    grad_output = torch.randn(*shape[:-1], 24, generator=generator)

    ours = blas_linear(inputs, weight)
    ours.backward(grad_output)
    ours_grads = inputs.grad.clone(), weight.grad.clone()
    inputs.grad = weight.grad = None
    reference = torch.nn.functional.linear(inputs, weight)
    reference.backward(grad_output)

    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours_grads[0], inputs.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours_grads[1], weight.grad, rtol=1e-5, atol=1e-5)
    assert ours.shape == (*shape[:-1], 24)


def test_a_routed_model_keeps_its_parameters_and_computes_the_same_loss() -> None:
    torch.manual_seed(0)
    model = LlamaForCausalLM(zoo_model_config())
    names = list(model.state_dict())
    ids = torch.randint(4, 40, (3, 9))
    reference = model(input_ids=ids, labels=ids).loss
    assert use_blas_linears(model) == 4 * 7 + 1  # q, k, v, o, gate, up, down per layer, and the LM head
    assert list(model.state_dict()) == names
    torch.testing.assert_close(model(input_ids=ids, labels=ids).loss, reference, rtol=1e-5, atol=1e-6)


def test_refuses_what_it_does_not_compute() -> None:
    with pytest.raises(ValueError, match="float32 CPU"):
        blas_linear(torch.ones(2, 3, dtype=torch.float64), torch.ones(4, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="without bias"):
        use_blas_linears(torch.nn.Sequential(torch.nn.Linear(3, 4)))
