"""What every stage needs: seeding, device choice, atomic writers and the entry-point guard."""

from __future__ import annotations

import csv
import json
import os
import random
import shutil
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


def save_arrays(folder: str | Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Replace `folder` by one `<name>.npy` per array, written to a temporary folder first, then renamed.

    Plain .npy files, not .npz: a zip archive stamps each member with the time, and DVC would see new bytes.
    """
    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, array in arrays.items():
        np.save(tmp / f"{name}.npy", array)
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)


def load_arrays(folder: str | Path) -> dict[str, np.ndarray]:
    """The arrays `save_arrays` wrote, by name; a missing folder is a ClipprobeError naming it."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ClipprobeError(f"{folder}: not found (run the stage that writes it)")
    return {path.stem: np.load(path) for path in sorted(folder.glob("*.npy"))}


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's main(); a ClipprobeError ends the process with one line on stderr and exit code 2."""
    try:
        main()
    except ClipprobeError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
