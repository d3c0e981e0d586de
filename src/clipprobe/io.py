"""The one guarded writer of every output a stage leaves for DVC.

Every writer builds its output under a temporary name beside the target (a file, or a whole folder). Outside
a `transaction` it is swapped in at once; inside one (`stage.run_stage` wraps every stage in one), every
output of the stage is swapped in together when the stage ends without error, and all are thrown away when
it fails. A swap first moves each old output aside, then moves each new one in, and only then deletes the old
ones; a failure on the way puts the old ones back. So whatever goes wrong (a full disk, a read-only or
immutable target, torch's own write errors, a bug), the previous outputs stay whole, never mixed with new
ones, no temporary file stays behind, and the error is one line naming the path and its cause. No torch
here: the report stage writes through this module without importing it.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from clipprobe.errors import ClipprobeError

_logger = logging.getLogger(__name__)
WRITTEN: list[Path] = []  # every path swapped in by this process, in order (run_stage reports them)
_staged: list[tuple[Path, Path]] | None = None  # (temporary, target) of the open transaction, if any


def write_failure(path: Path, err: OSError) -> ClipprobeError:
    """The one line of an output that cannot be written, naming it and the cause."""
    reason = err.strerror or str(err) or type(err).__name__
    if err.errno != errno.ENOSPC and _free_bytes(path) < 1 << 20:  # torch reports ENOSPC in its own words
        reason = os.strerror(errno.ENOSPC)
    return ClipprobeError(f"{path}: cannot write it ({reason}); make its folder writable or free space")


def _free_bytes(path: Path) -> int:
    folder = next((p for p in (path, *path.parents) if p.exists()), Path("."))
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return 1 << 30


def _remove(path: Path) -> bool:
    """Delete a file or folder if it is there; False when some of it cannot go (an immutable file)."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    except OSError:
        return False
    return True


@contextlib.contextmanager
def transaction() -> Iterator[None]:
    """Swap in every output written inside together at its end, or none of them if it raises."""
    global _staged
    outer, _staged = _staged, []
    staged = _staged
    try:
        yield
    except BaseException:
        for tmp, _ in staged:
            _remove(tmp)
        raise
    finally:
        _staged = outer
    _swap(staged)


def _swap(staged: list[tuple[Path, Path]]) -> None:
    """Move every old target aside, move every temporary in, then delete the old ones; undo on failure."""
    aside: list[tuple[Path, Path]] = []
    placed: list[Path] = []
    target = staged[0][1] if staged else Path(".")
    try:
        for _, target in staged:
            if target.exists() or target.is_symlink():
                old = target.with_name(f".{target.name}.old")
                _remove(old)
                os.replace(target, old)
                aside.append((target, old))
        for tmp, target in staged:
            os.replace(tmp, target)
            placed.append(target)
    except OSError as err:
        for path in placed:
            _remove(path)
        for path, old in aside:
            os.replace(old, path)
        for tmp, _ in staged:
            _remove(tmp)
        raise write_failure(target, err) from None
    for target, old in aside:
        if not _remove(old):
            _logger.warning(
                "the previous %s could not be deleted: it stays beside it as %s", target, old.name
            )
    WRITTEN.extend(target for _, target in staged)


def _stage(tmp: Path, target: Path) -> None:
    if _staged is None:
        _swap([(tmp, target)])
    else:
        _staged.append((tmp, target))


def _build(target: Path, tmp: Path, write: Callable[[Path], None]) -> None:
    """Run `write(tmp)`; any OSError (a full disk, a read-only folder) removes tmp and becomes one line."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
    except OSError as err:
        _remove(tmp)
        raise write_failure(target, err) from None
    except BaseException:
        _remove(tmp)
        raise
    _stage(tmp, target)


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """Write a file through `write(tmp)` on a temporary file beside `path`; swapped in as the module says."""
    path = Path(path)
    _build(path, path.with_name(f".{path.name}.tmp"), write)


def replace_folder(folder: str | Path, write: Callable[[Path], None]) -> None:
    """Build a folder's whole new content with `write(tmp)` in a temporary folder beside it; swapped in as the
    module says, so files of an earlier run cannot linger (a stale metric would look current)."""
    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}.tmp")

    def fresh(tmp: Path) -> None:
        _remove(tmp)
        tmp.mkdir()
        write(tmp)

    _build(folder, tmp, fresh)


def write_json(path: str | Path, payload: Mapping[str, Any]) -> None:
    """Write JSON, keys sorted, so reruns give byte-identical files."""
    text = json.dumps(payload, indent=2, sort_keys=True) + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(text))


def write_csv(path: str | Path, rows: Iterable[Mapping[str, Any]], columns: list[str]) -> None:
    """Write a CSV with a fixed column order."""

    def write(tmp: Path) -> None:
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            for row in rows:
                writer.writerow({k: row.get(k, "") for k in columns})

    atomic_write(path, write)


def save_arrays(folder: str | Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Replace `folder` by one `<name>.npy` per array.

    Plain .npy files, not .npz: a zip archive stamps each member with the time, and DVC would see new bytes.
    """

    def write(tmp: Path) -> None:
        for name, array in arrays.items():
            np.save(tmp / f"{name}.npy", array)

    replace_folder(folder, write)


def write_json_folder(folder: str | Path, payloads: Mapping[str, Mapping[str, Any]]) -> None:
    """Replace `folder` by one `<name>.json` per payload (keys sorted, as write_json)."""

    def write(tmp: Path) -> None:
        for name, payload in payloads.items():
            (tmp / f"{name}.json").write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")

    replace_folder(folder, write)
