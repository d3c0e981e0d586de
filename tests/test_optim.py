"""The batched few-shot optimisers step every head exactly as torch.optim steps one parameter."""

import math

import pytest
import torch

from clipprobe.probes.fewshot.train import HeadAdamW, HeadSGD


def _quadratic_grads(params: list[torch.Tensor], step: int) -> None:
    """A different, deterministic gradient every step: d/dp of sum((p - target)^2 * w)."""
    for i, p in enumerate(params):
        generator = torch.Generator().manual_seed(100 * step + i)
        target = torch.randn(p.shape, generator=generator, dtype=p.dtype)
        p.grad = 2 * (p.detach() - target) * (1 + i)


def _run(make, steps: int = 25) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    params = [
        torch.randn(3, 4, 5, generator=generator, dtype=torch.float64),
        torch.randn(3, 4, generator=generator, dtype=torch.float64),
    ]
    optimizer, schedule = make(params)
    for step in range(steps):
        _quadratic_grads(params, step)
        optimizer.step()
        if schedule is not None:
            schedule.step()
    return params


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_head_adamw_matches_torch_adamw(weight_decay):
    ours = _run(lambda p: (HeadAdamW(p, lr=0.01, weight_decay=weight_decay), None))
    theirs = _run(lambda p: (torch.optim.AdamW(p, lr=0.01, weight_decay=weight_decay, foreach=False), None))
    for a, b in zip(ours, theirs, strict=True):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-12)


def test_head_sgd_matches_torch_sgd_with_momentum_and_a_cosine_schedule():
    steps, lr, momentum = 25, 0.05, 0.9

    def ours(params):
        cosine = lambda step: 0.5 * (1 + math.cos(math.pi * step / steps))  # noqa: E731
        groups = [(p, torch.full((3,), lr, dtype=p.dtype), momentum, 1) for p in params]
        return HeadSGD(groups, schedule=cosine), None

    def theirs(params):
        sgd = torch.optim.SGD(params, lr=lr, momentum=momentum, foreach=False)
        return sgd, torch.optim.lr_scheduler.CosineAnnealingLR(sgd, T_max=steps)

    for a, b in zip(_run(ours, steps), _run(theirs, steps), strict=True):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-12)


def test_head_sgd_step_size_is_per_head():
    params = [torch.zeros(2, 3)]
    params[0].grad = torch.ones(2, 3)
    HeadSGD([(params[0], torch.tensor([1.0, 0.5]), 0.0, 1)]).step()
    assert torch.equal(params[0], torch.tensor([[-1.0] * 3, [-0.5] * 3]))


def test_lpp_blend_moves_every_tenth_step_by_the_gradient_summed_since_the_start():
    alpha = torch.zeros(1, 2)
    sgd = HeadSGD([(alpha, torch.tensor([0.1]), 1.0, 10)])
    for step in range(1, 21):
        alpha.grad = torch.full((1, 2), float(step))  # never zeroed by the optimiser: a running sum
        sgd.step()
        if step < 10:
            assert torch.equal(alpha, torch.zeros(1, 2)), step  # unchanged between updates
    # step 10: -0.1 * (1 + ... + 10); step 20: a further -0.1 * (1 + ... + 20)
    assert torch.allclose(alpha, torch.full((1, 2), -0.1 * (55 + 210)))
