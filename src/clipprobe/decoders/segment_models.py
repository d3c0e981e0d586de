"""Segmentation models that share TernausNet's UNet11 decoder: UNet11 itself and a decoder on frozen CLIP features.

UNet11 (Iglovikov & Shvets 2018, ternaus/TernausNet `models.py`): a VGG11 encoder whose five conv stages (64,
128, 256, 512, 512 channels at 1, 1/2, ..., 1/16 of the image) are the decoder's skips and whose pooled top
(512 at 1/32) is the decoder's centre input. Each decoder block is Conv3x3+ReLU -> ConvTranspose2d(k3, s2, p1,
output_padding 1)+ReLU (x2); after the last skip, Conv3x3+ReLU at full size and a 1x1 conv to the classes.

The CLIP decoder ("CLIP-UNet11", decoders-anchors.md §3) puts the frozen pre-pool map (C, g, g) where UNet11's
pooled conv5 sits: a 1x1 conv to 512 channels is the centre input, and each skip is the map bilinearly
upsampled to the skip's scale and 1x1-convolved to the skip's width. It has log2(image / g) upsampling blocks
(the finest ones of UNet11's five), so the mask comes out at the image size: RN50 at 224 px (g = 7) gets all
five. The pooled decoder is the same decoder fed the pooled embedding broadcast over the g x g grid.
Every width is divided by `width_div`; 1 gives TernausNet's (num_filters 32).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import open_clip
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import VGG11_Weights
from torchvision.models.vgg import cfgs, make_layers

from clipprobe.errors import ClipprobeError
from clipprobe.features.tower import FrozenTower
from clipprobe.models.clip import mean_std
from clipprobe.network import reachable

ENCODER_WIDTHS = (64, 128, 256, 512, 512)  # VGG11 conv1..conv5 outputs: UNet11's skips, finest first
NUM_FILTERS = 32  # TernausNet's decoder width unit
# Decoder blocks coarse to fine as (middle, out) in units of NUM_FILTERS: centre, dec5, dec4, dec3, dec2
_BLOCKS = ((16, 8), (16, 8), (16, 4), (8, 2), (4, 1))
_STAGE_ENDS = (2, 5, 10, 15, 20)  # vgg11().features[:2] is conv1+ReLU, [2:5] pool+conv2+ReLU, ...
WIDTH_DIVS = (1, 2, 4, 8, 16, 32)  # divisors of NUM_FILTERS: every width stays a whole number of channels
IMAGENET_WEIGHTS = VGG11_Weights.IMAGENET1K_V1
FEATURE_MODELS = ("clip", "pooled")  # decoders on cached frozen features; the rest are UNet11s on images


def conv_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.ReLU(inplace=True))


class DecoderBlock(nn.Sequential):
    """TernausNet's DecoderBlock: (B, in, s, s) -> (B, out, 2s, 2s)."""

    def __init__(self, in_channels: int, middle_channels: int, out_channels: int) -> None:
        super().__init__(
            conv_relu(in_channels, middle_channels),
            nn.ConvTranspose2d(middle_channels, out_channels, 3, stride=2, padding=1, output_padding=1),
            nn.ReLU(inplace=True),
        )


