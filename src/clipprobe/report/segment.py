"""Report section: segmentation from the frozen pre-pool CLIP map vs the pooled embedding vs UNet11.

The seed report trained a UNet11-style decoder on the frozen CLIP ResNet's pre-attention-pool map and found
its validation loss close to UNet11's; it suspected the attention pool of discarding where things are. This
section shows the measured curves, test scores, per-class IoU and mask overlays, and reads the verdict off
the paired claims over seeds of results/summary.json.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.patches import Patch

from clipprobe.data.store import IGNORE
from clipprobe.params import Params
from clipprobe.report import figures, plateau
from clipprobe.report.markdown import Summary, ci, pct, tower_label
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


def _curves_figure(curves: pd.DataFrame, models: list[str], summary: Summary, path: Path) -> None:
    """Val loss (left) and val mIoU (right) per epoch, one line per model and seed, each run to its plateau."""
    fig, (loss_ax, miou_ax) = plt.subplots(1, 2, figsize=(11, 4.6))
    context, labels = summary.context("segment"), {name: _label(name) for name in models}
    plateau.draw(loss_ax, curves, labels, "val_loss", context)
    plateau.draw(miou_ax, curves.assign(val_miou=100 * curves["val_miou"]), labels, "val_miou", context)
    miou_ax.axhline(
        100 * summary.mean("segment", "majority.miou"),
        color="black",
        linestyle=":",
        label="majority class (test mIoU)",
    )
    loss_ax.set(xlabel="epoch", ylabel="cross-entropy per pixel (nats, unweighted)", title="validation loss")
    miou_ax.set(xlabel="epoch", ylabel="val mIoU (%)", title="validation mIoU")
    figures.integer_epochs(loss_ax, miou_ax)
    for ax in (loss_ax, miou_ax):
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=3)
    figures.save(fig, path)


def _iou_figure(summary: Summary, models: list[str], class_names: list[str], path: Path) -> None:
    """Test IoU per class, one bar per model (and the majority class), with 95% intervals over seeds; a
    class a model never predicts right shows as a labelled 0.00 bar."""
    names = [*models, "majority"]
    fig, ax = plt.subplots(figsize=(max(7, 1.4 * len(class_names)), 4.2))
    ax.set_ylim(0, 110)  # room for the labels above the tallest bars
    ax.set_yticks(range(0, 101, 20))
    width = 0.8 / len(names)
    for j, (colour, name) in enumerate(zip(sns.color_palette(n_colors=len(names)), names, strict=True)):
        figs = [summary.data["segment"]["figures"].get(f"{name}.iou.{c}") for c in class_names]
        values = [100 * f["mean"] if f else 0.0 for f in figs]
        errors = [100 * (f["ci95"] or 0.0) if f else 0.0 for f in figs]
        xs = [i + (j - (len(names) - 1) / 2) * width for i in range(len(class_names))]
        bars = ax.bar(
            xs, values, width=width * 0.95, yerr=errors, capsize=2, color=colour, label=_label(name)
        )
        figures.bar_values(ax, bars, values, errors, vertical=True)
    ax.set_xticks(range(len(class_names)), class_names)
    ax.set(xlabel="mask class", ylabel="test IoU (%), 95% interval")
    ax.set_title("Segmentation: test IoU per class", fontsize=10)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=3)
    figures.save(fig, path)


def _palette(n_classes: int) -> np.ndarray:
    """(256, 3) uint8 colour per mask value: classes in evenly spaced hues, IGNORE white (0, background, is
    not painted: see `_overlay`)."""
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
    """Columns: fixed val images; rows: the image | ground truth | each model's prediction, masks over the image."""
    images, class_names = overlays["images"], [str(c) for c in overlays["class_names"]]
    palette = _palette(len(class_names))
    rows = {"image": images}
    for name, masks in (
        ("ground truth", overlays["masks"]),
        *((_label(m), overlays[f"pred_{m}"]) for m in models),
    ):
        rows[textwrap.fill(name, 22)] = np.stack(
            [_overlay(image, mask, palette) for image, mask in zip(images, masks, strict=True)]
        )
    # background is left as the (greyed, dimmed) image itself, not painted: its legend patch says so
    handles = [Patch(color=(0.5, 0.5, 0.5), label=f"{class_names[0]} (image, dimmed)")]
    handles += [Patch(color=palette[c] / 255, label=n) for c, n in enumerate(class_names) if c > 0]
    figures.image_grid(rows, title, path, legend=handles)


def _tables(params: Params, summary: Summary, models: list[str], class_names: list[str]) -> list[str]:
    """The scores (mIoU, pixel accuracy, epoch kept, size), then per-class IoU: two tables of page width."""
    context = summary.context("segment")
    names = [*models, "majority"]
    fig = lambda name, key: summary.data["segment"]["figures"].get(f"{name}.{key}")  # noqa: E731
    lines = [
        "| model | mIoU (%) | pixel acc (%) | epochs trained (kept), per seed | trainable params |",
        "|---|---|---|---|---|",
    ]
    for name in names:
        kept = plateau.epochs_cell(context, name) if name in models else "—"
        size = f"{context['trainable_params'][name]:,.0f}" if name in context["trainable_params"] else "0"
        lines.append(
            f"| {_label(name)} | **{ci(fig(name, 'miou'))}** | {ci(fig(name, 'pixel_acc'))} | {kept} | {size} |"
        )
    lines += ["", "Test IoU per class (%):", "", "| class | " + " | ".join(_label(n) for n in names) + " |"]
    lines.append("|---|" + "---|" * len(names))
    for c in class_names:
        cells = [ci(f) if (f := fig(name, f"iou.{c}")) else "—" for name in names]
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    if params.data.segment == "pets" and params.data.pets.border == "foreground":
        ref = PETS_REFERENCE
        lines += ["", f"Reference, not measured here: {ref.source}, {ref.setting}: {pct(ref.value)}."]
    return lines


