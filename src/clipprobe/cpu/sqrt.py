"""`torch.sqrt` on the CPU through the IEEE square-root instruction, the same bits on every x86-64 vendor.

On the CPU `torch.sqrt` calls MKL's vector math (vsSqrt/vdSqrt). On MKL's COMPATIBLE branch, the one the
deterministic mode pins, that routine starts from the CPU's approximate reciprocal square root (RSQRTPS),
whose table differs between Intel and AMD, so the last bit of a square root, and every Adam step and L-BFGS
line search built on it, depends on the vendor (found by running the CPU canary's workloads op by op under
an emulated AMD and Intel CPU: docs/cpu.md). numpy's sqrt is the correctly rounded instruction on every
x86-64 CPU. `exact_sqrt()` registers it as aten::sqrt's CPU kernel (all three overloads), so optimisers,
open_clip and torchmetrics pick it up without knowing. `x ** 0.5` is not covered (ATen sends it to MKL
directly): the project's code uses `.sqrt()`.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

_registry: torch.library.Library | None = None  # kept alive: the registration lasts as long as it does


def _sqrt(x: torch.Tensor) -> torch.Tensor:
    dtype = x.dtype if x.is_floating_point() or x.is_complex() else torch.get_default_dtype()
    source = x.detach().resolve_conj().resolve_neg()
    if source.dtype not in (torch.float32, torch.float64, torch.complex64, torch.complex128):
        source = source.to(torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype)
    with np.errstate(invalid="ignore"):  # negative inputs give NaN, as torch.sqrt does, without a warning
        root = np.asarray(np.sqrt(source.numpy()))  # asarray: a 0-d input gives a numpy scalar
    return torch.from_numpy(root).to(dtype)


def _sqrt_(x: torch.Tensor) -> torch.Tensor:
    return x.copy_(_sqrt(x))


def _sqrt_out(x: torch.Tensor, *, out: torch.Tensor) -> torch.Tensor:
    result = _sqrt(x)
    return out.resize_(result.shape).copy_(result)


def exact_sqrt() -> None:
    """Make aten::sqrt's CPU kernel the IEEE instruction, for the rest of the process (idempotent)."""
    global _registry
    if _registry is not None:
        return
    _registry = torch.library.Library("aten", "IMPL")
    with warnings.catch_warnings():  # torch warns that it overrides a kernel: that is the point
        warnings.simplefilter("ignore")
        for name, kernel in (("sqrt", _sqrt), ("sqrt_", _sqrt_), ("sqrt.out", _sqrt_out)):
            _registry.impl(name, kernel, "CPU")
