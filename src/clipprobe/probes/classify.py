"""Classification on cached frozen features: zero-shot (one prompt and the template ensemble) and the full
linear probe, scored on the test split (nothing is selected on it)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from clipprobe import readouts
from clipprobe.experiment import Result, Table, flatten
from clipprobe.params import ProbeParams
from clipprobe.probes import zeroshot
from clipprobe.probes.logreg import linear_probe

FEATURE_KEYS = {"raw": "image", "normalized": "image_norm", "pre_projection": "image_pre"}
SPLITS = ("train", "val", "test")
# zero-shot with the seed report's exact prompt (raw names, no full stop), the CLIP repo's single prompt
# (cleaned names) and the template ensemble; then the linear probe
READOUTS = readouts.PROBE


@dataclass
class Inputs:
    """What the probe stage passes: the embed stage's cache and the zero-shot ensemble's template set."""

    features: dict[str, dict[str, torch.Tensor]]  # per split: "image", "image_norm", "image_pre", "labels"
    text: dict  # text.pt: "class_names", "logit_scale", "text": {template set: (T, C, D)}
    ensemble: str  # params.yaml embed.ensemble
    device: torch.device


def evaluate(inputs: Inputs, cfg: ProbeParams) -> Result:
    """Zero-shot (three prompt conventions) and the linear probe, scored on test.

    figures: `<readout>.acc1`, `.acc5`, `.mean_per_class_recall` per readout (`linear_probe.C` too),
    `n_classes`, `chance`; curves: `c_search` (C, val_acc) of the C search, empty when C is fixed;
    arrays: `hits` {readout: (N,) bool test hits}.
    """
    splits, text, test = inputs.features, inputs.text, inputs.features["test"]
    n_classes = len(text["class_names"])
    results = {
        f"zeroshot_{name}": zeroshot.evaluate(
            test["image"], text["text"][key], test["labels"], text["logit_scale"]
        )
        for name, key in (("report", "report"), ("single", "single"), ("ensemble", inputs.ensemble))
    }
    key = FEATURE_KEYS[cfg.features]
    model, lp = linear_probe(
        *[(splits[s][key], splits[s]["labels"]) for s in SPLITS],
        C=cfg.C,
        device=inputs.device,
        max_iter=cfg.max_iter,
    )
    results["linear_probe"] = {
        **zeroshot.scores(model.logits(test[key].to(inputs.device)), test["labels"]),
        "C": lp["C"],
    }
    figures = {"n_classes": float(n_classes), "chance": 1.0 / n_classes}
    figures.update(
        flatten({name: {k: v for k, v in r.items() if k != "hits"} for name, r in results.items()})
    )
    search = [{"C": float(c), "val_acc": acc} for c, acc in lp.get("search", {}).items()]
    return Result(
        figures,
        curves={"c_search": Table(["C", "val_acc"], search)},
        arrays={"hits": {name: r["hits"] for name, r in results.items()}},
    )
