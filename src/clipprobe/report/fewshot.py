"""Report section: the few-shot sweep (accuracy vs shots per method, and the accuracy-vs-epoch curves at the
smallest shot count), every comparison read off the paired claims over seeds."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from clipprobe.params import Params
from clipprobe.report import figures
from clipprobe.report.markdown import Summary, ci, pct

ACC_FIGURE = "figures/fewshot_acc.png"
CURVES_FIGURE = "figures/fewshot_curves.png"
LABELS = {  # every method of readouts.FEWSHOT_METHODS, as figures and tables name it
    "random": "random init (report's baseline)",
    "zeroshot": "zero-shot init (report's proposal)",
    "clap": "CLAP",
    "lpp": "LP++",
    "tip": "Tip-Adapter",
    "gda": "GDA",
    "prolip": "ProLIP",
}
CURVE_METHODS = ("random", "zeroshot", "prolip")  # the curves figure: the report's pair, and ProLIP


def _accuracy_figure(summary: Summary, shots: list[int], methods: list[str], path: Path) -> None:
    """Mean test accuracy vs shots (log x), one line per method with its 95% band; zero-shot and the nearest
    class mean of all train images as horizontal lines with theirs."""
    fig, ax = plt.subplots(figsize=(7, 4.4))
    for colour, name in zip(sns.color_palette(n_colors=len(methods)), methods, strict=True):
        figs = [summary.figure("fewshot", f"{k}shot_{name}") for k in shots]
        mean = np.array([100 * f["mean"] for f in figs])
        half = np.array([100 * (f["ci95"] or 0.0) for f in figs])
        ax.plot(shots, mean, marker="o", color=colour, label=LABELS[name])
        ax.fill_between(shots, mean - half, mean + half, color=colour, alpha=0.15)
    for key, style, label in (
        ("zeroshot", "--", "zero-shot classifier"),
        ("class_mean", ":", "nearest class mean of all train images"),
    ):
        fig_ = summary.figure("fewshot", key)
        ax.axhline(
            100 * fig_["mean"], color="black" if key == "zeroshot" else "grey", linestyle=style, label=label
        )
    ax.set_xscale("log", base=2)
    ax.set_xticks(shots, [str(k) for k in shots])
    ax.minorticks_off()
    ax.set_xlabel("labelled images per class (shots)")
    ax.set_ylabel("test top-1 accuracy (%)")
    ax.set_title("Few-shot accuracy vs shots", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    figures.save(fig, path)


def _curves_figure(curves: pd.DataFrame, summary: Summary, k: int, methods: list[str], path: Path) -> None:
    """Test (solid) and few-shot val (dashed) accuracy vs epoch at k shots; a dot marks the epoch kept."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for colour, name in zip(sns.color_palette(n_colors=len(methods)), methods, strict=True):
        test = 100 * curves[f"{name}_test"]
        ax.plot(curves["epoch"], test, color=colour, label=f"{LABELS[name]}: test")
        ax.plot(curves["epoch"], 100 * curves[f"{name}_val"], color=colour, linestyle="--", label="_val")
        kept = summary.mean("fewshot", f"{k}shot_{name}.epoch_chosen")
        ax.plot(
            kept,
            np.interp(kept, curves["epoch"], test),
            marker="o",
            markersize=8,
            color=colour,
            label="_kept",
        )
    ax.plot([], [], color="grey", linestyle="--", label="few-shot val (dashed)")
    ax.plot(
        [], [], color="grey", marker="o", linestyle="none", label="epoch kept (mean over draws and seeds)"
    )
    ax.axhline(
        100 * summary.mean("fewshot", "zeroshot"), color="black", linestyle=":", label="zero-shot classifier"
    )
    ax.set_xlabel("epoch (full-batch steps)")
    ax.set_ylabel("top-1 accuracy (%), mean over draws and seeds")
    ax.set_title(f"{k}-shot accuracy vs epoch", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    figures.save(fig, path)


def _tables(summary: Summary, shots: list[int], methods: list[str]) -> list[str]:
    """Accuracy, then the paired difference to zero-shot: methods as rows, shot counts as columns."""
    head = "| method | " + " | ".join(f"{k} shot{'s' if k > 1 else ''}" for k in shots) + " |"
    rule = "|---|" + "---|" * len(shots)
    acc = [head, rule]
    delta = [head, rule]
    for name in methods:
        acc.append(
            f"| {LABELS[name]} | "
            + " | ".join(ci(summary.figure("fewshot", f"{k}shot_{name}")) for k in shots)
            + " |"
        )
        cells = []
        for k in shots:
            claim = summary.claim("fewshot", f"{k}shot_{name}-zeroshot")
            cell = f"{100 * claim.delta:+.2f} ± {100 * (claim.half or 0):.2f}"
            cells.append(f"**{cell}**" if claim.distinguishable else cell)
        delta.append(f"| {LABELS[name]} | " + " | ".join(cells) + " |")
    return [
        "Test top-1 (%), mean ± 95% interval over seeds and test images (each seed's draws averaged first):",
        "",
        *acc,
        "",
        "Paired difference to the zero-shot classifier on the same test images (points, ± 95% interval over "
        "seeds and images; bold where the interval excludes zero):",
        "",
        *delta,
    ]


def _findings(summary: Summary, first: int, methods: list[str]) -> str:
    """The report's few-shot findings at the smallest shot count, worded by their claims."""
    k = f"{first}shot"
    said = []
    if "random" in methods:
        said.append(summary.claim("fewshot", f"{k}_random-zeroshot").words("the random init", "zero-shot"))
    if "zeroshot" in methods:
        init, last = (summary.figure("fewshot", f"{k}_zeroshot.{p}") for p in ("acc_init", "acc_last"))
        said.append(
            f"the zero-shot init starts at {ci(init)}% (the zero-shot classifier itself), falls to {ci(last)}% by "
            f"its last epoch and keeps {ci(summary.figure('fewshot', f'{k}_zeroshot'))}% at the epoch chosen on "
            "few-shot val"
        )
        if "random" in methods:
            said.append(
                summary.claim("fewshot", f"{k}_zeroshot-random").words(
                    "the zero-shot init", "the random init"
                )
            )
    for name in methods:
        if name not in ("random", "zeroshot"):
            said.append(summary.claim("fewshot", f"{k}_{name}-zeroshot").words(LABELS[name], "zero-shot"))
    shot = f"{first} shot" + ("" if first == 1 else "s")
    return f"At {shot} per class: " + "; ".join(said) + "." if said else ""


def _prototype_paragraph(summary: Summary) -> str:
    """Why labels add little or much here: the class means of all train images against the text weights."""
    class_mean = summary.claim("fewshot", "class_mean-zeroshot")
    probe = summary.claim("probe", "linear_probe-zeroshot_ensemble")
    return (
        "How much a labelled image can add: the nearest-class-mean classifier on the mean feature of *all* train "
        f"images of each class scores {ci(summary.figure('fewshot', 'class_mean'))}%; "
        f"{class_mean.words('the class means', 'the text weights')}. A handful of images per class gives a "
        "noisier prototype than that, and Tip-Adapter's cache, GDA's class means and LP++'s initialisation all "
        "start from such few-shot prototypes. Trained discriminatively on all of them, "
        f"{probe.words('the full linear probe', 'zero-shot')}."
    )


def render(params: Params, out_dir: Path) -> str:
    summary = Summary()
    shots, methods = list(params.shots), list(params.fewshot.inits)
    first = shots[0]
    _accuracy_figure(summary, shots, methods, out_dir / ACC_FIGURE)
    lines = [
        "## Few-shot: random vs zero-shot initialisation, and stronger methods",
        "",
        _run_paragraph(params),
        "",
        f"![Few-shot accuracy vs shots]({ACC_FIGURE})",
        "",
        "Mean test accuracy per method and shot count, with its 95% band over seeds and test images; the "
        "horizontal lines are the zero-shot classifier and the class means of all train images.",
        "",
    ]
    curves = summary.curves("fewshot")
    curve_methods = [m for m in CURVE_METHODS if f"{m}_test" in curves]
    if curve_methods:
        _curves_figure(curves, summary, first, curve_methods, out_dir / CURVES_FIGURE)
        lines += [
            f"![{first}-shot accuracy vs epoch]({CURVES_FIGURE})",
            "",
            f"At {first} shot{'s' if first > 1 else ''} per class, test (solid) and few-shot val (dashed) accuracy "
            "after each evaluated epoch, averaged over draws and seeds; the dot is the epoch the selection rule "
            "kept, on average.",
            "",
        ]
    context = summary.context("fewshot")
    lines += [
        *_tables(summary, shots, methods),
        "",
        f"Zero-shot classifier: {ci(summary.figure('fewshot', 'zeroshot'))}%; chance {pct(context['chance'])}%.",
        "",
        _findings(summary, first, methods),
        "",
        _prototype_paragraph(summary),
    ]
    return "\n".join(lines) + "\n"


def _run_paragraph(params: Params) -> str:
    cfg, shots = params.fewshot, params.shots
    each = f"each shot count K in {', '.join(map(str, shots))}" if len(shots) > 1 else f"K = {shots[0]} shots"
    return (
        f"Frozen `{params.clip.arch}` features of `{params.data.classification}`, L2-normalised, for each training "
        f"seed's CLIP. For {each}, {cfg.draws} support sets of K train images per class are drawn "
        f"without replacement, each with a few-shot val set of min(K, {cfg.val_per_class}) val images per class; "
        "every method sees the same draws, so differences are paired. Random and zero-shot init share one recipe "
        f"(logits = logit scale x features x W + b, AdamW lr {cfg.linear.lr:g}, weight decay "
        f"{cfg.linear.weight_decay:g}, {cfg.epochs} full-batch epochs); they and LP++ (step sizes from its "
        "Lipschitz bounds) keep the earliest evaluation point (every "
        f"{cfg.eval_every} epochs, epoch 0 included) whose few-shot val accuracy is within one paired standard "
        "error of the best. CLAP (zero-shot-initialised cosine classifier with its class-wise pull to the text "
        f"weights, SGD lr {cfg.clap.lr:g}, cosine schedule) and ProLIP (fine-tunes CLIP's last visual projection "
        "on the cached pre-projection features with a pull lambda ||W - W0||^2 to the pretrained projection, "
        f"lambda = 1/K, Adam lr {cfg.prolip.lr:g}, cosine schedule; it starts exactly at zero-shot) are "
        "validation-free and keep the last epoch. "
        f"Tip-Adapter ({len(cfg.tip.alphas)} x {len(cfg.tip.betas)} grid) and GDA ({len(cfg.gda.alphas)} weights) "
        "are training-free and take the grid point with the best few-shot val accuracy. The few-shot val sets "
        "are extra labelled images; the test split only scores the chosen models."
    )
