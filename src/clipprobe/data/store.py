"""The uniform on-disk store every dataset is converted into, so later stages never care which one they read.

Layout (see docs/architecture.md): ``<root>/<name>/meta.json`` and one folder per split holding
``images.npy`` (uint8 N×H×W×3) plus whichever of ``labels.npy``, ``captions.json``, ``masks.npy``,
``counts.npy`` and ``positions.npy`` the dataset has.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from clipprobe import io
from clipprobe.errors import ClipprobeError

IGNORE = 255  # mask value of pixels no model is scored on (e.g. the Pets trimap border under `ignore`)
_ARRAY_FIELDS = ("labels", "masks", "counts", "positions")


@dataclass
class Split:
    """One split of a dataset; optional fields are None when the dataset does not have them."""

    images: np.ndarray  # (N, H, W, 3) uint8
    labels: np.ndarray | None = None  # (N,) int64 class index
    captions: list[str] | None = None  # N free-form captions
    masks: np.ndarray | None = None  # (N, H, W) uint8 semantic mask, 0 = background, IGNORE = scored nowhere
    counts: np.ndarray | None = None  # (N,) int64 number of objects
    positions: np.ndarray | None = None  # (N, 2) float32 (x, y) in [0, 1] of the labelled object

    def __len__(self) -> int:
        return len(self.images)


@dataclass
class DatasetMeta:
    name: str
    class_names: list[str]
    image_size: tuple[int, int]
    splits: dict[str, int]
    source: str
    mask_class_names: list[str] | None = None
    extra: dict = field(default_factory=dict)


def save_dataset(root: str | Path, meta: DatasetMeta, splits: dict[str, Split]) -> Path:
    """Write a dataset under ``root/meta.name``; written to a temporary folder first, then renamed."""
    final = Path(root) / meta.name
    tmp = final.with_name(f".{meta.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for split_name, split in splits.items():
        _save_split(tmp / split_name, split)
    meta.splits = {name: len(split) for name, split in splits.items()}
    payload = {**meta.__dict__, "image_size": list(meta.image_size)}
    (tmp / "meta.json").write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    io.WRITTEN.append(final)
    return final


def _save_split(folder: Path, split: Split) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if split.images.dtype != np.uint8 or split.images.ndim != 4 or split.images.shape[-1] != 3:
        raise ValueError(f"images must be uint8 (N, H, W, 3), got {split.images.dtype} {split.images.shape}")
    np.save(folder / "images.npy", split.images)
    for name in _ARRAY_FIELDS:
        value = getattr(split, name)
        if value is not None:
            if len(value) != len(split):
                raise ValueError(f"{name} has {len(value)} rows for {len(split)} images")
            np.save(folder / f"{name}.npy", value)
    if split.captions is not None:
        (folder / "captions.json").write_text(json.dumps(split.captions) + "\n")


def load_meta(root: str | Path, name: str) -> DatasetMeta:
    """Read ``root/name/meta.json``; a missing dataset is a ClipprobeError naming the file."""
    path = Path(root) / name / "meta.json"
    if not path.is_file():
        raise ClipprobeError(f"{path}: dataset '{name}' not found; run the data stage (dvc repro data)")
    payload = json.loads(path.read_text())
    payload["image_size"] = tuple(payload["image_size"])
    return DatasetMeta(**payload)


def load_split(root: str | Path, name: str, split: str, mmap: bool = True) -> Split:
    """Load one split; arrays are memory-mapped unless ``mmap=False``."""
    folder = Path(root) / name / split
    if not (folder / "images.npy").is_file():
        raise ClipprobeError(f"{folder}: split '{split}' of dataset '{name}' not found")
    mode = "r" if mmap else None
    fields: dict = {"images": np.load(folder / "images.npy", mmap_mode=mode)}
    for field_name in _ARRAY_FIELDS:
        path = folder / f"{field_name}.npy"
        if path.is_file():
            fields[field_name] = np.load(path, mmap_mode=mode)
    captions = folder / "captions.json"
    if captions.is_file():
        fields["captions"] = json.loads(captions.read_text())
    return Split(**fields)
