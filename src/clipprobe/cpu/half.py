"""float32 <-> float16 in integer arithmetic: the same bits on every x86-64 CPU, whatever its MXCSR flags.

On the CPU torch converts with the F16C instructions (VCVTPS2PH, VCVTPH2PS). Their handling of float16
subnormals (|x| < 6.1e-5, common in feature vectors) under flush-to-zero and denormals-are-zero, which
`runtime.start` turns on, is not the same everywhere: natively on this Intel host both keep subnormals, on
an emulated AMD EPYC the first flushes them to zero and the second reads them as zero (46% of the cached
augmented-view features moved: docs/cpu.md). Doing the rounding (to nearest, ties to even) with integer ops
leaves nothing to the floating-point unit. Inputs are finite (the callers check); beyond float16's range
they become infinities, as `.half()` does.
"""

from __future__ import annotations

import torch

_SIGN, _HALF_INF = 0x8000, 0x7C00


def to_half(x: torch.Tensor) -> torch.Tensor:
    """A float32 tensor rounded to float16, correctly rounded (nearest, ties to even) on any CPU."""
    bits = x.float().contiguous().view(torch.int32)
    sign = (bits >> 16) & _SIGN
    exponent = ((bits >> 23) & 0xFF) - 127 + 15  # float16's biased exponent; <= 0: a float16 subnormal
    significand = (bits & 0x7FFFFF) | 0x800000  # 24 bits with the leading one (float32 subnormals round to 0)
    shift = torch.where(exponent >= 1, 13, 14 - exponent).clamp(max=31)  # bits dropped from the 24
    kept = significand >> shift
    dropped = significand - (kept << shift)
    halfway = 1 << (shift - 1)
    kept = kept + ((dropped > halfway) | ((dropped == halfway) & (kept & 1 == 1))).int()
    # normal: the leading one in `kept` adds one to the exponent field, so a carry out of the 10-bit fraction
    # moves to the next binade by itself; subnormal: `kept` is the whole field (0x400: the smallest normal)
    magnitude = torch.where(exponent >= 1, ((exponent - 1) << 10) + kept, kept).clamp(max=_HALF_INF)
    return (sign | magnitude).to(torch.int16).view(torch.float16)  # int32 -> int16 keeps the low 16 bits


def from_half(h: torch.Tensor) -> torch.Tensor:
    """A float16 tensor as float32 (exact: every float16 is a float32, its subnormals normal ones)."""
    if h.dtype != torch.float16:
        raise TypeError(f"from_half: needs a float16 tensor (got {h.dtype})")
    bits = h.contiguous().view(torch.int16).int() & 0xFFFF
    exponent, fraction = (bits >> 10) & 0x1F, bits & 0x3FF
    rebiased = torch.where(exponent == 0x1F, 0xFF, exponent - 15 + 127)  # infinities and NaNs stay so
    normal = ((rebiased << 23) | (fraction << 13)).view(torch.float32)
    subnormal = fraction.float() * 2.0**-24  # a normal float32: nothing for denormals-are-zero to flush
    magnitude = torch.where(exponent == 0, subnormal, normal)
    return torch.where(bits & _SIGN == _SIGN, -magnitude, magnitude)
