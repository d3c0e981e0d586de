"""Segmentation scores from a dataset-wide confusion matrix (as awesome-semantic-segmentation's score.py).

Pixels labelled IGNORE count nowhere. IoU of class c = TP / (TP + FP + FN); mIoU is the mean over the classes
present in the ground truth or the prediction (a class absent from both has no IoU); pixel accuracy is the
share of non-ignored pixels predicted right.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from clipprobe.data.store import IGNORE


def counts(index: torch.Tensor, valid: torch.Tensor, n_bins: int) -> torch.Tensor:
    """(n_bins,) int64 counts of the values of `index` (int64, in [0, n_bins) where `valid`) over the `valid`
    pixels. Branch-free (the others go to a spare bin): no boolean indexing, so no sync on a GPU."""
    slots = torch.where(valid, index, n_bins).flatten()
    spare = torch.zeros(n_bins + 1, dtype=torch.long, device=index.device)
    return spare.scatter_add_(0, slots, torch.ones_like(slots))[:n_bins]


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, n_classes: int) -> torch.Tensor:
    """(n_classes, n_classes) int64 counts, rows = ground truth, columns = prediction.

    `pred` and `target` are integer tensors of the same shape; target pixels equal to IGNORE are skipped.
    """
    index = n_classes * target.long() + pred.long()
    return counts(index, target != IGNORE, n_classes * n_classes).view(n_classes, n_classes)


def scores(confusion: torch.Tensor, class_names: Sequence[str]) -> dict:
    """{"miou", "pixel_acc", "iou": {class name: IoU}} as plain floats; `iou` holds the classes present."""
    cm = confusion.double().cpu()
    tp = cm.diag()
    union = cm.sum(dim=0) + cm.sum(dim=1) - tp
    present = union > 0
    iou = tp / union.clamp_min(1)
    return {
        "miou": float(iou[present].mean()) if present.any() else 0.0,
        "pixel_acc": float(tp.sum() / cm.sum().clamp_min(1)),
        "iou": {name: float(iou[c]) for c, name in enumerate(class_names) if present[c]},
    }


def majority_class(masks: torch.Tensor, n_classes: int) -> int:
    """The most frequent non-ignored pixel class of `masks` (ties: the lowest index)."""
    values = masks[masks != IGNORE].long()
    return int(torch.bincount(values, minlength=n_classes).argmax())


def majority_scores(train_masks: torch.Tensor, test_masks: torch.Tensor, class_names: Sequence[str]) -> dict:
    """Scores of predicting train's most frequent pixel class everywhere on test, plus that class's index."""
    n_classes = len(class_names)
    majority = majority_class(train_masks, n_classes)
    confusion = confusion_matrix(torch.full_like(test_masks, majority), test_masks, n_classes)
    return {**scores(confusion, class_names), "class_index": float(majority)}
