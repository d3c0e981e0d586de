"""What every stage needs: seeding, device choice, atomic writers and the entry-point guard."""

from __future__ import annotations

import csv
import json
import os
import random
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

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


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)


def write_json(path: str | Path, payload: Mapping[str, Any]) -> None:
    """Write JSON atomically, keys sorted, so reruns give byte-identical files."""

    def write(tmp: Path) -> None:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")

    _atomic_write(Path(path), write)


def write_csv(path: str | Path, rows: Iterable[Mapping[str, Any]], columns: list[str]) -> None:
    """Write a CSV atomically with a fixed column order."""

    def write(tmp: Path) -> None:
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            for row in rows:
                writer.writerow({k: row.get(k, "") for k in columns})

    _atomic_write(Path(path), write)


def save_torch(path: str | Path, obj: Any) -> None:
    """torch.save atomically; the object must be loadable with weights_only=True."""
    _atomic_write(Path(path), lambda tmp: torch.save(obj, tmp))


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's main(); a ClipprobeError ends the process with one line on stderr and exit code 2."""
    try:
        main()
    except ClipprobeError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
