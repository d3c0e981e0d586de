"""One GPU per process: how `dvc queue start -j N` on an N-GPU machine puts one experiment on each GPU.

Before CUDA starts, a stage that may use a GPU (`device: auto` or `cuda`) on a machine with several claims the
first one no other clipprobe process holds: an exclusive lock on a file per GPU (`flock`), held by an open
descriptor, so the kernel releases it when the process ends, however it ends. It then sees only that GPU
(CUDA_VISIBLE_DEVICES). When every GPU is held, it waits for one. A CUDA_VISIBLE_DEVICES set by the user or a
scheduler (Slurm sets it per job) is respected as it is. Torch-free: the claim happens before torch
touches CUDA.
"""

from __future__ import annotations

import fcntl
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import IO

LOCKS = Path(os.environ.get("CLIPPROBE_GPU_LOCKS", Path(tempfile.gettempdir()) / "clipprobe-gpus"))
NVIDIA_GPUS = Path("/proc/driver/nvidia/gpus")  # one entry per GPU the driver sees (no CUDA call needed)
_held: list[IO] = []  # the claimed GPU's open lock file, for the life of the process

_logger = logging.getLogger(__name__)


def count() -> int:
    """How many NVIDIA GPUs the driver sees, without starting CUDA (0 without the driver)."""
    try:
        return len(list(NVIDIA_GPUS.iterdir()))
    except OSError:
        return 0


def claim(n_gpus: int, locks: Path | None = None, poll: float = 1.0) -> int:
    """The index of the GPU this process now holds, of `n_gpus`: the first free one, waiting when none is.
    `locks`: the folder of the lock files (default LOCKS, shared by every clipprobe process of the machine)."""
    locks = locks or LOCKS
    locks.mkdir(parents=True, exist_ok=True)
    waited = False
    while True:
        for index in range(n_gpus):
            handle = open(locks / f"gpu{index}.lock", "w")  # noqa: SIM115 (held open on purpose)
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            _held.append(handle)
            return index
        if not waited:
            _logger.info("every one of the %d GPUs is held by another clipprobe process: waiting", n_gpus)
            waited = True
        time.sleep(poll)


def claim_for(device: str) -> None:
    """For a stage about to use `device`: on a machine with several GPUs, hold one and see only it."""
    if device not in ("auto", "cuda") or "CUDA_VISIBLE_DEVICES" in os.environ or _held:
        return
    n_gpus = count()
    if n_gpus > 1:
        index = claim(n_gpus)
        os.environ["CUDA_VISIBLE_DEVICES"] = str(index)
        _logger.info("GPU %d of %d claimed (lock files in %s)", index, n_gpus, LOCKS)
