"""PNG figures for the report: one consistent seaborn style, titled with the profile and the model."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
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
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def save(fig: plt.Figure, path: Path) -> None:
    """Write a PNG and close the figure."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # No timestamps in the PNG metadata, so reruns give identical files.
    fig.savefig(path, dpi=DPI, metadata={"Software": None})
    plt.close(fig)


def probe_bars(
    measured: dict[str, float],
    chance: float,
    references: dict[str, list[Reference]],
    title: str,
    path: Path,
) -> None:
    """Bars of measured top-1 (%) per method; references as labelled markers; chance as a dashed line."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    names = list(measured)
    values = [100 * measured[n] for n in names]
    bars = ax.bar(names, values, color=sns.color_palette()[: len(names)], width=0.6, label="_measured")
    ax.bar_label(bars, fmt="%.1f", padding=3)
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
    ax.axhline(100 * chance, color="grey", linestyle="--", label=f"chance ({100 * chance:.1f}%)")
    ax.set_ylabel("test top-1 accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title, fontsize=10)
    ax.legend(loc="upper left", fontsize=8, frameon=True)
    save(fig, path)


def pretrain_curve(curve: pd.DataFrame, title: str, path: Path) -> None:
    """Contrastive loss per step, with the learnt logit scale on a second axis."""
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(curve["step"], curve["loss"], color=sns.color_palette()[0], linewidth=1, label="contrastive loss")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("symmetric InfoNCE loss (nats)")
    scale_ax = ax.twinx()
    scale_ax.plot(curve["step"], curve["logit_scale"], color=sns.color_palette()[1], label="logit scale")
    scale_ax.set_ylabel("logit scale (exp t)")
    scale_ax.grid(False)
    lines = ax.get_lines() + scale_ax.get_lines()
    ax.legend(lines, [line.get_label() for line in lines], loc="center right", fontsize=8)
    ax.set_title(title, fontsize=10)
    save(fig, path)


def image_grid(
    rows: dict[str, np.ndarray], title: str, path: Path, column_titles: list[str] | None = None
) -> None:
    """One labelled row per entry of uint8 (n, H, W, 3) images, shown at their own pixels (no rescaling)."""
    n = max(len(images) for images in rows.values())
    fig, axes = plt.subplots(len(rows), n, figsize=(1.2 * n + 1.6, 1.2 * len(rows) + 0.6), squeeze=False)
    for r, (label, images) in enumerate(rows.items()):
        for c in range(n):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            if c < len(images):
                ax.imshow(images[c], interpolation="nearest")
            if c == 0:
                ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
            if r == 0 and column_titles:
                ax.set_title(column_titles[c], fontsize=8)
    fig.suptitle(title, fontsize=10)
    save(fig, path)
