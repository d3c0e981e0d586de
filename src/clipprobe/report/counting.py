"""Report section: object count and position read out before and after CLIP's attention pool.

The seed report ends on a hypothesis: CLIP struggles with counting and positions not because its features
lack the information but because the final attention pool discards it. The verdict is read off the paired
claims of results/summary.json: a gap counts only when its 95% interval over seeds and test images excludes 0.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import seaborn as sns

from clipprobe.params import Params
from clipprobe.report import figures
from clipprobe.report.markdown import Summary, ci, pct, tower_label

FIGURE = "figures/counting.png"
TASKS = {"count": "object count", "position": "quadrant of the largest object"}
READOUTS = {
    "zeroshot": "zero-shot (prompt ensemble)",
    "pooled_probe": "probe: pooled embedding",
    "prepool_probe": "probe: pre-pool map",
}
WHY_AT_MAJORITY = {
    "zeroshot": "likely the pretraining captions seldom say it in the prompts' words, so no class text embedding matches",
    "pooled_probe": "no linearly readable signal reaches the pooled embedding",
    "prepool_probe": "no linearly readable signal in the pooled grid of the map (too coarse a grid, or too little training)",
}


def _figure(summary: Summary, tasks: list[str], path: Path) -> None:
    """Grouped bars (task x readout) with 95% intervals; each task's majority and chance levels as lines."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.set_ylim(0, 100)
    width = 0.8 / len(READOUTS)
    for j, (key, label) in enumerate(READOUTS.items()):
        xs = [i + (j - (len(READOUTS) - 1) / 2) * width for i in range(len(tasks))]
        figs = [summary.figure("counting", f"{task}_{key}") for task in tasks]
        values = [100 * f["mean"] for f in figs]
        errors = [100 * (f["ci95"] or 0.0) for f in figs]
        bars = ax.bar(
            xs, values, width=width * 0.95, yerr=errors, capsize=3, color=sns.color_palette()[j], label=label
        )
        figures.bar_values(ax, bars, values, errors)
    context = summary.context("counting")
    for i, task in enumerate(tasks):
        span = (i - 0.45, i + 0.45)
        majority = summary.mean("counting", f"{task}_majority")
        ax.hlines(100 * majority, *span, colors="black", linestyles=":", label="majority class")
        ax.hlines(100 * context[task]["chance"], *span, colors="grey", linestyles="--", label="chance")
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))  # one legend entry per line kind
    ax.legend(
        unique.values(), unique.keys(), loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=3, fontsize=8
    )
    ax.set_xticks(range(len(tasks)), [TASKS.get(task, task) for task in tasks])
    ax.set_ylabel("test accuracy (%), 95% interval")
    ax.set_title("Counting and position readouts", fontsize=10)
    figures.save(fig, path)


def _task_sentence(summary: Summary, task: str) -> str:
    name = TASKS.get(task, task)
    pool = summary.claim("counting", f"{task}_prepool-pooled")
    align = summary.claim("counting", f"{task}_pooled-zeroshot")
    if pool.distinguishable and pool.delta > 0:
        reading = "the pool discards part of it"
    elif pool.distinguishable:
        reading = "nothing linearly readable is lost in the pool, whose attention makes it easier to read"
    else:
        reading = "as far as a linear probe can tell, the pool keeps it"
    return (
        f"For the {name}, {pool.words('the pre-pool map', 'the pooled embedding')}: {reading}; "
        f"{align.words('the pooled probe', 'zero-shot')}."
    )


def _verdict(summary: Summary, tasks: list[str]) -> str:
    losses = [
        (claim := summary.claim("counting", f"{task}_prepool-pooled")).distinguishable and claim.delta > 0
        for task in tasks
    ]
    readable = [summary.claim("counting", f"{task}_prepool_probe-majority") for task in tasks]
    if not any(c.distinguishable and c.delta > 0 for c in readable):
        head = "**Inconclusive**: not even the pre-pool map beats the majority class, so there is nothing the pool could be shown to discard."
    elif all(losses):
        head = "**The numbers support the hypothesis**: on every task the pool discards information the map holds."
    elif any(losses):
        head = "**The numbers support the hypothesis in part**: the pool discards information on some tasks only."
    else:
        head = "**The numbers do not support the hypothesis**: no task shows the pool discarding what the map holds."
    notes = []
    for task in tasks:
        for key, label in READOUTS.items():
            claim = summary.claim("counting", f"{task}_{key}-majority")
            if not (claim.distinguishable and claim.delta > 0):
                notes.append(f"{label} on the {TASKS.get(task, task)} ({WHY_AT_MAJORITY[key]})")
    tail = (
        " Not above the majority class: " + "; ".join(notes) + "."
        if notes
        else " Every readout beats the majority class."
    )
    return " ".join([head, *(_task_sentence(summary, task) for task in tasks)]) + tail


def render(params: Params, out_dir: Path) -> str:
    summary = Summary()
    context = summary.context("counting")
    tasks = list(context)
    _figure(summary, tasks, out_dir / FIGURE)
    cfg = params.counting
    first = context[tasks[0]]
    phrasings = {"count prompt": len(cfg.count_templates)}
    if "position" in tasks:
        phrasings["position"] = len(cfg.position_templates)
    prompts = " and ".join(f"{n} {what} phrasing{'s' if n > 1 else ''}" for what, n in phrasings.items())
    prompts += ", ensembled" if max(phrasings.values()) > 1 else ""  # CLEVR: CLIP's one prompt
    lines = [
        "## Counting and position: what the attention pool discards",
        "",
        f"On `{params.data.counting}`, the {' and the '.join(TASKS.get(t, t) for t in tasks)} are read out four ways "
        f"from the frozen ResNet tower of {tower_label(params)}: zero-shot with {prompts}; logistic "
        "regression on the pooled embedding (`encode_image`); logistic regression on the map the attention pool "
        f"reads, average-pooled to {cfg.prepool_grid}x{cfg.prepool_grid} cells ({first['prepool_dim']:.0f} "
        "features); and the majority class of train. Both probes take features from one pass through the same "
        f"frozen tower, standardised with train statistics; C is chosen on val from {', '.join(f'{c:g}' for c in cfg.Cs)}; "
        f"accuracies are on the {first['n_test']:.0f} test images.",
        "",
        f"![Counting and position readouts]({FIGURE})",
        "",
        "Test accuracy of each readout with its 95% interval over seeds and test images; dotted: the majority "
        "class of train, dashed: chance.",
        "",
        "| readout | " + " | ".join(f"{TASKS.get(t, t)} (%)" for t in tasks) + " |",
        "|---|" + "---|" * len(tasks),
    ]
    for key, label in READOUTS.items():
        lines.append(
            f"| {label} | "
            + " | ".join(f"**{ci(summary.figure('counting', f'{t}_{key}'))}**" for t in tasks)
            + " |"
        )
    lines.append(
        "| majority class (train) | "
        + " | ".join(ci(summary.figure("counting", f"{t}_majority")) for t in tasks)
        + " |"
    )
    lines.append("| chance | " + " | ".join(pct(context[t]["chance"]) for t in tasks) + " |")
    if "position" not in tasks:
        lines += ["", f"`{params.data.counting}` gives object counts only, so there is no position task."]
    lines += ["", _verdict(summary, tasks)]
    return "\n".join(lines) + "\n"
