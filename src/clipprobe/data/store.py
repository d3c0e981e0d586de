"""The uniform on-disk store every dataset is converted into, so later stages never care which one they read.

Layout (see docs/architecture.md): ``<root>/<name>/meta.json`` and one folder per split holding
``images.npy`` (uint8 N×H×W×3) plus whichever of ``labels.npy``, ``captions.json``, ``masks.npy``,
``counts.npy`` and ``positions.npy`` the dataset has.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from clipprobe import io

IGNORE = 255  # mask value of pixels no model is scored on (e.g. the Pets trimap border under `ignore`)
_ARRAY_FIELDS = ("labels", "masks", "counts", "positions", "backgrounds", "sizes")


@dataclass
class Split:
    """One split of a dataset; optional fields are None when the dataset does not have them."""

    images: np.ndarray  # (N, H, W, 3) uint8
    labels: np.ndarray | None = None  # (N,) int64 class index
    captions: list[str] | None = None  # N free-form captions
    masks: np.ndarray | None = None  # (N, H, W) uint8 semantic mask, 0 = background, IGNORE = scored nowhere
    counts: np.ndarray | None = None  # (N,) int64 number of objects
    positions: np.ndarray | None = None  # (N, 2) float32 (x, y) in [0, 1] of the labelled object
    # the within-class variation the generator drew (the shapes world's "modes" of a class):
    backgrounds: np.ndarray | None = None  # (N,) int64 background kind (shapes.BACKGROUNDS)
    sizes: np.ndarray | None = None  # (N,) float32 size of the labelled object, a fraction of the side

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

    @property
    def raw_class_names(self) -> list[str]:
        """The source's own class names (torchvision's `aquarium_fish`); `class_names` are cleaned."""
        return list(self.extra.get("raw_class_names", self.class_names))


def save_dataset(root: str | Path, meta: DatasetMeta, splits: dict[str, Split]) -> Path:
    """Write a dataset under ``root/meta.name``; written to a temporary folder first, then renamed."""
    final = Path(root) / meta.name
    meta.splits = {name: len(split) for name, split in splits.items()}
    payload = {**meta.__dict__, "image_size": list(meta.image_size)}

    def write(tmp: Path) -> None:
        for split_name, split in splits.items():
            _save_split(tmp / split_name, split)
        (tmp / "meta.json").write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")

    io.replace_folder(final, write)
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
