"""The frozen ResNet tower of a CLIP without its attention pool, and the maps counting and the decoders read.

CLIP's ModifiedResNet ends in an attention pool that turns the layer4 map (B, C, S/32, S/32) into one vector.
The counting probes, the VQ-VAE and the segmentation decoder read the map itself, so the tower here stops
before the pool. It is frozen for good: no parameter takes gradients and BatchNorm stays in eval mode (running
statistics untouched) even when a module holding it is put into training mode. ViT towers pool with a class
token, not an attention pool over a conv map, so they have no such map: asking for one is an error.

The tower runs once per image through the one streamer (`features.stream`), so every decoder trains on
cached maps: the pre-pool map at `tower_size` (CLIP's and, as a control, a random-weight tower's) and the
pooled CLIP embedding at the model's own input size (`frozen_features`); counting reads the pooled embedding
and the pre-pool map average-pooled to a small grid (`tower_features`).

Where a cache lives (`map_storage`): on the CPU, float32 in host memory; on a GPU, bf16 (what the tower's
autocast computes) on the GPU itself when it fits there, so a training batch is gathered on the device with
no host copy and no sync; otherwise in pinned host memory, copied per batch without blocking. The paper
preset's largest cache, the VQ-VAE's two RN50 maps of 60k CIFAR images (2048 x 7 x 7), is 24 GB in bf16:
on the GPU, not in host RAM (docs/performance.md).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from open_clip.modified_resnet import ModifiedResNet
from torch import nn

from clipprobe.data.store import Split
from clipprobe.errors import ClipprobeError
from clipprobe.features.stream import check_finite, stream_images
from clipprobe.models.clip import mean_std
from clipprobe.preprocess import autocast, model_input, preprocess_uint8
from clipprobe.progress import progress

LAYERS = (1, 2, 3, 4)  # residual stages whose output map can be read; 4 is the attention pool's input
CALIBRATION_IMAGES = 5_000  # the random tower's BatchNorm statistics: the first train images, every profile


class FrozenTower(nn.Module):
    """(B, 3, S, S) preprocessed images -> (B, C, S / stride, S / stride) output map of residual stage `layer`.

    `layer=4` (default) is the pre-attention-pool map; `pool` applies the model's own attention pool to it,
    which reproduces `encode_image` exactly.
    """

    def __init__(self, clip_or_visual: nn.Module, layer: int = 4) -> None:
        super().__init__()
        visual = getattr(clip_or_visual, "visual", clip_or_visual)
        if not isinstance(visual, ModifiedResNet):
            raise ClipprobeError(
                f"model: a {type(visual).__name__} tower has no attention pool over a feature map; "
                "use a ResNet CLIP (RN50, clipprobe-tiny-rn)"
            )
        if layer not in LAYERS:
            raise ClipprobeError(f"layer: must be one of {LAYERS} (got {layer})")
        self.visual = visual.requires_grad_(False).eval()
        self.layer = layer
        self._stages = [visual.stem, visual.layer1, visual.layer2, visual.layer3, visual.layer4][: layer + 1]

    @property
    def out_channels(self) -> int:
        return getattr(self.visual, f"layer{self.layer}")[-1].conv3.out_channels

    @property
    def stride(self) -> int:
        return 2 ** (self.layer + 1)  # the stem downsamples 4x, each later stage 2x

    @property
    def image_size(self) -> int:
        """The input side the attention pool's positional embedding was built for."""
        return int(self.visual.image_size)

    def train(self, mode: bool = True) -> FrozenTower:
        """Always eval: BatchNorm keeps its running statistics whatever the enclosing module does."""
        return super().train(False)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self._stages:
            x = stage(x)
        return x

    @torch.no_grad()
    def pool(self, fmap: torch.Tensor) -> torch.Tensor:
        """(B, C, S/32, S/32) pre-pool map -> (B, D): the model's attention pool, i.e. `encode_image`."""
        if self.layer != 4:
            raise ClipprobeError(
                f"layer: the attention pool reads layer 4's map (this tower stops at {self.layer})"
            )
        return self.visual.attnpool(fmap)


