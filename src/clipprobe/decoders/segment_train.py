"""Train every segmentation model the same way and score it on the held-out split.

Every model gets the same recipe: cross-entropy weighted by inverse train-pixel frequency per class (so
painting the background everywhere is no minimum; IGNORE pixels skipped), Adam at `lr` with the plateau
rule's warm-up and cosine over the whole schedule, the same seeded batch order (`plateau`). The
weights kept are those of the epoch with the best val mIoU (ties: the earlier), and only they are scored on
test. The feature decoders train on the cached frozen-tower outputs, so the tower never runs (nor changes)
here.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from clipprobe import syncs
from clipprobe.decoders.batches import batch_rows
from clipprobe.decoders.seg_metrics import IGNORE, confusion_matrix, counts, majority_scores, scores
from clipprobe.decoders.segment_models import FEATURE_MODELS
from clipprobe.errors import ClipprobeError
from clipprobe.features.tower import Feed
from clipprobe.plateau import Plateau, PlateauRule
from clipprobe.progress import progress
from clipprobe.syncs import Rows


@dataclass(frozen=True)
class Recipe:
    rule: PlateauRule  # how long: to the plateau of val mIoU
    batch_size: int
    lr: float  # Adam
    seed: int  # model init and the batch order (the same for every model)


@dataclass
class Trained:
    model: nn.Module  # holding the weights of `best_epoch`
    best_epoch: int  # 1-based
    rising: bool  # its last fifth still improved: short of its plateau
    curves: list[dict[str, float]] = field(default_factory=list)  # per epoch: train_loss, val_loss, val_miou


def check_masks(masks: Mapping[str, torch.Tensor], n_classes: int, dataset: str) -> None:
    """Every mask value must be a class index or IGNORE."""
    for split, mask in masks.items():
        values = torch.unique(mask)
        bad = values[(values >= n_classes) & (values != IGNORE)].tolist()
        if bad:
            raise ClipprobeError(
                f"data/{dataset}/{split}/masks.npy: values {bad[:5]} are neither one of the {n_classes} "
                f"mask classes nor {IGNORE} (ignore); rerun the data stage"
            )


def _loss(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed cross-entropy over the non-ignored pixels, and how many there are (on the device: no sync)."""
    total = F.cross_entropy(logits, target.long(), ignore_index=IGNORE, reduction="sum")
    return total, (target != IGNORE).sum()


WEIGHT_ROWS = 256  # masks per chunk of the class counts (exact integers: the chunking changes no value)


