"""Report section: segmentation from the frozen pre-pool CLIP map vs the pooled embedding vs UNet11.

The seed report trained a UNet11-style decoder on the frozen CLIP ResNet's pre-attention-pool map and found
its validation loss close to UNet11's; it suspected the attention pool of discarding where things are. This
section shows the measured curves, test scores, per-class IoU and mask overlays, and reads the verdict off
metrics/segment.json.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.patches import Patch

from clipprobe import paths
from clipprobe.data.store import IGNORE
from clipprobe.io import load_arrays
from clipprobe.params import Params
from clipprobe.report import figures
from clipprobe.report.markdown import pct, profile_name, tower_label
from clipprobe.report.references import PETS_REFERENCE

CURVES_FIGURE = "figures/segment_curves.png"
IOU_FIGURE = "figures/segment_iou.png"
OVERLAY_FIGURE = "figures/segment_overlays.png"
LABELS = {
    "clip": "decoder on the CLIP pre-pool map",
    "pooled": "decoder on the pooled CLIP embedding",
    "unet11_scratch": "UNet11, VGG11 from scratch",
    "unet11_imagenet": "UNet11, VGG11 ImageNet weights",
    "majority": "majority class (train)",
}


def _label(name: str) -> str:
    return LABELS.get(name, name)


def _curves_figure(curves: pd.DataFrame, models: list[str], metrics: dict, title: str, path: Path) -> None:
    """Loss (train dashed, val solid) and val mIoU per epoch; the kept epoch of each model marked."""
    fig, (loss_ax, miou_ax) = plt.subplots(1, 2, figsize=(11, 4.2))
    for colour, name in zip(sns.color_palette(n_colors=len(models)), models, strict=True):
        loss_ax.plot(curves["epoch"], curves[f"{name}_val_loss"], color=colour, label=f"{_label(name)}: val")
        loss_ax.plot(
            curves["epoch"], curves[f"{name}_train_loss"], color=colour, linestyle="--", label="_train"
        )
        miou_ax.plot(curves["epoch"], 100 * curves[f"{name}_val_miou"], color=colour, label=_label(name))
        best = int(metrics[name]["best_epoch"])
        best_miou = 100 * curves.loc[curves["epoch"] == best, f"{name}_val_miou"].iloc[0]
        miou_ax.plot(best, best_miou, marker="o", color=colour, label="_kept")
    loss_ax.plot([], [], color="grey", linestyle="--", label="train (dashed)")
    miou_ax.axhline(
        100 * metrics["majority"]["miou"], color="black", linestyle=":", label="majority class (test mIoU)"
    )
    miou_ax.plot([], [], marker="o", color="grey", linestyle="none", label="epoch kept (best val mIoU)")
    loss_ax.set(xlabel="epoch", ylabel="cross-entropy per pixel (nats)", title="loss")
    miou_ax.set(xlabel="epoch", ylabel="val mIoU (%)", title="validation mIoU")
    figures.integer_epochs(loss_ax, miou_ax)
    for ax in (loss_ax, miou_ax):
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=2)
    fig.suptitle(title, fontsize=10)
    figures.save(fig, path)


def _iou_figure(metrics: dict, models: list[str], class_names: list[str], title: str, path: Path) -> None:
    """Test IoU per class, one bar per model (and the majority class)."""
    rows = [
        {"class": c, "model": _label(name), "IoU (%)": 100 * metrics[name]["iou"].get(c, np.nan)}
        for name in [*models, "majority"]
        for c in class_names
    ]
    fig, ax = plt.subplots(figsize=(max(7, 1.3 * len(class_names)), 4.2))
    sns.barplot(pd.DataFrame(rows), x="class", y="IoU (%)", hue="model", ax=ax)
    ax.set(xlabel="mask class", ylabel="test IoU (%)", ylim=(0, 100))
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=3)
    figures.save(fig, path)


def _palette(n_classes: int) -> np.ndarray:
    """(256, 3) uint8 colour per mask value: background black, classes in evenly spaced hues, IGNORE white."""
    colours = np.zeros((256, 3), dtype=np.uint8)
    colours[1:n_classes] = (255 * np.array(sns.color_palette("husl", n_classes - 1))).astype(np.uint8)
    colours[IGNORE] = 255
    return colours


def _overlay(image: np.ndarray, mask: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """The mask's colours over a grey copy of the image (so the objects' own colours cannot be mistaken)."""
    grey = image.mean(axis=-1, keepdims=True)
    alpha = np.where(mask[..., None] == 0, 0.4, 0.8)  # background only dims the image
    return ((1 - alpha) * grey + alpha * palette[mask]).astype(np.uint8)


def _overlay_figure(overlays: dict, models: list[str], title: str, path: Path) -> None:
    """Rows: fixed val images; columns: image | ground truth | each model's prediction, masks over the image."""
    images, class_names = overlays["images"], [str(c) for c in overlays["class_names"]]
    palette = _palette(len(class_names))
    predictions = ((_label(m), overlays[f"pred_{m}"]) for m in models)
    columns = [("image", None), ("ground truth", overlays["masks"]), *predictions]
    fig, axes = plt.subplots(
        len(images), len(columns), figsize=(1.9 * len(columns), 1.9 * len(images)), squeeze=False
    )
    for row, image in enumerate(images):
        for col, (name, values) in enumerate(columns):
            ax = axes[row, col]
            ax.imshow(image if values is None else _overlay(image, values[row], palette))
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(textwrap.fill(name, 22), fontsize=7)
    handles = [Patch(color=palette[c] / 255, label=n) for c, n in enumerate(class_names)]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 7), fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(bottom=0.08)
    figures.save(fig, path)