def _verdict(summary: Summary, models: list[str]) -> str:
    claim = lambda other: summary.claim("segment", f"clip-{other}")  # noqa: E731
    above_majority = summary.claim("segment", "clip-majority")
    if not (above_majority.distinguishable and above_majority.delta > 0):
        head = (
            "**Inconclusive**: the pre-pool decoder does not beat the majority class beyond noise "
            f"({above_majority.words('it', 'the majority class', unit='mIoU points')}), so there is nothing the "
            "attention pool could be shown to discard."
        )
    else:
        pooled = claim("pooled")
        kept = pooled.distinguishable and pooled.delta > 0
        head = (
            (
                "**The pre-pool map holds what the attention pool discards**: "
                if kept
                else "**No loss in the pool is shown**: "
            )
            + pooled.words(
                "the decoder on the pre-pool map",
                "the same decoder fed the pooled embedding",
                unit="mIoU points",
            )
            + "."
        )
    unets = [m for m in models if m.startswith("unet11")]
    against = [claim(m).words("the frozen-feature decoder", _label(m), unit="mIoU points") for m in unets]
    stuck = [
        c.marked(_label(m))
        for m in models
        if not ((c := summary.claim("segment", f"{m}-majority")).distinguishable and c.delta > 0)
    ]
    floor = (
        f"**Not above the majority class** beyond noise, at its plateau: {', '.join(stuck)}."
        if stuck
        else "Every model is above the majority class beyond noise."
    )
    return " ".join(
        [head, *(f"{s[0].upper()}{s[1:]}, trained with the same recipe." for s in against), floor]
    )


def render(params: Params, out_dir: Path) -> str:
    summary = Summary()
    cfg, dataset = params.segment, params.data.segment
    models = summary.context("segment")["models"]
    first = params.seeds[0]
    overlays = summary.arrays("segment_overlays")
    curves = summary.curves("segment", "runs")
    class_names = [str(c) for c in overlays["class_names"]]
    _curves_figure(curves, models, summary, out_dir / CURVES_FIGURE)
    _iou_figure(summary, models, class_names, out_dir / IOU_FIGURE)
    _overlay_figure(
        overlays, models, f"Mask overlays on fixed val images (seed {first})", out_dir / OVERLAY_FIGURE
    )
    channels, grid, _ = overlays["map_shape"].tolist()
    border = f" The trimap's border pixels count as `{params.data.pets.border}`." if dataset == "pets" else ""
    lines = [
        "## Segmentation: what the pre-pool map keeps that the pooled embedding loses",
        "",
        f"On `{dataset}` ({cfg.n_train} train / {cfg.n_val} val / {cfg.n_test} test images, "
        f"{overlays['images'].shape[1]} px, mask classes {', '.join(class_names)}).{border} "
        f"The frozen ResNet tower of {tower_label(params)} (attention pool removed, BatchNorm in eval mode) reads "
        f"the images at {params.tower.size} px; its {channels}x{grid}x{grid} pre-pool map feeds UNet11's decoder "
        "blocks (the map upsampled to each scale stands in for every skip), and the same decoder is fed the pooled "
        f"embedding ({int(overlays['pooled_dim'])}-d) broadcast over the {grid}x{grid} grid. UNet11 (VGG11 "
        f"encoder with real skips, 1/{cfg.unet_width_div} of TernausNet's widths) reads the images themselves. "
        "Every model: per-pixel cross-entropy weighted by inverse train-pixel frequency per class (so that "
        f"painting the background everywhere is no minimum), Adam (lr {cfg.lr:g}), batch {cfg.batch_size}, the "
        f"same seeded batch order, {plateau.rule_words(params, 'val mIoU', cfg.max_epochs)}; only they are "
        "scored on test (mIoU from a dataset-wide confusion matrix, over the classes present), once per seed.",
        "",
        f"![Segmentation curves]({CURVES_FIGURE})",
        "",
        "Per-pixel validation loss (left) and validation mIoU (right) after each epoch, every seed over its "
        "whole schedule (`*` in the table: not flat at the end); dots mark the epoch kept. "
        + plateau.rising_words(summary.context("segment"), {name: _label(name) for name in models}),
        "",
        *_tables(params, summary, models, class_names),
        "",
        f"![Per-class IoU]({IOU_FIGURE})",
        "",
        "Test IoU of every mask class per model, with 95% intervals over seeds; labels give each bar's value.",
        "",
        f"![Mask overlays on fixed val images]({OVERLAY_FIGURE})",
        "",
        "Fixed validation images (columns): the image, its ground-truth mask and each model's prediction (rows), "
        "classes painted over a grey copy of the image, background left as the dimmed image.",
        "",
        _verdict(summary, models),
    ]
    return "\n".join(lines) + "\n"
