"""The deterministic CPU mode: the golden fingerprint, and the same bytes whatever the host's settings.

`clipprobe.fingerprint` runs a few steps of every training loop; `python -m clipprobe.cpu` compares them with
the committed GOLDEN. This machine must reproduce it, under every host setting another machine could have,
and the check must fail, with its one message, where the kernels differ (the mode off).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from clipprobe.cpu import describe_cpu
from clipprobe.fingerprint import GOLDEN, mismatch_message

CHECK = [sys.executable, "-m", "clipprobe.cpu"]
HOST_VARIABLES = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS",
                  "MKL_CBWR", "MKL_DYNAMIC", "OMP_NUM_THREADS", "NPY_DISABLE_CPU_FEATURES",
                  "NPY_ENABLE_CPU_FEATURES",
                  "CLIPPROBE_NATIVE_CPU")  # fmt: skip
x86_64_linux = pytest.mark.skipif(
    sys.platform != "linux" or os.uname().machine != "x86_64", reason="the mode pins x86-64 kernels"
)


def _cpu_flags() -> set[str]:
    try:
        return set(Path("/proc/cpuinfo").read_text().split("flags")[1].split("\n")[0].split())
    except (OSError, IndexError):
        return set()


def _check(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """`python -m clipprobe.cpu` in a fresh process whose host settings are `env` (and none of the shell's)."""
    base = {k: v for k, v in os.environ.items() if k not in HOST_VARIABLES}
    return subprocess.run([*CHECK, *args], env={**base, **env}, capture_output=True, text=True)


@x86_64_linux
def test_this_machine_reproduces_the_golden_fingerprint():
    result = _check({})
    assert result.returncode == 0, result.stdout.strip().splitlines()[-1]


@x86_64_linux
def test_training_bytes_do_not_depend_on_the_host():
    settings = {
        "avx2 everywhere": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
        "one thread": {"OMP_NUM_THREADS": "1"},
        "two threads, MKL's own choice": {"OMP_NUM_THREADS": "2", "MKL_DYNAMIC": "TRUE"},
        "MKL on its AVX2 branch, capped at SSE4.2": {"MKL_CBWR": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2"},
    }
    if "avx512f" in _cpu_flags():
        settings["avx512"] = {"ATEN_CPU_CAPABILITY": "avx512", "ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}
    moved = {}
    for name, env in settings.items():
        found = json.loads(_check(env, "--json").stdout)
        moved[name] = [loop for loop, digest in found.items() if digest != GOLDEN[loop]]
    assert not any(moved.values()), moved


@x86_64_linux
@pytest.mark.skipif("avx512f" not in _cpu_flags(), reason="needs AVX-512 for native kernels to differ")
def test_native_kernels_fail_the_golden_check_with_one_message():
    """The check has teeth: with the mode off, AVX-512 kernels give other bytes, and it says so in one line."""
    result = _check({"CLIPPROBE_NATIVE_CPU": "1"})
    assert result.returncode == 1
    message = result.stdout.strip().splitlines()[-1]
    assert message.startswith("golden fingerprint: clip pretraining, ")
    assert describe_cpu() in message and "mode OFF" in message and "python -m clipprobe.cpu" in message


@x86_64_linux
def test_numpy_runs_no_avx512_loops_after_import_clipprobe():
    """numpy's AVX-512 exp rounds otherwise than its AVX2 one (the augmented views' crop boxes use it)."""
    probe = (
        "import clipprobe, numpy\n"
        "from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__\n"
        "print([k for k in __cpu_dispatch__ if __cpu_features__[k] and ('AVX512' in k or k == 'X86_V4')])"
    )
    host = {k: v for k, v in os.environ.items() if k not in HOST_VARIABLES}
    found = subprocess.run([sys.executable, "-c", probe], env=host, capture_output=True, text=True)
    assert found.stdout.strip() == "[]", found.stdout + found.stderr


def test_a_moved_loop_is_named_with_the_cpu_and_what_to_do():
    golden = {**GOLDEN, "vq-vae": "0" * 64}
    message = mismatch_message(dict(GOLDEN), golden)
    assert message.startswith("golden fingerprint: vq-vae gave other bytes on ")
    assert describe_cpu() in message and "--update" in message and "\n" not in message
    assert mismatch_message(dict(GOLDEN)) is None
