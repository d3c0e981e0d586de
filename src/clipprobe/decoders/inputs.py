"""What the decoder stages read: the first n images of each split and their frozen-tower features.

The frozen tower runs once per image (its outputs never change while a decoder trains), so every model is
trained on cached maps: the pre-pool map at `tower_size` (CLIP's and, as a control, a random-weight tower's)
and the pooled CLIP embedding at the model's own input size (what the attention pool keeps).

Where the cache lives (`map_storage`): on the CPU, float32 in host memory; on a GPU, bf16 (what the tower's
autocast computes) on the GPU itself when it fits there, so a training batch is gathered on the device with
no host copy and no sync; otherwise in pinned host memory, copied per batch without blocking. The paper
preset's largest cache, the VQ-VAE's two RN50 maps of 60k CIFAR images (2048 x 7 x 7), is 24 GB in bf16:
on the GPU, not in host RAM (docs/performance.md).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import open_clip
import torch

from clipprobe.contracts import load_split
from clipprobe.data.store import Split
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


GPU_SHARE = 0.6  # the most of the GPU's free memory the cache may take (the decoders train beside it)


def map_storage(device: torch.device, n_bytes_fp32: int) -> tuple[torch.device, torch.dtype]:
    """(device, dtype) of a cache of `n_bytes_fp32` bytes in float32 (see the module docstring)."""
    if device.type != "cuda":
        return torch.device("cpu"), torch.float32
    free, _ = torch.cuda.mem_get_info(device)
    return (device if n_bytes_fp32 // 2 <= GPU_SHARE * free else torch.device("cpu")), torch.bfloat16


def gather(values: torch.Tensor, rows: torch.Tensor, device: torch.device) -> torch.Tensor:
    """values[rows] as float32 on `device`: indexed where `values` lives, then copied without blocking."""
    return values[rows.to(values.device)].to(device, non_blocking=True).float()


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
    """Per split, the cached decoder inputs: `features[split][kind]`, stored as `map_storage` says.

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
        built["random"] = random_tower(
            model, splits["train"].images, seed=seed, batch_size=batch_size, device=device
        )
    grid = tower_size // clip_tower.stride
    n_images = sum(len(data.images) for data in splits.values())
    storage = map_storage(device, 4 * n_images * len(built) * clip_tower.out_channels * grid * grid)
    out: dict[str, dict[str, torch.Tensor]] = {}
    for split, data in splits.items():
        run = {"input_size": tower_size, "mean": mean, "std": std, "device": device, "batch_size": batch_size}
        run["storage"] = storage
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
