"""The segmentation experiment: UNet11's decoder on the frozen pre-pool CLIP map vs on the pooled embedding
vs UNet11 itself, all trained with one recipe (`segment_train`) and scored on the test split."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path

import open_clip
import torch

from clipprobe.data.store import Split
from clipprobe.decoders.inputs import frozen_features
from clipprobe.decoders.segment_models import build_models, check_widths, model_names
from clipprobe.decoders.segment_train import Recipe, check_masks, compare, curve_columns
from clipprobe.params import SegmentParams


def evaluate(
    clip: open_clip.CLIP,
    splits: Mapping[str, Split],
    class_names: list[str],
    cfg: SegmentParams,
    *,
    dataset: str,
    tower_size: int,
    weights_dir: str | Path,
    seed: int,
    device: torch.device,
) -> dict:
    """Returns {"metrics": metrics/segment.json, "curves": (rows, columns) per epoch, "overlays": the arrays of
    the mask-overlay figure}. `weights_dir` caches torchvision's ImageNet VGG11 weights. Call
    `torch.set_flush_denormal(True)` first, before any parallel region (the segment stage does): barely trained
    decoders produce denormal gradients, which slow CPU convolutions."""
    check_widths(cfg.unet_width_div, cfg.unet_encoders)
    images = {split: torch.tensor(data.images, device=device) for split, data in splits.items()}
    masks = {split: torch.tensor(data.masks, device=device) for split, data in splits.items()}
    check_masks(masks, len(class_names), dataset)
    models = build_models(  # before the features: missing ImageNet weights fail fast
        model_names(cfg.unet_encoders),
        clip,
        tower_size=tower_size,
        image_size=images["train"].shape[1],
        n_classes=len(class_names),
        width_div=cfg.unet_width_div,
        weights_dir=weights_dir,
        seed=seed,
        device=device,
    )
    start = time.perf_counter()
    features = frozen_features(
        clip,
        splits,
        tower_size=tower_size,
        towers=("clip",),
        seed=seed,
        device=device,
        batch_size=cfg.batch_size,
    )
    print(
        f"frozen features in {time.perf_counter() - start:.1f} s: {features['train']['clip'].shape[1:]} map"
    )
    recipe = Recipe(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, seed=seed)
    result = compare(models, features, images, masks, class_names, recipe, cfg.overlays)
    for name, scores in result.metrics.items():
        took = f" ({result.seconds[name]:.1f} s)" if name in result.seconds else ""
        print(f"{name}: test mIoU {scores['miou']:.3f}, pixel acc {scores['pixel_acc']:.3f}{took}")
    return {
        "metrics": result.metrics,
        "curves": (result.curves, curve_columns(list(models))),
        "overlays": result.overlays,
    }
