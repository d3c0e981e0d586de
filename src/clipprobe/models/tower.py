"""The frozen ResNet tower of a CLIP without its attention pool: the spatial map the pool summarises.

CLIP's ModifiedResNet ends in an attention pool that turns the layer4 map (B, C, S/32, S/32) into one vector.
The counting probes, the VQ-VAE and the segmentation decoder read the map itself, so the tower here stops
before the pool. It is frozen for good: no parameter takes gradients and BatchNorm stays in eval mode (running
statistics untouched) even when a module holding it is put into training mode. ViT towers pool with a class
token, not an attention pool over a conv map, so they have no such map: asking for one is an error.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import open_clip
import torch
from open_clip.modified_resnet import ModifiedResNet
from torch import nn

from clipprobe import paths
from clipprobe.errors import ClipprobeError
from clipprobe.models.clip import Tokenizer, create_clip, load_clip, mean_std
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


class TowerChoice(Protocol):
    """params.yaml's `tower` group: arch (None = the clip stage's model) and its pretrained weights."""

    arch: str | None
    pretrained: str | None


def tower_clip(
    choice: TowerChoice, *, clip_dir: str | Path, downloads: str | Path, device: torch.device
) -> tuple[open_clip.CLIP, Tokenizer]:
    """The CLIP (and tokenizer) whose ResNet tower counting and the decoders read: `choice.arch` with its
    `pretrained` weights (fetched into `downloads`), or, when arch is None, the clip stage's model in `clip_dir`."""
    if choice.arch is None:
        model, tokenizer, info = load_clip(clip_dir, device=device)
        if not isinstance(model.visual, ModifiedResNet):
            raise ClipprobeError(
                f"tower.arch: null reads the clip stage's {info['arch']}, which has no attention-pool map; "
                "set tower.arch to a ResNet CLIP (RN50) and tower.pretrained to its tag"
            )
        return model, tokenizer
    cache = paths.open_clip_cache(downloads)
    model, tokenizer = create_clip(choice.arch, choice.pretrained, cache_dir=cache, key="tower")
    return model.to(device), tokenizer


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
        for start in range(0, n, batch_size):
            batch = torch.from_numpy(np.array(calibration[start : min(start + batch_size, n)])).to(device)
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
    RN50 its 7 x 7 map). Like `features.embed_images`: channels_last, bf16 autocast on CUDA. Returns one
    tensor per head, rows in image order, written into one buffer per head (no concatenation copy) of
    `storage`'s (device, dtype): by default float32 on the CPU (`decoders.inputs.map_storage`).
    """
    tower = tower.to(device, memory_format=torch.channels_last)
    where, dtype = storage or (torch.device("cpu"), torch.float32)
    out: dict[str, torch.Tensor] = {}
    starts = range(0, len(images), batch_size)
    for start in progress(starts, desc=desc):
        batch = torch.from_numpy(np.array(images[start : start + batch_size])).to(device)  # copy: memmaps
        with torch.no_grad(), autocast(device):
            fmap = tower(model_input(batch, input_size, mean, std, channels_last=True))
            for name, head in heads.items():
                value = head(fmap)
                if name not in out:
                    pinned = where.type == "cpu" and device.type == "cuda"  # non-blocking copies back
                    shape = (len(images), *value.shape[1:])
                    out[name] = torch.empty(shape, dtype=dtype, device=where, pin_memory=pinned)
                out[name][start : start + len(value)].copy_(value, non_blocking=True)
    if device.type == "cuda":
        torch.cuda.synchronize(device)  # the non-blocking copies have landed
    return out
