"""Augmented views of the train split, for the few-shot methods whose official code trains or builds its cache
on them (Tip-Adapter, GDA, CLAP, LP++, ProLIP).

A view is a random resized crop (area 0.5-1 of the image, aspect ratio 3/4-4/3, bicubic, back to the image's
own size) then a horizontal flip with probability 1/2: the train transform of Tip-Adapter and GDA
(gaopengcuhk/Tip-Adapter main.py, mrflogs/ICLR24 main_few_shots.py). Each view of the whole split is embedded
like the clean images (`embed.embed_images`); the crop boxes are drawn from the training seed, so a seed's
views are the same bytes on every machine.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from clipprobe.cpu.half import to_half
from clipprobe.features.embed import embed_images
from clipprobe.progress import progress

CROP_SCALE = (0.5, 1.0)  # share of the image's area a crop covers
CROP_RATIO = (3 / 4, 4 / 3)  # crop width / height
_ATTEMPTS = 10  # torchvision's RandomResizedCrop.get_params tries 10 boxes before its central fallback
_VIEW_STREAM = 3  # random-stream offset of the views (support draws use 0 and 1, the methods 2)


def crop_boxes(n: int, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 4) int boxes (top, left, h, w): torchvision's RandomResizedCrop.get_params for n images at once."""
    area = height * width * rng.uniform(*CROP_SCALE, size=(n, _ATTEMPTS))
    ratio = np.exp(rng.uniform(math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1]), size=(n, _ATTEMPTS)))
    w = np.rint(np.sqrt(area * ratio)).astype(np.int64)
    h = np.rint(np.sqrt(area / ratio)).astype(np.int64)
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.argmax(axis=1)  # the first box that fits
    h, w = h[np.arange(n), first], w[np.arange(n), first]
    h, w = np.where(fits.any(axis=1), h, height), np.where(fits.any(axis=1), w, width)  # fallback: the image
    top = np.floor(rng.random(n) * (height - h + 1)).astype(np.int64)
    left = np.floor(rng.random(n) * (width - w + 1)).astype(np.int64)
    return np.stack([top, left, h, w], axis=1)


def augment(images: np.ndarray, boxes: np.ndarray, flips: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) uint8 images cropped to `boxes`, resized back to H x W (bicubic) and flipped where `flips`."""
    height, width = images.shape[1:3]
    out = np.empty_like(images)
    for i, (top, left, h, w) in enumerate(boxes):
        crop = torch.from_numpy(np.array(images[i, top : top + h, left : left + w]))  # a writable copy
        crop = crop.permute(2, 0, 1)[None].float()  # (1, 3, h, w)
        resized = F.interpolate(crop, size=(height, width), mode="bicubic", align_corners=False)
        if flips[i]:
            resized = resized.flip(-1)
        out[i] = resized[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()
    return out


def embed_views(
    model: torch.nn.Module,
    images: np.ndarray,
    views: int,
    seed: int,
    *,
    device: torch.device,
    batch_size: int,
    pre_projection: bool,
) -> dict[str, torch.Tensor]:
    """{"image": (V, N, D)} raw features of `views` augmented views of every image (and "image_pre" (V, N, P)),
    float16: a cache of augmented features, as Tip-Adapter keeps its own, at half the disk of float32 (rounded
    by `cpu.half`, the same bits on every CPU)."""
    rng = np.random.default_rng([seed, _VIEW_STREAM])
    height, width = images.shape[1:3]
    chunks: dict[str, list[torch.Tensor]] = {}
    for _ in progress(range(views), desc="augmented views"):
        boxes = crop_boxes(len(images), height, width, rng)
        flips = rng.random(len(images)) < 0.5
        features = embed_images(
            model,
            augment(images, boxes, flips),
            device=device,
            batch_size=batch_size,
            pre_projection=pre_projection,
        )
        for key in ("image", "image_pre"):
            if key in features:
                chunks.setdefault(key, []).append(to_half(features[key]))
    return {key: torch.stack(values) for key, values in chunks.items()}