def skip_widths(n_up: int, width_div: int) -> tuple[int, ...]:
    """Channels of the skips the last `n_up` decoder blocks concatenate, coarse to fine."""
    return tuple(width // width_div for width in ENCODER_WIDTHS[::-1][-n_up:])


class UNetDecoder(nn.Module):
    """UNet11's decoder, its last `n_up` blocks: centre (B, c, s, s) + skips -> (B, classes, s 2^n_up, ...) logits.

    Skip j (coarse to fine) has `skip_widths(n_up, width_div)[j]` channels at side s * 2^(j + 1).
    """

    def __init__(self, n_up: int, centre_channels: int, n_classes: int, width_div: int) -> None:
        super().__init__()
        assert 1 <= n_up <= len(_BLOCKS), f"n_up must be 1..{len(_BLOCKS)} (got {n_up})"
        filters = NUM_FILTERS // width_div
        blocks, in_channels = [], centre_channels
        for (middle, out), skip in zip(_BLOCKS[-n_up:], skip_widths(n_up, width_div), strict=True):
            blocks.append(DecoderBlock(in_channels, middle * filters, out * filters))
            in_channels = out * filters + skip
        self.blocks = nn.ModuleList(blocks)
        self.last = conv_relu(in_channels, filters)  # TernausNet's dec1
        self.final = nn.Conv2d(filters, n_classes, 1)

    def forward(self, centre: torch.Tensor, skips: Sequence[torch.Tensor]) -> torch.Tensor:
        x = centre
        for block, skip in zip(self.blocks, skips, strict=True):
            x = torch.cat([block(x), skip], dim=1)
        return self.final(self.last(x))


# ---------------------------------------------------------------------------------------------- UNet11


class UNet11(nn.Module):
    """(B, 3, S, S) normalised images, S a multiple of 32 -> (B, n_classes, S, S) logits."""

    def __init__(self, n_classes: int, width_div: int = 1) -> None:
        super().__init__()
        widths = [v if v == "M" else v // width_div for v in cfgs["A"]]  # VGG11's layout, widths divided
        self.encoder = make_layers(widths)  # indices as torchvision's vgg11().features, so its weights load
        for module in self.encoder.modules():  # torchvision VGG's own init (what TernausNet's scratch gets)
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)
        self.decoder = UNetDecoder(len(_BLOCKS), ENCODER_WIDTHS[-1] // width_div, n_classes, width_div)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips, start = [], 0
        for end in _STAGE_ENDS:
            x = self.encoder[start:end](x)  # conv1 .. conv5 (after ReLU), at 1, 1/2, ..., 1/16
            skips.append(x)
            start = end
        centre = self.encoder[start](x)  # the last max-pool: 1/32
        return self.decoder(centre, skips[::-1])


def load_imagenet_encoder(unet: UNet11, cache_dir: str | Path) -> None:
    """Put torchvision's ImageNet VGG11 weights into `unet`'s encoder (full widths only).

    Goes through torchvision's weights API with `cache_dir` as the download cache; when the file is neither
    there nor downloadable, one ClipprobeError names the file and where to put it.
    """
    cache_dir = Path(cache_dir)
    url = IMAGENET_WEIGHTS.url
    path = cache_dir / Path(url).name
    if not path.is_file() and not reachable(url):
        raise ClipprobeError(
            f"segment.unet_encoders: 'imagenet' needs torchvision's VGG11 ImageNet weights, which are not in "
            f"{cache_dir}/ and cannot be downloaded (offline?); put {path.name} from {url} into {cache_dir}/"
        )
    try:
        state = IMAGENET_WEIGHTS.get_state_dict(
            model_dir=str(cache_dir), progress=False, check_hash=True, weights_only=True
        )
        features = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
        unet.encoder.load_state_dict(features)
    # A download fails in many ways (URLError, HTTP, hash) and so does a bad file (pickle, keys, shapes).
    except Exception as err:
        cause = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if path.is_file():
            raise ClipprobeError(
                f"{path}: not a loadable torchvision VGG11 checkpoint ({cause}); replace it with {url}"
            ) from None
        raise ClipprobeError(
            f"segment.unet_encoders: 'imagenet' needs torchvision's VGG11 ImageNet weights, which are not in "
            f"{cache_dir}/ and could not be downloaded ({cause}); put {path.name} from {url} into {cache_dir}/"
        ) from None


# torchvision's ImageNet statistics, which its VGG11 weights were trained with (VGG11_Weights' transforms)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ImageInput(nn.Module):
    """uint8 (B, H, W, 3) images -> `net` on (B, 3, H, W) images normalised with `mean`/`std` (in [0, 1] units)."""

    def __init__(self, net: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", 255 * torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", 255 * torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.permute(0, 3, 1, 2).float()  # (B, 3, H, W) in [0, 255]
        return self.net((x - self.mean) / self.std)


# ---------------------------------------------------------------------------------------------- CLIP decoder


def upsampling_blocks(out_size: int, grid: int) -> int:
    """How many x2 decoder blocks take a grid x grid map to out_size px: log2(out_size / grid), 1..5."""
    n_up = round(math.log2(out_size / grid)) if out_size > grid else 0
    if not 1 <= n_up <= len(_BLOCKS) or grid * 2**n_up != out_size:
        raise ClipprobeError(
            f"segment.tower_size: the decoder doubles the {grid}x{grid} pre-pool map (tower_size / 32) up to the "
            f"{out_size} px masks, so {out_size} / {grid} must be 2, 4, 8, 16 or 32"
        )
    return n_up


class FeatureDecoder(nn.Module):
    """Frozen CLIP features -> (B, n_classes, out_size, out_size) logits with UNet11's decoder blocks.

    Input: (B, C, g, g) pre-pool map, or (B, C) pooled embedding, which is broadcast over the g x g grid.
    """

    def __init__(self, in_channels: int, grid: int, out_size: int, n_classes: int, width_div: int) -> None:
        super().__init__()
        n_up = upsampling_blocks(out_size, grid)
        self.grid = grid
        centre = ENCODER_WIDTHS[-1] // width_div  # the width of UNet11's pooled conv5, which this replaces
        self.centre = nn.Conv2d(in_channels, centre, 1)
        self.skips = nn.ModuleList(nn.Conv2d(in_channels, w, 1) for w in skip_widths(n_up, width_div))
        self.decoder = UNetDecoder(n_up, centre, n_classes, width_div)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if features.ndim == 2:  # pooled embedding: the same vector at every cell (contiguous: faster convs)
            features = features[:, :, None, None].expand(-1, -1, self.grid, self.grid).contiguous()
        # Projecting first and then upsampling equals upsampling the map and then projecting (both are linear
        # and bilinear weights sum to 1), at a fraction of the cost for a 2048-channel map.
        skips = [
            F.interpolate(project(features), scale_factor=2 ** (j + 1), mode="bilinear", align_corners=False)
            for j, project in enumerate(self.skips)
        ]
        return self.decoder(self.centre(features), skips)


# ---------------------------------------------------------------------------------------------- registry


def model_names(unet_encoders: Sequence[str]) -> list[str]:
    """The compared models, in report order: both feature decoders, then one UNet11 per encoder init."""
    return [*FEATURE_MODELS, *(f"unet11_{encoder}" for encoder in unet_encoders)]


def check_widths(width_div: int, unet_encoders: Sequence[str]) -> None:
    if width_div not in WIDTH_DIVS:
        raise ClipprobeError(
            f"segment.unet_width_div: must divide UNet11's 32 filters: one of {WIDTH_DIVS} (got {width_div})"
        )
    if "imagenet" in unet_encoders and width_div != 1:
        raise ClipprobeError(
            f"segment.unet_width_div: the imagenet encoder has VGG11's full widths, so it needs 1 (got {width_div})"
        )


def build_model(
    name: str,
    *,
    map_channels: int,
    pooled_dim: int,
    grid: int,
    image_size: int,
    n_classes: int,
    width_div: int,
    mean: Sequence[float],
    std: Sequence[float],
    weights_dir: str | Path,
) -> nn.Module:
    """One of `model_names(...)`: `clip` reads (B, C, g, g) maps, `pooled` (B, D) embeddings, `unet11_*` uint8
    (B, S, S, 3) images. `weights_dir` is the cache of torchvision's ImageNet VGG11 weights."""
    if name in FEATURE_MODELS:
        channels = map_channels if name == "clip" else pooled_dim
        return FeatureDecoder(channels, grid, image_size, n_classes, width_div)
    if image_size % 32:
        raise ClipprobeError(
            f"segment: UNet11's five poolings need images whose side is a multiple of 32 (got {image_size} px)"
        )
    unet = UNet11(n_classes, width_div)
    if name == "unet11_imagenet":  # its encoder learnt on ImageNet-normalised images; scratch keeps CLIP's
        load_imagenet_encoder(unet, weights_dir)
        return ImageInput(unet, IMAGENET_MEAN, IMAGENET_STD)
    return ImageInput(unet, mean, std)


def build_models(
    names: Sequence[str],
    clip: open_clip.CLIP,
    *,
    tower_size: int,
    image_size: int,
    n_classes: int,
    width_div: int,
    weights_dir: str | Path,
    seed: int,
    device: torch.device,
) -> dict[str, nn.Module]:
    """Every model of `names` on `device` (see `build_model`), sized for `clip`'s frozen tower at `tower_size`.

    Each model's init comes from `seed` alone, so adding or reordering models changes none of the others.
    """
    tower = FrozenTower(clip)
    mean, std = mean_std(clip)
    models = {}
    for name in names:
        torch.manual_seed(seed)
        models[name] = build_model(
            name,
            map_channels=tower.out_channels,
            pooled_dim=tower.visual.output_dim,
            grid=tower_size // tower.stride,
            image_size=image_size,
            n_classes=n_classes,
            width_div=width_div,
            mean=mean,
            std=std,
            weights_dir=weights_dir,
        ).to(device, memory_format=torch.channels_last)  # faster convolutions, CPU and CUDA
    return models
