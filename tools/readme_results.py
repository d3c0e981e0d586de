"""Write the README's results table from the committed headline metrics (metrics/*.json).

Rewrites the lines between the README's `<!-- results:begin -->` and `<!-- results:end -->` markers; the
labels are the report's own. tests/test_readme.py checks every row against the metrics, so a stale table
fails the tests. Rerun after `dvc repro` moves the metrics: python tools/readme_results.py
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from clipprobe.report.counting import READOUTS, TASKS
from clipprobe.report.fewshot import LABELS
from clipprobe.report.probe import ROWS
from clipprobe.report.segment import LABELS as SEGMENT_LABELS
from clipprobe.report.vqvae import MODELS as VQVAE_LABELS

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
SCALE = {"acc1": 100.0, "miou": 100.0, "psnr": 1.0}  # accuracies and mIoU in %, PSNR in dB
UNIT = {"acc1": "top-1 (%)", "miou": "mIoU (%)", "psnr": "PSNR (dB)"}
ORDER = ("probe", "fewshot", "count", "position", "vqvae", "segment")  # the report's order


def label(name: str, metric: dict) -> str:
    """What the report calls the figure a metric file holds (a few-shot file names its shot count inside)."""
    if name in ROWS:
        return ROWS[name]
    if shot := re.fullmatch(r"fewshot_(fewest|most)_(\w+)", name):
        return f"{metric['shots']}-shot, {LABELS[shot[2]]}"
    if name.startswith("vqvae_"):
        return f"VQ-VAE, {VQVAE_LABELS[name.removeprefix('vqvae_')]}"
    if name.startswith("segment_"):
        model = name.removeprefix("segment_")
        return f"segmentation, {SEGMENT_LABELS.get(model, 'UNet11 (the first of segment.unet_encoders)')}"
    task, readout = name.split("_", 1)
    return f"{TASKS[task]}, {READOUTS[f'{readout}_probe']}"


def cell(metric: dict) -> str:
    """`mean ± half-width` of the 95% interval over seeds, in the README's units."""
    (measure,) = set(metric) & set(SCALE)
    text = f"{SCALE[measure] * metric[measure]:.2f}"
    if f"{measure}_ci95" in metric:
        text += f" ± {SCALE[measure] * metric[f'{measure}_ci95']:.2f}"
    return text


def order(name: str) -> tuple[int, int, str]:
    """The report's section order, the fewest shots before the most."""
    if name in ROWS:
        return 0, list(ROWS).index(name), name
    rank = next(i for i, prefix in enumerate(ORDER) if name.startswith(prefix))
    return rank, int("_most_" in name), name


def table(metrics_dir: Path) -> list[str]:
    rows = ["| figure | metric file | value, 95% interval over seeds |", "|---|---|---|"]
    for path in sorted(metrics_dir.glob("*.json"), key=lambda p: order(p.stem)):
        metric = json.loads(path.read_text())
        (measure,) = set(metric) & set(SCALE)
        rows.append(f"| {label(path.stem, metric)}: {UNIT[measure]} | `{path.stem}` | {cell(metric)} |")
    return rows


def main() -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    readme.write_text("\n".join([head + BEGIN, *table(ROOT / "metrics"), END]) + tail)


if __name__ == "__main__":
    main()
