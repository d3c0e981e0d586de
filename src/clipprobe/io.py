"""Atomic writers (and the reader of array folders) for every output a stage leaves for DVC.

Each writer writes to a temporary name next to the target and renames it, so a failed or killed stage never
leaves a half-written file that DVC could take for a result. No torch here: the report stage reads and
writes through this module without importing it.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from clipprobe.errors import ClipprobeError

WRITTEN: list[Path] = []  # every path written in this process, in order (run_stage reports them)


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """Call `write(tmp)` on a temporary file beside `path`, then rename it to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)
    WRITTEN.append(path)


def write_json(path: str | Path, payload: Mapping[str, Any]) -> None:
    """Write JSON atomically, keys sorted, so reruns give byte-identical files."""
    text = json.dumps(payload, indent=2, sort_keys=True) + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(text))


def write_csv(path: str | Path, rows: Iterable[Mapping[str, Any]], columns: list[str]) -> None:
    """Write a CSV atomically with a fixed column order."""

    def write(tmp: Path) -> None:
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            for row in rows:
                writer.writerow({k: row.get(k, "") for k in columns})

    atomic_write(path, write)


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
    WRITTEN.append(folder)


def load_arrays(folder: str | Path) -> dict[str, np.ndarray]:
    """The arrays `save_arrays` wrote, by name; a missing folder is a ClipprobeError naming it."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ClipprobeError(f"{folder}: not found (run the stage that writes it)")
    return {path.stem: np.load(path) for path in sorted(folder.glob("*.npy"))}
