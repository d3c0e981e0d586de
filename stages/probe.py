"""probe stage: zero-shot (one prompt and the template ensemble) and the full linear probe on cached features."""

from pathlib import Path

import torch

from clipprobe.params import load_params
from clipprobe.probes import zeroshot
from clipprobe.probes.logreg import linear_probe
from clipprobe.runtime import resolve_device, run_stage, seed_everything, write_csv, write_json

FEATURES = Path("features")
FEATURE_KEYS = {"raw": "image", "normalized": "image_norm", "pre_projection": "image_pre"}


def probe() -> None:
    params = load_params()
    seed_everything(params.seed)
    device = resolve_device(params.device)
    splits = {s: torch.load(FEATURES / f"{s}.pt", weights_only=True) for s in ("train", "val", "test")}
    text = torch.load(FEATURES / "text.pt", weights_only=True)
    test = splits["test"]
    n_classes = len(text["class_names"])
    zs = {
        name: zeroshot.evaluate(test["image"], text["text"][key], test["labels"], text["logit_scale"])
        for name, key in (("single", "single"), ("ensemble", params.embed.ensemble))
    }
    key = FEATURE_KEYS[params.probe.features]
    lp = linear_probe(
        *[(splits[s][key], splits[s]["labels"]) for s in ("train", "val", "test")],
        C=params.probe.C,
        device=device,
        max_iter=params.probe.max_iter,
    )
    metrics = {
        "n_classes": float(n_classes),
        "chance": 1.0 / n_classes,
        "zeroshot": {name: {"acc": r["acc1"], "acc5": r["acc5"]} for name, r in zs.items()},
        "linear_probe": {"acc": lp["acc1"], "C": lp["C"]},
    }
    write_json("metrics/probe.json", metrics)
    search = [{"C": float(c), "val_acc": acc} for c, acc in lp.get("search", {}).items()]
    write_csv("plots/probe_c_search.csv", search, columns=["C", "val_acc"])
    print(
        f"zero-shot {zs['single']['acc1']:.4f} (1 prompt), {zs['ensemble']['acc1']:.4f} (ensemble); "
        f"linear probe {lp['acc1']:.4f} (C={lp['C']:.4g})"
    )


if __name__ == "__main__":
    run_stage(probe)
