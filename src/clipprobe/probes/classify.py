"""Classification on cached frozen features: zero-shot (one prompt and the template ensemble) and the full
linear probe, scored on the test split (nothing is selected on it)."""

from __future__ import annotations

import torch

from clipprobe import readouts
from clipprobe.params import ProbeParams
from clipprobe.probes import zeroshot
from clipprobe.probes.logreg import linear_probe

FEATURE_KEYS = {"raw": "image", "normalized": "image_norm", "pre_projection": "image_pre"}
SPLITS = ("train", "val", "test")
# zero-shot with the seed report's exact prompt (raw names, no full stop), the CLIP repo's single prompt
# (cleaned names) and the template ensemble; then the linear probe
READOUTS = readouts.PROBE


def evaluate(
    splits: dict[str, dict[str, torch.Tensor]],
    text: dict,
    ensemble: str,
    cfg: ProbeParams,
    device: torch.device,
) -> dict:
    """Zero-shot and linear-probe scores.

    Parameters
    ----------
    splits : the embed stage's feature dicts per split ("image", "image_norm", "image_pre", "labels")
    text : the embed stage's text.pt ("class_names", "logit_scale", "text": {template set: (T, C, D)})
    ensemble : the template set of the zero-shot ensemble

    Returns {"metrics": {readout: acc1, acc5, mean_per_class_recall (+ C)} plus n_classes and chance,
    "hits": {readout: (N,) bool test hits}, "c_search": rows (C, val_acc) of the C search, empty when fixed}.
    """
    test = splits["test"]
    n_classes = len(text["class_names"])
    results = {
        f"zeroshot_{name}": zeroshot.evaluate(
            test["image"], text["text"][key], test["labels"], text["logit_scale"]
        )
        for name, key in (("report", "report"), ("single", "single"), ("ensemble", ensemble))
    }
    key = FEATURE_KEYS[cfg.features]
    model, lp = linear_probe(
        *[(splits[s][key], splits[s]["labels"]) for s in SPLITS],
        C=cfg.C,
        device=device,
        max_iter=cfg.max_iter,
    )
    results["linear_probe"] = {
        **zeroshot.scores(model.logits(test[key].to(device)), test["labels"]),
        "C": lp["C"],
    }
    metrics = {"n_classes": float(n_classes), "chance": 1.0 / n_classes}
    metrics.update({name: {k: v for k, v in r.items() if k != "hits"} for name, r in results.items()})
    search = [{"C": float(c), "val_acc": acc} for c, acc in lp.get("search", {}).items()]
    return {"metrics": metrics, "hits": {name: r["hits"] for name, r in results.items()}, "c_search": search}
