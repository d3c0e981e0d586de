"""Zero-shot classification: class weights from prompt-template text embeddings, scaled cosine logits.

The classifier is a plain linear map on L2-normalised image features: weight = logit_scale * W_zs, bias 0.
`zeroshot_logits` is literally ``LinearModel.from_zeroshot(weights, logit_scale).logits(F.normalize(image))``,
so a linear head initialised that way and fed ``F.normalize(image)`` reproduces zero-shot accuracy exactly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from clipprobe.errors import ClipprobeError
from clipprobe.probes.linear import LinearModel


def zeroshot_weights(text: torch.Tensor) -> torch.Tensor:
    """Template-ensemble class weights (CLIP's prompt-engineering notebook, CLIP_benchmark).

    Parameters
    ----------
    text: (T, C, D) raw text embeddings, one per template and class; T = 1 is the single-prompt classifier.

    Returns
    -------
    (C, D) unit-norm class weights: each template embedding L2-normalised, averaged over T, renormalised.
    """
    if text.ndim != 3:
        raise ClipprobeError(
            f"text: a (templates, classes, dim) tensor is needed (got shape {tuple(text.shape)})"
        )
    return F.normalize(F.normalize(text, dim=-1).mean(dim=0), dim=-1)


def zeroshot_logits(image: torch.Tensor, weights: torch.Tensor, logit_scale: float = 100.0) -> torch.Tensor:
    """(N, D) image features (raw or normalised), (C, D) unit-norm weights -> (N, C) logits.

    logits = logit_scale * normalise(image) @ weights.T, CLIP's scaled cosine similarity.
    """
    if image.ndim != 2 or weights.ndim != 2 or image.shape[1] != weights.shape[1]:
        raise ClipprobeError(
            f"image/weights: (N, D) and (C, D) with the same D are needed "
            f"(got {tuple(image.shape)} and {tuple(weights.shape)})"
        )
    head = LinearModel.from_zeroshot(weights.to(image), logit_scale)
    return head.logits(F.normalize(image, dim=-1))


def accuracy(logits_or_pred: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy in [0, 1] from (N, C) logits or (N,) predicted class indices."""
    pred = logits_or_pred.argmax(dim=-1) if logits_or_pred.ndim == 2 else logits_or_pred
    if pred.shape != labels.shape or len(labels) == 0:
        raise ClipprobeError(
            f"labels: one label per prediction is needed (got {tuple(pred.shape)} and {tuple(labels.shape)})"
        )
    return (pred.cpu() == labels.cpu()).double().mean().item()


def top_k_accuracy(logits: torch.Tensor, labels: torch.Tensor, k: int = 5) -> float:
    """Fraction of rows whose label is among the k largest logits (k is capped at the number of classes)."""
    topk = logits.topk(min(k, logits.shape[1]), dim=-1).indices.cpu()  # (N, k)
    return (topk == labels.cpu()[:, None]).any(dim=-1).double().mean().item()


def mean_per_class_recall(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Recall averaged over the classes present in `labels` (CLIP_benchmark's `mean_per_class_recall`)."""
    hits = (logits.argmax(dim=-1).cpu() == labels.cpu()).double()
    classes = labels.cpu().unique()
    return torch.stack([hits[labels.cpu() == c].mean() for c in classes]).mean().item()


def scores(logits: torch.Tensor, labels: torch.Tensor) -> dict:
    """CLIP_benchmark's classification metrics of (N, C) logits, as floats, and "hits": (N,) bool top-1."""
    return {
        "acc1": accuracy(logits, labels),
        "acc5": top_k_accuracy(logits, labels, 5),
        "mean_per_class_recall": mean_per_class_recall(logits, labels),
        "hits": (logits.argmax(dim=-1).cpu() == labels.cpu()).numpy(),
    }


def evaluate(
    image: torch.Tensor, text: torch.Tensor, labels: torch.Tensor, logit_scale: float = 100.0
) -> dict:
    """`scores` of the zero-shot classifier of the template ensemble in `text` (T, C, D) on (N, D) features."""
    return scores(zeroshot_logits(image, zeroshot_weights(text), logit_scale), labels)
