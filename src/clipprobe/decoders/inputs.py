"""What the decoder stages read: the first n images of each split and their frozen-tower features.

The frozen tower runs once per image (its outputs never change while a decoder trains), so every model is
trained on cached maps: the pre-pool map at `tower_size` (CLIP's and, as a control, a random-weight tower's)
and the pooled CLIP embedding at the model's own input size (what the attention pool keeps).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import open_clip
import torch

from clipprobe.data.store import Split, load_split
from clipprobe.errors import ClipprobeError
from clipprobe.models.clip import mean_std
from clipprobe.models.tower import FrozenTower, random_tower, run_tower

SPLITS = ("train", "val", "test")


def batch_rows(n: int, batch_size: int, generator: torch.Generator | None = None) -> Iterator[torch.Tensor]:
    """Row indices in batches: shuffled by `generator` (training), in order without one (evaluation)."""
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    yield from order.split(batch_size)


def first_images(root: str | Path, dataset: str, sizes: Mapping[str, int], group: str) -> dict[str, Split]:
    """The first `sizes[split]` rows of each split, loaded into memory (splits are stored shuffled)."""
    out = {}
    for split, n in sizes.items():
        data = load_split(root, dataset, split)
        if n > len(data):
            raise ClipprobeError(
                f"{group}.n_{split}: asks for {n} images; {dataset} {split} holds {len(data)}"
            )
        fields = {k: v for k, v in data.__dict__.items() if isinstance(v, np.ndarray)}
        out[split] = Split(**{k: np.array(v[:n]) for k, v in fields.items()})
    return out


def frozen_features(
    model: open_clip.CLIP,
    splits: Mapping[str, Split],
    *,
    tower_size: int,
    towers: tuple[str, ...],
    seed: int,
    device: torch.device,
    batch_size: int,
) -> dict[str, dict[str, torch.Tensor]]:
    """Per split, the cached decoder inputs: `features[split][kind]` as float32 CPU tensors.

    kinds: "clip" (N, C, g, g) pre-pool map of the CLIP tower at `tower_size` px (g = tower_size / 32);
    "random" (N, C, g, g) the same from a random-weight tower (BatchNorm recalibrated on train images), when
    "random" is in `towers`; "pooled" (N, D) the CLIP embedding (`encode_image`) at the model's own size.
    """
    mean, std = mean_std(model)
    clip_tower = FrozenTower(model)
    if tower_size % clip_tower.stride:
        raise ClipprobeError(f"tower_size: must be a multiple of {clip_tower.stride} (got {tower_size})")
    built = {"clip": clip_tower}
    if "random" in towers:
        built["random"] = random_tower(model, splits["train"].images, seed=seed, batch_size=batch_size).to(
            device
        )
    out: dict[str, dict[str, torch.Tensor]] = {}
    for split, data in splits.items():
        run = {"input_size": tower_size, "mean": mean, "std": std, "device": device, "batch_size": batch_size}
        out[split] = {}
        for kind, tower in built.items():
            heads = {kind: lambda fmap: fmap}
            if kind == "clip" and tower_size == tower.image_size:
                heads["pooled"] = tower.pool  # one pass gives both
            out[split].update(run_tower(tower, data.images, heads, desc=f"{kind} tower, {split}", **run))
        if "pooled" not in out[split]:
            run["input_size"] = clip_tower.image_size
            pooled = run_tower(
                clip_tower, data.images, {"pooled": clip_tower.pool}, desc=f"pooled, {split}", **run
            )
            out[split].update(pooled)
    return out
