"""The deterministic CPU mode: the same bytes on every x86-64 machine, Intel or AMD, whatever its settings.

PyTorch's CPU kernels choose their code at run time: ATen's vectorised ops and oneDNN's convolutions by the
instruction set, MKL's BLAS and vector math by the instruction set *and the vendor*. Each choice rounds
differently, and training turns a one-ulp difference into other weights. The mode fixes every choice:

- ATen and oneDNN are capped at AVX2, which every x86-64 CPU of the last ten years has, and numpy's
  dispatched SIMD loops too (its AVX-512 `exp` rounds otherwise than its AVX2 one, and an AMD Zen 3 has none);
- MKL runs its COMPATIBLE branch (`MKL_CBWR`), the one MKL promises gives the same results on Intel and
  non-Intel CPUs. Its AVX2 branch does not: on an AMD EPYC it takes other BLAS kernels than on an Intel Xeon
  (shared/tools/cpu_canary.py, docs/cpu.md);
- one exception inside the COMPATIBLE branch: MKL's vector-math square root (what `torch.sqrt` calls on the
  CPU) refines the CPU's approximate reciprocal square root, which Intel and AMD implement differently, so
  `exact_sqrt` (cpu/sqrt.py, installed by `runtime.start`) routes `torch.sqrt` to the IEEE instruction;
- float16 conversions in integer arithmetic (cpu/half.py): the F16C instructions treat float16 subnormals
  by the flush-to-zero flags, and not the same way on every CPU;
- a fixed intra-op thread count (params.yaml `threads`, set by `runtime.start`).

The host's own settings (ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA, MKL_*, NPY_*) are overridden on purpose. ARM CPUs
and GPUs ignore these variables; there the results vary within the seed intervals the report gives.
`python -m clipprobe.cpu` says whether this machine reproduces the committed golden fingerprint.

`import clipprobe` applies the pins, so it must happen before torch and numpy are imported (stage scripts
import clipprobe first; torch reads these variables at its first kernel call, MKL and numpy at load).
CLIPPROBE_NATIVE_CPU=1 turns the mode off, to measure what it costs (docs/performance.md).
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

ISA = "AVX2"
PINNED = {
    "ATEN_CPU_CAPABILITY": ISA.lower(),  # ATen's vectorised CPU kernels
    "ONEDNN_MAX_CPU_ISA": ISA,  # oneDNN (convolutions, some matmuls)
    "DNNL_MAX_CPU_ISA": ISA,  # its older name
    "MKL_CBWR": "COMPATIBLE",  # MKL's BLAS and vector math: the branch that is the same on every vendor
    "MKL_DYNAMIC": "FALSE",  # MKL may not lower its thread count behind our back
    # numpy's AVX-512 loops, by their names in numpy 2.4 (pyproject pins 2.4.x: other releases name and
    # implement their loops otherwise); numpy warns about names it does not dispatch
    "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",
}
UNSET = ("NPY_ENABLE_CPU_FEATURES",)  # numpy refuses to load with both it and NPY_DISABLE_CPU_FEATURES set
NATIVE = "CLIPPROBE_NATIVE_CPU"
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx_vnni", "amx_tile")  # what kernel dispatch looks at


def pin_kernels() -> bool:
    """Set PINNED in the environment unless CLIPPROBE_NATIVE_CPU=1; returns whether the mode is on.

    Too late once torch or numpy is loaded: then the mode is not claimed (a notebook that imported them first).
    """
    if os.environ.get(NATIVE) == "1":
        return False
    os.environ.update(PINNED)
    for name in UNSET:
        os.environ.pop(name, None)
    return "torch" not in sys.modules and "numpy" not in sys.modules


def describe_cpu() -> str:
    """One line naming this CPU: vendor, model, family/model numbers and the ISA flags dispatch looks at."""
    try:
        first = Path("/proc/cpuinfo").read_text().split("\n\n")[0]  # the first logical CPU
    except OSError:
        return f"{platform.machine()} (no /proc/cpuinfo)"
    lines = dict(line.split(":", 1) for line in first.splitlines() if ":" in line)
    info = {key.strip(): value.strip() for key, value in lines.items()}
    flags = [flag for flag in ISA_FLAGS if flag in info.get("flags", "").split()]
    return (
        f"{info.get('vendor_id', '?')} {info.get('model name', '?')} (family {info.get('cpu family', '?')}, "
        f"model {info.get('model', '?')}; {' '.join(flags) or 'no AVX2'})"
    )
