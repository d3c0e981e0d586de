"""Report section: object count and position read out before and after CLIP's attention pool.

The seed report ends on a hypothesis: CLIP struggles with counting and positions not because its features
lack the information but because the final attention pool discards it. The verdict paragraph is computed
from metrics/counting.json: a gap counts only when it exceeds its 95% binomial noise on the test split.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib.pyplot as plt
import seaborn as sns

from clipprobe import paths
from clipprobe.params import Params
from clipprobe.report import figures
from clipprobe.report.markdown import pct, profile_name, tower_label

FIGURE = "figures/counting.png"
TASKS = {"count": "object count", "position": "quadrant of the largest object"}
READOUTS = {
    "zeroshot": "zero-shot (prompt ensemble)",
    "pooled_probe": "probe: pooled embedding",
    "prepool_probe": "probe: pre-pool map",
}
Z95 = 1.96


def _noise(a: float, b: float, n: float) -> float:
    """Half-width of the 95% interval of the difference of two accuracies, each on n test images."""
    return Z95 * math.sqrt((a * (1 - a) + b * (1 - b)) / n)


def _beats(a: float, b: float, n: float) -> bool:
    return a - b > _noise(a, b, n)


def _figure(metrics: dict, title: str, path: Path) -> None:
    """Grouped bars (task x readout) with each task's majority and chance levels as lines over its group."""
    figures.set_style()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    width = 0.8 / len(READOUTS)
    colours = sns.color_palette()
    for j, (key, label) in enumerate(READOUTS.items()):
        xs = [i + (j - (len(READOUTS) - 1) / 2) * width for i in range(len(metrics))]
        values = [100 * result[key]["acc"] for result in metrics.values()]
        bars = ax.bar(xs, values, width=width * 0.95, color=colours[j], label=label)
        ax.bar_label(bars, fmt="%.1f", padding=2, fontsize=8)
    for i, result in enumerate(metrics.values()):
        span = (i - 0.45, i + 0.45)
        ax.hlines(
            100 * result["majority"]["acc"], *span, colors="black", linestyles=":", label="majority class"
        )
        ax.hlines(100 * result["chance"], *span, colors="grey", linestyles="--", label="chance")
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))  # one legend entry per line kind
    ax.legend(
        unique.values(), unique.keys(), loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=3, fontsize=8
    )
    ax.set_xticks(range(len(metrics)), [TASKS.get(task, task) for task in metrics])
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title, fontsize=10)
    figures.save(fig, path)


def _task_sentence(task: str, result: dict) -> tuple[str, bool, bool]:
    """One task's finding; also whether the pool loses information and whether zero-shot trails the probe."""
    n = result["n_test"]
    pre, pooled, zs = (result[k]["acc"] for k in ("prepool_probe", "pooled_probe", "zeroshot"))
    noise = _noise(pre, pooled, n)
    if _beats(pre, pooled, n):
        pool = f"the pre-pool map gives {pct(pre - pooled)} points more than the pooled embedding (95% noise ±{pct(noise)}): the pool discards part of it"
    elif _beats(pooled, pre, n):
        pool = (
            f"the pooled embedding gives {pct(pooled - pre)} points more than the pre-pool map (±{pct(noise)}): "
            "nothing linearly readable is lost in the pool, whose attention, a nonlinear aggregate, makes it easier to read"
        )
    else:
        pool = f"the pre-pool map and the pooled embedding agree within noise ({pct(pre)}% vs {pct(pooled)}%, ±{pct(noise)}): the pool keeps it"
    trails = _beats(pooled, zs, n)
    align = (
        f"zero-shot reaches {pct(zs)}%, {pct(pooled - zs)} points below the pooled probe, so the text side does not reach what the image embedding holds"
        if trails
        else f"zero-shot reaches {pct(zs)}%, as far as the pooled probe gets"
    )
    return f"For the {TASKS.get(task, task)}, {pool}; {align}.", _beats(pre, pooled, n), trails


