"""open_clip's eval preprocessing on uint8 image batches, on whatever device the batch lives.

`preprocess_uint8` reproduces open_clip's eval transform (PIL bicubic resize of the shortest side, centre
crop, normalise) to within one grey level: like PIL it resamples the width, then the height, and rounds to
uint8 after each pass; torch's antialiased bicubic uses PIL's kernel (a = -0.5). Shared by the embedding,
the pretraining and the frozen-tower passes, so every model sees its images prepared the same way.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from clipprobe import syncs


def preprocess_uint8(
    images: torch.Tensor, image_size: int, mean: Sequence[float], std: Sequence[float]
) -> torch.Tensor:
    """open_clip's eval preprocessing on a uint8 batch, on whatever device the batch lives.

    Parameters
    ----------
    images : (B, H, W, 3) uint8 tensor
    image_size : side S of the square model input; the shortest side is resized to S, then centre-cropped
    mean, std : per-channel normalisation for pixels in [0, 1]

    Returns
    -------
    (B, 3, S, S) float32 tensor
    """
    x = images.permute(0, 3, 1, 2).float()  # (B, 3, H, W) in [0, 255]
    x = _center_crop(_resize_shortest(x, image_size), image_size)
    mean_255, std_255 = _scaled(tuple(mean), tuple(std), x.device, x.dtype)
    return (x - mean_255) / std_255


@functools.lru_cache(maxsize=16)
def _scaled(
    mean: tuple[float, ...], std: tuple[float, ...], device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """(1, 3, 1, 1) mean and std on the 0-255 scale, built once per device and dtype, on the host and moved
    without waiting (`syncs.to_device`): built on a GPU from Python floats, even once, each would be a copy
    from pageable host memory, a sync that drains the queue. Ordinary tensors even when first asked for
    under inference mode, so training may use them too."""
    with torch.inference_mode(False):
        mean_255 = torch.tensor(mean, dtype=dtype).view(1, 3, 1, 1) * 255
        std_255 = torch.tensor(std, dtype=dtype).view(1, 3, 1, 1) * 255
        return syncs.to_device(mean_255, device), syncs.to_device(std_255, device)


def _resize_shortest(x: torch.Tensor, size: int) -> torch.Tensor:
    """torchvision Resize(size) on PIL: shortest side to `size`, long side int(size * long / short)."""
    height, width = x.shape[-2:]
    new_long = int(size * max(height, width) / min(height, width))
    out_h, out_w = (size, new_long) if height <= width else (new_long, size)
    if out_w != width:  # PIL's horizontal pass comes first
        x = _resample(x, (height, out_w))
    if out_h != height:
        x = _resample(x, (out_h, out_w))
    return x


def _resample(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    x = F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True)
    return x.clamp_(0, 255).add_(0.5).floor_()  # PIL stores each pass as uint8, rounding halves up


def _center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    height, width = x.shape[-2:]
    top, left = round((height - size) / 2), round((width - size) / 2)  # torchvision's offsets
    return x[..., top : top + size, left : left + size]


def model_input(
    images: torch.Tensor, image_size: int, mean: Sequence[float], std: Sequence[float], channels_last: bool
) -> torch.Tensor:
    """`preprocess_uint8`, in channels_last memory for a ResNet tower (faster convolutions, CPU and CUDA)."""
    x = preprocess_uint8(images, image_size, mean, std)
    return x.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA (the GPU fast path); float32 on the CPU (the deterministic path)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