def class_weights(masks: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Inverse pixel frequency per class over the train masks, 1 on average over pixels (a class absent
    from train counts as one pixel). Counted over chunks of WEIGHT_ROWS masks: the int64 indices of all the
    masks at once would take 25 bytes per pixel on the device beside the cache."""
    chunks = masks.split(WEIGHT_ROWS)
    pixels = sum(counts(chunk.long(), chunk < n_classes, n_classes) for chunk in chunks)
    pixels = pixels.double().clamp_min(1)
    return (pixels.sum() / (n_classes * pixels)).float()


def _batch(feed: Feed, rows: Rows) -> torch.Tensor:
    """One batch as the model reads it: a float map made channels_last per batch on a GPU (on the CPU the
    cache itself is, `model_inputs`); uint8 images as they are (`ImageInput` permutes them)."""
    x = feed(rows)
    return _channels_last(x) if x.is_cuda and x.is_floating_point() else x


@torch.no_grad()
def evaluate(
    model: nn.Module, inputs: torch.Tensor, masks: torch.Tensor, n_classes: int, batch_size: int
) -> tuple[torch.Tensor, float]:
    """Confusion matrix (on the host) over the whole split and the mean per-pixel cross-entropy; the sums
    stay on the device until one declared sync at the end."""
    model.eval()
    feed, device = Feed(inputs, masks.device), masks.device
    confusion = torch.zeros(n_classes, n_classes, dtype=torch.long, device=device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    pixels = torch.zeros((), dtype=torch.long, device=device)
    for rows in batch_rows(len(inputs), batch_size, device=device):
        logits, target = model(_batch(feed, rows)), masks[rows.on_device]
        total, n = _loss(logits, target)
        loss_sum, pixels = loss_sum + total.double(), pixels + n
        confusion += confusion_matrix(logits.argmax(dim=1), target, n_classes)
    confusion, loss_sum, pixels = syncs.host(confusion, loss_sum, pixels, what="segment: evaluation")
    return confusion, loss_sum.item() / max(pixels.item(), 1)


@torch.no_grad()
def predict(model: nn.Module, inputs: torch.Tensor, batch_size: int, device: torch.device) -> torch.Tensor:
    """(N, H, W) uint8 predicted classes, on `device`."""
    model.eval()
    feed = Feed(inputs, device)
    parts = [
        model(_batch(feed, rows)).argmax(dim=1) for rows in batch_rows(len(inputs), batch_size, device=device)
    ]
    return torch.cat(parts).to(torch.uint8)


def train(
    model: nn.Module,
    inputs: Mapping[str, torch.Tensor],
    masks: Mapping[str, torch.Tensor],
    class_names: Sequence[str],
    recipe: Recipe,
    desc: str = "segment",
) -> Trained:
    """Fit `model` on inputs["train"] -> masks["train"] over the whole schedule, keeping the best val-mIoU epoch.

    `inputs[split]` is (N, ...) whatever the model reads, as stored (`model_inputs`), and `masks[split]`
    (N, H, W) uint8 on the model's device. Returns the model with the kept weights, that epoch and the
    per-epoch curves. Two declared syncs per epoch (`syncs.host`): the train loss, the val evaluation.
    """
    optimiser = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=recipe.lr)
    order = torch.Generator().manual_seed(recipe.seed)
    x, y = inputs["train"], masks["train"]
    device = y.device
    feed = Feed(x, device)
    weights = class_weights(y, len(class_names)).to(device)
    plateau = Plateau(recipe.rule, True, recipe.lr, math.ceil(len(x) / recipe.batch_size))
    curves, step = [], 0
    bar = progress(total=recipe.rule.max_epochs, desc=f"{desc} (epochs; the best val epoch is kept)")
    for epoch in range(1, recipe.rule.max_epochs + 1):
        model.train()
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)  # no per-step sync
        for rows in batch_rows(len(x), recipe.batch_size, order, device):
            target = y[rows.on_device].long()
            loss = F.cross_entropy(model(_batch(feed, rows)), target, weight=weights, ignore_index=IGNORE)
            plateau.set_lr(optimiser, step)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            loss_sum += loss.detach().double() * len(rows.host)
            step += 1
        (loss_sum,) = syncs.host(loss_sum, what="segment: train loss")
        train_loss = loss_sum.item() / len(x)
        if not math.isfinite(train_loss):
            raise ClipprobeError(
                f"segment.lr: training of {desc} diverged (non-finite loss in epoch {epoch}); lower it (got {recipe.lr:g})"
            )
        confusion, val_loss = evaluate(
            model, inputs["val"], masks["val"], len(class_names), recipe.batch_size
        )
        val_miou = scores(confusion, class_names)["miou"]
        curves.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "val_miou": val_miou})
        bar.set_postfix_str(f"val mIoU {val_miou:.3f}")
        bar.update()
        plateau.end_epoch(val_miou, model)
    bar.close()
    plateau.restore_best(model)
    return Trained(model, plateau.best_epoch, plateau.rising, curves)


@dataclass
class Comparison:
    metrics: dict  # metrics/segment.json
    histories: dict[str, list[dict]]  # per model: one row per epoch (train_loss, val_loss, val_miou)
    overlays: dict[str, np.ndarray]  # first val images, masks, `pred_<model>` predictions; feature shapes
    seconds: dict[str, float]  # wall-clock training + test time per model (printed, never written)


def model_inputs(
    name: str,
    features: Mapping[str, Mapping[str, torch.Tensor]],
    images: Mapping[str, torch.Tensor],
    device: torch.device,
) -> dict[str, torch.Tensor]:
    """What model `name` reads per split: its cached features ("clip", "pooled") or the uint8 images.

    On a GPU the cache stays as `map_storage` put it (bf16, on the device or in host memory) and each batch
    becomes float32 on the device (`Feed`); on the CPU it is float32 already and made channels_last once."""
    if name not in FEATURE_MODELS:
        return dict(images)  # uint8 (N, H, W, 3): ImageInput's permute gives the models channels_last batches
    if device.type == "cuda":
        return {split: kinds[name] for split, kinds in features.items()}
    return {split: _channels_last(kinds[name].float()) for split, kinds in features.items()}


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if x.ndim == 4 else x


def compare(
    models: Mapping[str, nn.Module],
    features: Mapping[str, Mapping[str, torch.Tensor]],
    images: Mapping[str, torch.Tensor],
    masks: Mapping[str, torch.Tensor],
    class_names: Sequence[str],
    recipe: Recipe,
    n_overlays: int,
) -> Comparison:
    """Train and test every model, plus the majority-class baseline.

    `features[split]` holds the cached "clip" and "pooled" features (from `frozen_features`); `images[split]`
    (N, H, W, 3) uint8 and `masks[split]` (N, H, W) uint8 live on the models' device. The first `n_overlays`
    val images, their masks and every model's predictions go into the overlays (numpy arrays).
    """
    n_classes = len(class_names)
    metrics: dict = {}
    histories = {}
    overlays = {  # numpy arrays for runtime.save_arrays
        "images": images["val"][:n_overlays].cpu().numpy(),
        "masks": masks["val"][:n_overlays].cpu().numpy(),
        "class_names": np.array(class_names),
        "map_shape": np.array(features["val"]["clip"].shape[1:]),  # (C, g, g) of the pre-pool map
        "pooled_dim": np.array(features["val"]["pooled"].shape[1]),
    }
    seconds = {}
    for name, model in models.items():
        start = time.perf_counter()
        feeds = model_inputs(name, features, images, masks["train"].device)
        trained = train(model, feeds, masks, class_names, recipe, desc=name)
        confusion, test_loss = evaluate(
            trained.model, feeds["test"], masks["test"], n_classes, recipe.batch_size
        )
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        metrics[name] = {
            **scores(confusion, class_names),
            "test_loss": test_loss,
            "best_epoch": float(trained.best_epoch),
            "epochs": float(len(trained.curves)),
            "rising": float(trained.rising),
            "trainable_params": float(trainable),
        }
        histories[name] = trained.curves
        overlays[f"pred_{name}"] = (
            predict(trained.model, feeds["val"][:n_overlays], recipe.batch_size, masks["val"].device)
            .cpu()
            .numpy()
        )
        seconds[name] = time.perf_counter() - start
    metrics["majority"] = majority_scores(masks["train"], masks["test"], class_names)
    return Comparison(metrics, histories, overlays, seconds)