def _below_majority(metrics: dict) -> list[str]:
    """Readouts that do not beat the majority class beyond noise, each with why that can happen."""
    why = {
        "zeroshot": "likely the pretraining captions seldom say it in the prompts' words, so no class text embedding matches",
        "pooled_probe": "no linearly readable signal reaches the pooled embedding",
        "prepool_probe": "no linearly readable signal in the pooled grid of the map (too coarse a grid, or too little training)",
    }
    notes = []
    for task, result in metrics.items():
        majority = result["majority"]["acc"]
        for key, label in READOUTS.items():
            if not _beats(result[key]["acc"], majority, result["n_test"]):
                notes.append(
                    f"{label} on the {TASKS.get(task, task)} ({pct(result[key]['acc'])}%) does not beat the "
                    f"majority class ({pct(majority)}%): {why[key]}"
                )
    return notes


def _verdict(metrics: dict) -> str:
    findings = [_task_sentence(task, result) for task, result in metrics.items()]
    losses = [loses for _, loses, _ in findings]
    if not any(
        _beats(r["prepool_probe"]["acc"], r["majority"]["acc"], r["n_test"]) for r in metrics.values()
    ):
        head = "**Inconclusive**: not even the pre-pool map holds linearly readable information, so there is nothing the pool could discard."
    elif all(losses):
        head = "**The numbers support the hypothesis**: on every task the pool discards information the map holds."
    elif any(losses):
        head = "**The numbers support the hypothesis in part**: the pool discards information on some tasks only."
    else:
        head = "**The numbers do not support the hypothesis**: the attention pool keeps what the pre-pool map holds."
    if not any(losses) and any(trails for _, _, trails in findings):
        head += " Where zero-shot falls short, the failure lies in the image-text alignment, not in the pool."
    notes = _below_majority(metrics)
    tail = (
        (" Below the majority class: " + "; ".join(notes) + ".")
        if notes
        else " Every readout beats the majority class."
    )
    return " ".join([head, *(sentence for sentence, _, _ in findings)]) + tail


def render(params: Params, out_dir: Path) -> str:
    metrics = json.loads(paths.COUNTING.read_text())
    profile = profile_name(params)
    _figure(metrics, f"Counting and position: {profile}", out_dir / FIGURE)
    cfg = params.counting
    model = tower_label(params)
    dataset = params.data.counting
    tasks = " and the ".join(TASKS.get(task, task) for task in metrics)
    first = next(iter(metrics.values()))
    prompts = f"{len(cfg.count_templates)} count prompt phrasings" + (
        f" and {len(cfg.position_templates)} position phrasings" if "position" in metrics else ""
    )
    how_c = f"C chosen on val from {', '.join(f'{c:g}' for c in cfg.Cs)}"
    lines = [
        "## Counting and position: what the attention pool discards",
        "",
        f"On `{dataset}`, the {tasks} are read out four ways from the frozen ResNet tower of {model}: zero-shot "
        f"with {prompts}, ensembled; logistic regression on the pooled embedding "
        "(`encode_image`); logistic regression on the map the attention pool reads, average-pooled to "
        f"{cfg.prepool_grid}x{cfg.prepool_grid} cells ({first['prepool_probe']['dim']:.0f} features); and the "
        "majority class of train. Both probes take features from one pass through the same frozen tower, "
        f"standardised with train statistics; {how_c}; accuracies are on the {first['n_test']:.0f} test images.",
        "",
        f"![Counting and position readouts]({FIGURE})",
        "",
        "| readout | " + " | ".join(f"{TASKS.get(t, t)} (%)" for t in metrics) + " |",
        "|---|" + "---|" * len(metrics),
    ]
    for key, label in READOUTS.items():
        cells = []
        for result in metrics.values():
            c = f" (C = {result[key]['C']:.3g})" if "C" in result[key] else ""
            cells.append(f"**{pct(result[key]['acc'])}**{c}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append(
        "| majority class (train) | " + " | ".join(pct(r["majority"]["acc"]) for r in metrics.values()) + " |"
    )
    lines.append("| chance | " + " | ".join(pct(r["chance"]) for r in metrics.values()) + " |")
    if "position" not in metrics:
        lines += ["", f"`{dataset}` gives object counts only, so there is no position task."]
    lines += ["", _verdict(metrics)]
    return "\n".join(lines) + "\n"
