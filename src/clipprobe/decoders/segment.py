"""The segmentation experiment: UNet11's decoder on the frozen pre-pool CLIP map vs on the pooled embedding
vs UNet11 itself, all trained with one recipe (`segment_train`) and scored on the test split."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import open_clip
import torch

from clipprobe.data.store import Split
from clipprobe.decoders.curves import per_epoch
from clipprobe.decoders.segment_models import build_models, check_widths, model_names
from clipprobe.decoders.segment_train import Recipe, check_masks, compare
from clipprobe.experiment import Result, flatten
from clipprobe.features.tower import TRAIN_BYTES_PER_PIXEL, frozen_features, training_state_bytes
from clipprobe.params import PlateauParams, SegmentParams
from clipprobe.runtime import fast_cuda_math

_logger = logging.getLogger(__name__)


@dataclass
class Inputs:
    """What the segment stage passes: the CLIP whose tower is read, the first images of each split (with
    masks) and the mask classes."""

    clip: open_clip.CLIP
    splits: Mapping[str, Split]  # train, val, test with masks
    class_names: list[str]  # the mask classes of data/<dataset>/meta.json
    dataset: str  # params.yaml data.segment (named by errors)
    tower_size: int  # params.yaml tower.size
    weights_dir: Path  # torchvision's cache of ImageNet VGG11 weights
    seed: int  # every model's init and the batch order
    plateau: PlateauParams  # params.yaml plateau: when a model has learnt what it can
    device: torch.device


def evaluate(inputs: Inputs, cfg: SegmentParams) -> Result:
    """figures: per model `miou`, `pixel_acc`, `iou.<class>`, `test_loss`, `best_epoch`, `epochs`, `rising`,
    `trainable_params`,
    and the majority baseline; curves: `curves` (per model and epoch); arrays: `overlays` (the mask-overlay figure).
    Call `torch.set_flush_denormal(True)` first, before any parallel region (the segment stage does): barely
    trained decoders produce denormal gradients, which slow CPU convolutions. On a GPU every model runs
    under `runtime.fast_cuda_math` alike."""
    with fast_cuda_math(inputs.device):
        return _compare(inputs, cfg)


def _compare(inputs: Inputs, cfg: SegmentParams) -> Result:
    splits, device = inputs.splits, inputs.device
    check_widths(cfg.unet_width_div, cfg.unet_encoders)
    images = {split: torch.tensor(data.images, device=device) for split, data in splits.items()}
    masks = {split: torch.tensor(data.masks, device=device) for split, data in splits.items()}
    check_masks(masks, len(inputs.class_names), inputs.dataset)
    models = build_models(  # before the features: missing ImageNet weights fail fast
        model_names(cfg.unet_encoders),
        inputs.clip,
        tower_size=inputs.tower_size,
        image_size=images["train"].shape[1],
        n_classes=len(inputs.class_names),
        width_div=cfg.unet_width_div,
        weights_dir=inputs.weights_dir,
        seed=inputs.seed,
        device=device,
    )
    start = time.perf_counter()
    features = frozen_features(
        inputs.clip,
        splits,
        tower_size=inputs.tower_size,
        towers=("clip",),
        seed=inputs.seed,
        device=device,
        batch_size=cfg.batch_size,
        # a step's activations (see the constant) and the largest model's gradients, Adam state, best copy
        train_bytes=cfg.batch_size * TRAIN_BYTES_PER_PIXEL * masks["train"][0].numel()
        + max(training_state_bytes(model) for model in models.values()),
    )
    _logger.info(
        "frozen features in %.1f s: %s map",
        time.perf_counter() - start,
        tuple(features["train"]["clip"].shape[1:]),
    )
    recipe = Recipe(inputs.plateau.rule(cfg.max_epochs), cfg.batch_size, cfg.lr, inputs.seed)
    result = compare(models, features, images, masks, inputs.class_names, recipe, cfg.overlays)
    for name, scores in result.metrics.items():
        took = f" ({result.seconds[name]:.1f} s)" if name in result.seconds else ""
        _logger.info("%s: test mIoU %.3f, pixel acc %.3f%s", name, scores["miou"], scores["pixel_acc"], took)
    return Result(
        flatten(result.metrics),
        curves={"curves": per_epoch(result.histories)},
        arrays={"overlays": result.overlays},
    )
