"""Classification on cached frozen features: zero-shot (one prompt and the template ensemble) and the full
linear probe, scored on the test split (nothing is selected on it)."""

from __future__ import annotations

import torch

from clipprobe.params import ProbeParams
from clipprobe.probes import zeroshot
from clipprobe.probes.logreg import linear_probe

FEATURE_KEYS = {"raw": "image", "normalized": "image_norm", "pre_projection": "image_pre"}
SPLITS = ("train", "val", "test")


def evaluate(
    splits: dict[str, dict[str, torch.Tensor]],
    text: dict,
    ensemble: str,
    cfg: ProbeParams,
    device: torch.device,
) -> dict:
    """Zero-shot and linear-probe accuracies.

    Parameters
    ----------
    splits : the embed stage's feature dicts per split ("image", "image_norm", "image_pre", "labels")
    text : the embed stage's text.pt ("class_names", "logit_scale", "text": {template set: (T, C, D)})
    ensemble : the template set of the zero-shot ensemble

    Returns {"metrics": metrics/probe.json, "c_search": rows (C, val_acc) of the C search, empty when fixed}.
    """
    test = splits["test"]
    n_classes = len(text["class_names"])
    zs = {
        name: zeroshot.evaluate(test["image"], text["text"][key], test["labels"], text["logit_scale"])
        for name, key in (("single", "single"), ("ensemble", ensemble))
    }
    key = FEATURE_KEYS[cfg.features]
    lp = linear_probe(
        *[(splits[s][key], splits[s]["labels"]) for s in SPLITS],
        C=cfg.C,
        device=device,
        max_iter=cfg.max_iter,
    )
    metrics = {
        "n_classes": float(n_classes),
        "chance": 1.0 / n_classes,
        "zeroshot": {name: {"acc": r["acc1"], "acc5": r["acc5"]} for name, r in zs.items()},
        "linear_probe": {"acc": lp["acc1"], "C": lp["C"]},
    }
    search = [{"C": float(c), "val_acc": acc} for c, acc in lp.get("search", {}).items()]
    return {"metrics": metrics, "c_search": search}
