"""What every computing stage needs: seeding, device choice, progress bars and atomic torch files."""

from __future__ import annotations

import random
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clipprobe import io
from clipprobe.errors import ClipprobeError


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices); CPU runs are then bit-for-bit repeatable."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(device: str) -> torch.device:
    """`auto` picks CUDA when present; asking for `cuda` without one is an error, not a silent fallback."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ClipprobeError("device: 'cuda' was asked for but no CUDA device is visible (use auto or cpu)")
    return torch.device(device)


def show_progress() -> bool:
    """Progress bars only on a terminal, so `dvc repro` logs and CI output stay readable."""
    return sys.stderr.isatty()


def save_torch(path: str | Path, obj: Any) -> None:
    """torch.save atomically; the object must be loadable with weights_only=True."""
    io.atomic_write(path, lambda tmp: torch.save(obj, tmp))
