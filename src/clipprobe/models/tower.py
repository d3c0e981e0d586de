"""The frozen ResNet tower of a CLIP without its attention pool: the spatial map the pool summarises.

CLIP's ModifiedResNet ends in an attention pool that turns the layer4 map (B, C, S/32, S/32) into one vector.
The counting probes, the VQ-VAE and the segmentation decoder read the map itself, so the tower here stops
before the pool. It is frozen for good: no parameter takes gradients and BatchNorm stays in eval mode (running
statistics untouched) even when a module holding it is put into training mode. ViT towers pool with a class
token, not an attention pool over a conv map, so they have no such map: asking for one is an error.
"""

from __future__ import annotations

import open_clip
import torch
from open_clip.modified_resnet import ModifiedResNet
from torch import nn

from clipprobe.errors import ClipprobeError

LAYERS = (1, 2, 3, 4)  # residual stages whose output map can be read; 4 is the attention pool's input


def has_attnpool_map(arch: str) -> bool:
    """Whether open_clip builds `arch` with a ModifiedResNet tower (its rule: vision `layers` is a list)."""
    cfg = open_clip.get_model_config(arch) or {}
    vision = cfg.get("vision_cfg", {})
    return isinstance(vision.get("layers"), (list, tuple)) and not vision.get("timm_model_name")


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
