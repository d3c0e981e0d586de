"""What every computing stage needs: seeding, device choice, progress bars and atomic torch files."""

from __future__ import annotations

import contextlib
import errno
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

import clipprobe
from clipprobe import gpus, io
from clipprobe.cpu.sqrt import exact_sqrt
from clipprobe.errors import ClipprobeError


def start(seed: int, threads: int) -> None:
    """What every computing stage does first: the CPU setup of the deterministic mode, then the seeds.

    Denormals are flushed to zero (barely trained heads and decoders produce them, and CPU kernels slow down
    tenfold on them) and torch's intra-op threads fixed to `threads`, before any parallel region starts, so
    the OpenMP workers inherit both: results depend on the thread count, so it is a param. With the mode on,
    `torch.sqrt` takes the IEEE instruction instead of MKL's vendor-dependent one (`clipprobe.cpu.sqrt`).
    """
    if clipprobe.DETERMINISTIC_CPU:
        exact_sqrt()
    torch.set_flush_denormal(True)
    torch.set_num_threads(threads)
    seed_everything(seed)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices); CPU runs are then bit-for-bit repeatable."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(device: str) -> torch.device:
    """`auto` picks CUDA when present; asking for `cuda` without one is an error, not a silent fallback. On a
    machine with several GPUs the process first claims one of its own (`clipprobe.gpus`). A CUDA device comes
    back with its index (`cuda:0`, not `cuda`), so it compares equal to the `.device` of the tensors on it."""
    gpus.claim_for(device)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ClipprobeError("device: 'cuda' was asked for but no CUDA device is visible (use auto or cpu)")
    resolved = torch.device(device)
    if resolved.type == "cuda" and resolved.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return resolved


@contextlib.contextmanager
def fast_cuda_math(device: torch.device) -> Iterator[None]:
    """TF32 for float32 matmuls and cuDNN's autotuned convolutions on a GPU, for a block that runs every arm
    of its comparisons (the decoders' experiments: every model and control alike), so neither setting can
    favour one arm. Neither is deterministic (cuDNN picks its algorithms by timing them), and neither is
    used where a result must equal another exactly (the embedding, the few-shot heads' zero-shot start).
    No effect on the CPU."""
    if device.type != "cuda":
        yield
        return
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.benchmark
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.benchmark = saved


def save_torch(path: str | Path, obj: Any) -> None:
    """torch.save through the guarded writer; the object must be loadable with weights_only=True."""

    def write(tmp: Path) -> None:
        try:
            torch.save(obj, tmp)
        except RuntimeError as err:  # torch reports a failed write (a full disk) as a RuntimeError
            raise OSError(errno.EIO, f"torch.save failed: {str(err).splitlines()[0][:120]}") from err

    io.atomic_write(path, write)
