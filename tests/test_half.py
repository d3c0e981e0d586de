"""float16 conversions of the deterministic mode (cpu/half.py): correctly rounded, subnormals kept under the
flush-to-zero flags that `runtime.start` sets, whatever the CPU's F16C instructions do with them."""

from __future__ import annotations

import struct

import torch

from clipprobe.cpu.half import from_half, to_half

EVERY_HALF = torch.arange(65536, dtype=torch.int32).to(torch.int16).view(torch.float16)


def _reference(values: torch.Tensor) -> torch.Tensor:
    """float16 bits by Python's own packing (software rounding to nearest, ties to even)."""
    packed = b"".join(struct.pack("<e", value) for value in values.tolist())
    return torch.frombuffer(bytearray(packed), dtype=torch.int16)


def test_every_float16_comes_back_exactly():
    finite = EVERY_HALF[torch.isfinite(EVERY_HALF)]
    bits = finite.view(torch.int16).tolist()
    exact = torch.tensor([struct.unpack("<e", struct.pack("<h", b))[0] for b in bits])
    assert torch.equal(from_half(finite).view(torch.int32), exact.view(torch.int32))
    special = from_half(EVERY_HALF[~torch.isfinite(EVERY_HALF)])
    assert special.isinf().sum() == 2 and special.isnan().sum() == 2046


def test_rounding_matches_software_on_ties_and_subnormals():
    finite = from_half(EVERY_HALF[torch.isfinite(EVERY_HALF)]).sort().values.double()
    ties = ((finite[:-1] + finite[1:]) / 2).float()  # exactly halfway: ties go to the even neighbour
    near = torch.cat([ties.nextafter(ties - 1), ties.nextafter(ties + 1)])
    scales = torch.tensor([1e-7, 1e-5, 1e-3, 1.0, 1e3, 6e4])[:, None]
    draws = (torch.randn(6, 2000, generator=torch.Generator().manual_seed(0)) * scales).flatten()
    values = torch.cat([ties, near, draws, torch.tensor([0.0, -0.0, 65504.0, 1e-45])])
    values = values[values.abs() < 65520]  # beyond: infinities (below); Python's packing raises there
    assert torch.equal(to_half(values).view(torch.int16), _reference(values))
    assert to_half(torch.tensor([65520.0, -1e6])).tolist() == [float("inf"), float("-inf")]


def test_subnormals_survive_flush_to_zero():
    """The mode flushes denormals (runtime.start); a float16 subnormal is not a float32 denormal."""
    torch.set_flush_denormal(True)
    try:
        smallest = 2.0**-24  # float16's smallest subnormal
        values = torch.tensor([smallest, 3 * smallest, -1000 * smallest, 3e-5])
        halves = to_half(values)
        assert (halves.view(torch.int16) != 0).all()
        assert torch.equal(from_half(halves)[:3], values[:3])
    finally:
        torch.set_flush_denormal(False)