def random_tower(
    model: open_clip.CLIP, calibration: np.ndarray, *, seed: int, batch_size: int, device: torch.device
) -> FrozenTower:
    """The control tower: `model`'s architecture with fresh random weights, BatchNorm statistics recalibrated.

    Untrained BatchNorm holds mean 0 / variance 1, which would let activations grow stage after stage; the
    running statistics are therefore re-estimated (cumulative average) on the first CALIBRATION_IMAGES uint8
    `calibration` images at the model's own input size, on `device`, as for any network whose BatchNorm must
    be frozen. The weights are drawn on the CPU, so every device gets the same tower.
    """
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    visual = copy.deepcopy(model.visual).cpu()
    for module in visual.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    visual.init_parameters()
    torch.random.set_rng_state(generator_state)
    norms = [m for m in visual.modules() if isinstance(m, nn.BatchNorm2d)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative moving average over the calibration batches
    mean, std = mean_std(model)
    visual.to(device).train()
    n = min(len(calibration), CALIBRATION_IMAGES)
    with torch.no_grad():
        for batch in stream_images(calibration[:n], batch_size, device):
            visual(preprocess_uint8(batch, int(visual.image_size), mean, std))
    for norm in norms:
        norm.momentum = 0.1
    return FrozenTower(visual)


def run_tower(
    tower: FrozenTower,
    images: np.ndarray,
    heads: Mapping[str, Callable[[torch.Tensor], torch.Tensor]],
    *,
    input_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    device: torch.device,
    batch_size: int,
    desc: str = "tower",
    storage: tuple[torch.device, torch.dtype] | None = None,
) -> dict[str, torch.Tensor]:
    """Run uint8 (N, H, W, 3) images through the tower at `input_size` px; each head maps the batch's output map.

    Images are resized as open_clip's eval transform does (`preprocess_uint8`), so `input_size` above the
    model's own size means upsampled inputs and a finer map (as CIFAR's 32 px images upsampled to 224 px give
    RN50 its 7 x 7 map). Through the one streamer, like `embed.embed_images`: channels_last, bf16
    autocast on CUDA. Returns one
    tensor per head, rows in image order, written into one buffer per head (no concatenation copy) of
    `storage`'s (device, dtype): by default float32 on the CPU (`map_storage`).
    """
    tower = tower.to(device, memory_format=torch.channels_last)
    where, dtype = storage or (torch.device("cpu"), torch.float32)
    out: dict[str, torch.Tensor] = {}
    batches = stream_images(images, batch_size, device)
    start = 0
    for batch in progress(batches, total=math.ceil(len(images) / batch_size), desc=desc):
        with torch.no_grad(), autocast(device):
            fmap = tower(model_input(batch, input_size, mean, std, channels_last=True))
            for name, head in heads.items():
                value = head(fmap)
                if name not in out:
                    pinned = where.type == "cpu" and device.type == "cuda"  # non-blocking copies back
                    shape = (len(images), *value.shape[1:])
                    out[name] = torch.empty(shape, dtype=dtype, device=where, pin_memory=pinned)
                out[name][start : start + len(value)].copy_(value, non_blocking=True)
        start += len(batch)
    if device.type == "cuda":
        torch.cuda.synchronize(device)  # the non-blocking copies have landed
    check_finite(out.values(), f"{desc} maps")
    return out


GPU_SHARE = 0.6  # the most of the GPU's free memory a cache may take (the decoders train beside it)


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
    clip: open_clip.CLIP,
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
    mean, std = mean_std(clip)
    clip_tower = FrozenTower(clip)
    if tower_size % clip_tower.stride:
        raise ClipprobeError(f"tower_size: must be a multiple of {clip_tower.stride} (got {tower_size})")
    built = {"clip": clip_tower}
    if "random" in towers:
        built["random"] = random_tower(
            clip, splits["train"].images, seed=seed, batch_size=batch_size, device=device
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


def tower_features(
    tower: FrozenTower,
    images: np.ndarray,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    device: torch.device,
    batch_size: int,
    grid: int,
) -> dict[str, torch.Tensor]:
    """Pooled and pre-pool features of a uint8 (N, H, W, 3) array from one pass through the frozen tower.

    Returns float32 CPU tensors: "pooled" (N, D), the tower's attention pool output (= `encode_image`), and
    "prepool" (N, C * grid * grid), its input map average-pooled to grid x grid cells, flattened channel-major.
    """
    side = tower.image_size // tower.stride
    if not 1 <= grid <= side:
        raise ClipprobeError(f"counting.prepool_grid: must be between 1 and the map side {side} (got {grid})")
    if batch_size < 1:
        raise ClipprobeError(f"counting.batch_size: must be >= 1 (got {batch_size})")
    heads = {"pooled": tower.pool, "prepool": lambda fmap: F.adaptive_avg_pool2d(fmap, grid).flatten(1)}
    return run_tower(
        tower,
        images,
        heads,
        input_size=tower.image_size,
        mean=mean,
        std=std,
        device=device,
        batch_size=batch_size,
        desc="tower features",
    )