def _table(params: Params, metrics: dict, models: list[str], class_names: list[str]) -> list[str]:
    pets = params.data.segment == "pets" and params.data.pets.border == "foreground"
    head = ["model", "mIoU (%)", "pixel acc (%)", *(f"IoU {c} (%)" for c in class_names), "test loss"]
    head += ["epoch kept", "trainable params", "reference, not measured"]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for name in [*models, "majority"]:
        result = metrics[name]
        ious = [f"{pct(result['iou'][c])}" if c in result["iou"] else "—" for c in class_names]
        extra = (
            [f"{result['best_epoch']:.0f}", f"{result['trainable_params']:,.0f}"]
            if name != "majority"
            else ["—", "0"]
        )
        loss = f"{result['test_loss']:.3f}" if "test_loss" in result else "—"
        cells = [_label(name), f"**{pct(result['miou'])}**", f"**{pct(result['pixel_acc'])}**", *ious, loss]
        lines.append("| " + " | ".join([*cells, *extra, "—"]) + " |")
    if pets:
        ref = PETS_REFERENCE
        blanks = ["—"] * (len(head) - 2)
        lines.append(f"| reference: {ref.source} | " + " | ".join(blanks) + f" | pet IoU {pct(ref.value)} |")
    return lines


def _verdict(metrics: dict, models: list[str]) -> str:
    clip, pooled, majority = (metrics[k]["miou"] for k in ("clip", "pooled", "majority"))
    if clip <= majority:
        head = (
            f"**Inconclusive**: the pre-pool decoder does not beat the majority class ({pct(majority)}% mIoU), "
            "so there is nothing the attention pool could be shown to discard."
        )
    elif clip > pooled:
        floor = ", which does no better than the majority class" if pooled <= majority else ""
        head = (
            "**The pre-pool map holds what the attention pool discards**: its decoder scores "
            f"{pct(clip - pooled)} mIoU points above the same decoder fed the pooled embedding{floor}."
        )
    else:
        head = (
            "**The attention pool keeps what the decoder uses**: the pooled embedding does as well as the "
            f"pre-pool map ({pct(pooled - clip)} mIoU points ahead)."
        )
    unets = [m for m in models if m.startswith("unet11")]
    if not unets:
        return f"{head} (One seed; test split.)"
    best = max(unets, key=lambda m: metrics[m]["miou"])
    ahead = "ahead of" if clip >= metrics[best]["miou"] else "behind"
    return (
        f"{head} The frozen-feature decoder is {pct(abs(clip - metrics[best]['miou']))} mIoU points {ahead} "
        f"{_label(best)} ({pct(metrics[best]['miou'])}%), trained with the same recipe. (One seed; test split.)"
    )


def render(params: Params, out_dir: Path) -> str:
    metrics = json.loads(paths.SEGMENT.read_text())
    curves = pd.read_csv(paths.SEGMENT_CURVES)
    overlays = load_arrays(paths.SEGMENT_OVERLAYS)
    cfg, dataset = params.segment, params.data.segment
    models = [name for name in metrics if name != "majority"]  # the feature decoders, then the UNet11s
    class_names = [str(c) for c in overlays["class_names"]]
    tower = tower_label(params)
    title = f"Segmentation, {profile_name(params)}: {dataset}, frozen tower {tower.replace('`', '')}"
    _curves_figure(curves, models, metrics, title, out_dir / CURVES_FIGURE)
    _iou_figure(metrics, models, class_names, title, out_dir / IOU_FIGURE)
    _overlay_figure(overlays, models, title, out_dir / OVERLAY_FIGURE)
    channels, grid, _ = overlays["map_shape"].tolist()
    border = f" The trimap's border pixels count as `{params.data.pets.border}`." if dataset == "pets" else ""
    references = (
        "The reference column holds a published number for the same data and binary protocol, from a "
        "different model; it is not comparable to a single run here."
        if dataset == "pets" and params.data.pets.border == "foreground"
        else f"No published number applies to `{dataset}`, so the reference column is empty."
    )
    lines = [
        "## Segmentation: what the pre-pool map keeps that the pooled embedding loses",
        "",
        f"On `{dataset}` ({cfg.n_train} train / {cfg.n_val} val / {cfg.n_test} test images, "
        f"{overlays['images'].shape[1]} px, mask classes {', '.join(class_names)}).{border} "
        f"The frozen ResNet tower of {tower} (attention pool removed, BatchNorm in eval mode) reads the images "
        f"at {params.tower.size} px; its {channels}x{grid}x{grid} pre-pool map feeds UNet11's decoder blocks "
        "(the map upsampled to each scale stands in for every skip), and the same decoder is fed the pooled "
        f"embedding ({int(overlays['pooled_dim'])}-d) broadcast over the {grid}x{grid} grid. UNet11 (VGG11 encoder "
        f"with real skips, 1/{cfg.unet_width_div} of TernausNet's widths) reads the images themselves. Every "
        f"model: per-pixel cross-entropy, Adam (lr {cfg.lr:g}), {cfg.epochs} epochs, batch {cfg.batch_size}, "
        "the same seeded batch order; the epoch kept is the one with the best val mIoU, and only it is scored "
        "on test (mIoU from a dataset-wide confusion matrix, over the classes present).",
        "",
        f"![Segmentation curves]({CURVES_FIGURE})",
        "",
        *_table(params, metrics, models, class_names),
        "",
        references,
        "",
        f"![Per-class IoU]({IOU_FIGURE})",
        "",
        f"![Mask overlays on fixed val images]({OVERLAY_FIGURE})",
        "",
        _verdict(metrics, models),
    ]
    return "\n".join(lines) + "\n"
