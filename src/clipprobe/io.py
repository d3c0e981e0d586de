"""Atomic writers for every output a stage leaves for DVC.

Each writer writes to a temporary name next to the target and renames it, so a failed or killed stage never
leaves a half-written file that DVC could take for a result. No torch here: the report stage reads and
writes through this module without importing it.
"""

from __future__ import annotations

import contextlib
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


def write_failure(folder: Path, err: OSError) -> ClipprobeError:
    """The one line of an output that cannot be written (read-only folder, full disk, ...)."""
    reason = err.strerror or type(err).__name__
    return ClipprobeError(
        f"{folder}/: cannot write the stage's output there ({reason}); make it writable or free space"
    )


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """Call `write(tmp)` on a temporary file beside `path`, then rename it to `path`; on failure nothing is
    left behind and the error is one line naming the folder."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        os.replace(tmp, path)
    except OSError as err:
        with contextlib.suppress(OSError):  # a folder that cannot hold the output holds no leftover either
            tmp.unlink(missing_ok=True)
        raise write_failure(path.parent, err) from None
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

    def write(tmp: Path) -> None:
        for name, array in arrays.items():
            np.save(tmp / f"{name}.npy", array)

    replace_folder(folder, write)


def replace_folder(folder: str | Path, write: Callable[[Path], None]) -> None:
    """Build a folder's new content with `write(tmp)` in a temporary folder beside it, then swap it in, so
    files of an earlier run cannot linger (a stale metric would look current)."""
    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}.tmp")
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        write(tmp)
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise write_failure(folder.parent, err) from None
    WRITTEN.append(folder)


def write_json_folder(folder: str | Path, payloads: Mapping[str, Mapping[str, Any]]) -> None:
    """Replace `folder` by one `<name>.json` per payload (keys sorted, as write_json)."""

    def write(tmp: Path) -> None:
        for name, payload in payloads.items():
            (tmp / f"{name}.json").write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")

    replace_folder(folder, write)
