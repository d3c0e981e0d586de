"""The deterministic CPU mode: pin the instruction set every CPU kernel dispatches to, before torch loads.

PyTorch's CPU kernels pick their instruction set at run time (ATen's vectorised ops, oneDNN's convolutions,
MKL's BLAS), and each level rounds differently: the same params gave other bytes on an AVX-512 machine than on
an AVX2 one. Pinning all three to AVX2, which every x86-64 CPU of the last ten years has, plus a fixed
intra-op thread count (params.yaml `threads`, set by `runtime.start`), gives the same bytes on any x86-64
Linux machine with the pinned wheels. The host's own settings (ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA,
MKL_*) are overridden on purpose. Other architectures (ARM) and GPUs ignore these variables; there the
results vary within the seed intervals the report gives.

`import clipprobe` applies this, so it must happen before torch is imported (stage scripts import
clipprobe first; torch reads most of these variables at its first kernel call, MKL at load).
CLIPPROBE_NATIVE_CPU=1 turns it off, to measure what it costs (docs/performance.md).
"""

from __future__ import annotations

import os
import sys

ISA = "AVX2"
PINNED = {
    "ATEN_CPU_CAPABILITY": ISA.lower(),  # ATen's vectorised CPU kernels
    "ONEDNN_MAX_CPU_ISA": ISA,  # oneDNN (convolutions, some matmuls)
    "DNNL_MAX_CPU_ISA": ISA,  # its older name
    "MKL_ENABLE_INSTRUCTIONS": ISA,  # MKL's BLAS code path ...
    "MKL_CBWR": ISA,  # ... and its conditional numerical reproducibility mode on that path
    "MKL_DYNAMIC": "FALSE",  # MKL may not lower its thread count behind our back
}
NATIVE = "CLIPPROBE_NATIVE_CPU"


def pin_kernels() -> bool:
    """Set PINNED in the environment unless CLIPPROBE_NATIVE_CPU=1; returns whether the mode is on.

    Too late once torch has run a kernel: then the mode is not claimed (a notebook that imported torch first).
    """
    if os.environ.get(NATIVE) == "1":
        return False
    os.environ.update(PINNED)
    return "torch" not in sys.modules
