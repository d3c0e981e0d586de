"""PNG figures for the report: one consistent seaborn style, one short title per figure (the profile is in the text)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from clipprobe.report.references import Reference  # noqa: E402

DPI = 120
_REFERENCE_MARKERS = ("D", "^", "s", "v")


def set_style() -> None:
    sns.set_theme(style="whitegrid", context="notebook", palette="colorblind")
    plt.rcParams.update({"savefig.bbox": "tight", "figure.dpi": DPI, "svg.hashsalt": "clipprobe"})


def integer_epochs(*axes: plt.Axes) -> None:
    """Whole-number ticks on x: epochs, not 1.5."""
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 5, 10]))


def save(fig: plt.Figure, path: Path) -> None:
    """Write a PNG and close the figure."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # No timestamps in the PNG metadata, so reruns give identical files.
    fig.savefig(path, dpi=DPI, metadata={"Software": None})
    plt.close(fig)


def bar_values(ax: plt.Axes, bars, values: list[float], errors: list[float], vertical: bool = False) -> None:
    """Each bar's value (two decimals, as the tables) just above its error bar, on a white patch so that no
    reference line strikes it through; a zero bar gets its 0.00 too, so it cannot pass for a missing one.
    `vertical` turns the labels for narrow bars."""
    pad = 0.015 * ax.get_ylim()[1]
    for bar, value, error in zip(bars, values, errors, strict=True):
        ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height() + error + pad, f"{value:.2f}", ha="center",
                va="bottom", fontsize=6 if vertical else 7, rotation=90 if vertical else 0, zorder=5,
                bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.5, "alpha": 0.85})  # fmt: skip


def probe_bars(
    measured: dict[str, tuple[float, float | None]],
    chance: float,
    references: dict[str, list[Reference]],
    path: Path,
) -> None:
    """Bars of measured top-1 (%) per method with their 95% intervals; references as labelled markers;
    chance as a dashed line."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    names = list(measured)
    values = [100 * measured[n][0] for n in names]
    errors = [100 * (measured[n][1] or 0.0) for n in names]
    ax.set_ylim(0, 100)
    bars = ax.bar(
        range(len(names)), values, yerr=errors, capsize=4, color=sns.color_palette()[: len(names)], width=0.6
    )
    ax.set_xticks(range(len(names)), [textwrap.fill(name, 18) for name in names])
    bar_values(ax, bars, values, errors)
    for i, name in enumerate(names):
        for j, ref in enumerate(references.get(name, [])):
            ax.plot(
                i + 0.18 * (j + 1) - 0.09 * len(references[name]),
                100 * ref.value,
                marker=_REFERENCE_MARKERS[j % len(_REFERENCE_MARKERS)],
                color="black",
                linestyle="none",
                label=f"reference: {ref.source}",
            )
    ax.axhline(100 * chance, color="grey", linestyle="--", label=f"chance ({100 * chance:.2f}%)")
    ax.set_ylabel("test top-1 accuracy (%), 95% interval")
    ax.set_title("Zero-shot and linear probe", fontsize=10)
    ax.legend(loc="upper left", fontsize=8, frameon=True)
    save(fig, path)


def pretrain_curve(curves: dict[int, pd.DataFrame], path: Path) -> None:
    """Contrastive loss per step, one line per training seed, with the learnt logit scale on a second axis."""
    fig, ax = plt.subplots(figsize=(7, 4))
    scale_ax = ax.twinx()
    for colour, (seed, curve) in zip(sns.color_palette(), curves.items(), strict=False):
        ax.plot(curve["step"], curve["loss"], color=colour, linewidth=1, label=f"loss, seed {seed}")
        scale_ax.plot(curve["step"], curve["logit_scale"], color=colour, linestyle="--", linewidth=1)
    scale_ax.plot([], [], color="grey", linestyle="--", label="logit scale (dashed, right axis)")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("symmetric InfoNCE loss (nats)")
    scale_ax.set_ylabel("logit scale (exp t)")
    scale_ax.grid(False)
    lines = ax.get_lines() + scale_ax.get_lines()[-1:]
    ax.legend(lines, [line.get_label() for line in lines], loc="center right", fontsize=8)
    ax.set_title("CLIP pretraining", fontsize=10)
    save(fig, path)


def image_grid(
    rows: dict[str, np.ndarray],
    title: str,
    path: Path,
    column_titles: list[str] | None = None,
    legend: list[Patch] | None = None,
) -> None:
    """One labelled row per entry of uint8 (n, H, W, 3) images, shown at their own pixels (no rescaling).

    The images are tiled into one mosaic (white gutters) drawn on one axes: a grid of one axes per image
    costs a second per figure in layout alone."""
    n = max(len(images) for images in rows.values())
    height, width = next(iter(rows.values())).shape[1:3]
    gutter = max(1, height // 16)
    cell_h, cell_w = height + gutter, width + gutter
    mosaic = np.full((len(rows) * cell_h - gutter, n * cell_w - gutter, 3), 255, dtype=np.uint8)
    for r, images in enumerate(rows.values()):
        for c, image in enumerate(images):
            mosaic[r * cell_h : r * cell_h + height, c * cell_w : c * cell_w + width] = image
    fig, ax = plt.subplots(figsize=(1.2 * n + 1.6, 1.2 * len(rows) + 0.6))
    ax.imshow(mosaic, interpolation="nearest")
    ax.set_axis_off()
    for r, label in enumerate(rows):
        ax.text(-gutter * 2, r * cell_h + height / 2, label, ha="right", va="center", fontsize=8)
    for c, column in enumerate(column_titles or []):
        ax.text(c * cell_w + width / 2, -gutter * 2, column, ha="center", va="bottom", fontsize=8)
    ax.set_title(title, fontsize=10, pad=20 if column_titles else 6)
    if legend:
        ax.legend(
            handles=legend, loc="upper center", bbox_to_anchor=(0.5, 0), ncol=min(len(legend), 7), fontsize=7
        )
    save(fig, path)


def c_search(searches: dict[int, pd.DataFrame], path: Path) -> None:
    """Validation accuracy vs C of the linear probe's search, one line per seed (log x)."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for colour, (seed, search) in zip(sns.color_palette(), searches.items(), strict=False):
        ax.plot(search["C"], 100 * search["val_acc"], marker="o", color=colour, label=f"seed {seed}")
    ax.set_xscale("log")
    ax.set_xlabel("C (inverse L2 strength)")
    ax.set_ylabel("validation top-1 accuracy (%)")
    ax.set_title("Linear-probe C search", fontsize=10)
    ax.legend(fontsize=8)
    save(fig, path)
