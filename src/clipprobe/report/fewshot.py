"""Report section: the few-shot sweep (accuracy vs shots per method, and the 1-shot accuracy-vs-epoch curves)."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from clipprobe import paths
from clipprobe.params import Params
from clipprobe.probes.fewshot_registry import METHODS
from clipprobe.report import figures
from clipprobe.report.markdown import pct, profile_name

ACC_FIGURE = "figures/fewshot_acc.png"
CURVES_FIGURE = "figures/fewshot_curves.png"
LABELS = {name: info.label for name, info in METHODS.items()}
CURVE_METHODS = ("random", "zeroshot")


def _accuracy_figure(acc: pd.DataFrame, metrics: dict, title: str, path: Path) -> None:
    """Mean test accuracy vs shots (log x), one line per method with its 95% band; zero-shot and the nearest
    class mean of all train images as horizontal lines."""
    fig, ax = plt.subplots(figsize=(7, 4.4))
    methods = [c for c in acc.columns if c in LABELS]
    for color, name in zip(sns.color_palette(n_colors=len(methods)), methods, strict=True):
        ci = [metrics[f"shots_{k}"][name]["ci95"] for k in acc["shots"]]
        mean = 100 * acc[name]
        ax.plot(acc["shots"], mean, marker="o", color=color, label=LABELS[name])
        ax.fill_between(
            acc["shots"], mean - 100 * pd.Series(ci), mean + 100 * pd.Series(ci), color=color, alpha=0.2
        )
    ax.axhline(100 * metrics["zeroshot_acc"], color="black", linestyle="--", label="zero-shot classifier")
    ax.axhline(
        100 * metrics["class_mean_acc"],
        color="grey",
        linestyle=":",
        label="nearest class mean of all train images",
    )
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(acc["shots"]), [str(k) for k in acc["shots"]])
    ax.minorticks_off()
    ax.set_xlabel("labelled images per class (shots)")
    ax.set_ylabel("test top-1 accuracy (%)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    figures.save(fig, path)


def _curves_figure(curves: pd.DataFrame, zeroshot_acc: float, title: str, path: Path) -> None:
    """Test (solid) and few-shot val (dashed) accuracy vs epoch for the random and zero-shot inits."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    methods = [m for m in CURVE_METHODS if f"{m}_test" in curves]
    for color, name in zip(sns.color_palette(n_colors=len(methods)), methods, strict=True):
        ax.plot(curves["epoch"], 100 * curves[f"{name}_test"], color=color, label=f"{LABELS[name]}: test")
        ax.plot(
            curves["epoch"],
            100 * curves[f"{name}_val"],
            color=color,
            linestyle="--",
            label=f"{LABELS[name]}: few-shot val",
        )
    ax.axhline(100 * zeroshot_acc, color="black", linestyle=":", label="zero-shot classifier (test)")
    ax.set_xlabel("epoch (full-batch steps)")
    ax.set_ylabel("top-1 accuracy (%), mean over draws")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    figures.save(fig, path)


def _table(metrics: dict, shots: list[int], methods: list[str]) -> list[str]:
    lines = [
        "| shots | " + " | ".join(LABELS[m] for m in methods) + " |",
        "|---|" + "---|" * len(methods),
    ]
    for k in shots:
        row = metrics[f"shots_{k}"]
        best = max(methods, key=lambda m: row[m]["acc"])
        cells = []
        for m in methods:
            delta = f"{100 * row[m]['delta_zeroshot']:+.2f} ± {pct(row[m]['delta_zeroshot_ci95'])}"
            cell = f"{pct(row[m]['acc'])} ± {pct(row[m]['ci95'])} ({delta})"
            cells.append(f"**{cell}**" if m == best else cell)
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    return lines


def _findings(metrics: dict, first: int) -> str:
    """The report's findings at the smallest shot count, as measured (sentences computed, never asserted)."""
    row, zs = metrics[f"shots_{first}"], metrics["zeroshot_acc"]
    shot = f"{first} shot" + ("" if first == 1 else "s")
    said = []
    if "random" in row:
        verb = "below" if row["random"]["acc"] < zs else "not below"
        said.append(
            f"At {shot} per class the random init reaches {pct(row['random']['acc'])}%, {verb} zero-shot"
        )
    if "zeroshot" in row:
        init = row["zeroshot"]
        said.append(
            f"the zero-shot init starts at {pct(init['acc_init'])}% (the zero-shot classifier itself), falls to "
            f"{pct(init['acc_last'])}% by its last epoch, and keeps {pct(init['acc'])}% at the epoch chosen on "
            "few-shot val"
        )
    others = {m: v["acc"] for m, v in row.items() if m not in ("random", "zeroshot")}
    if others:
        best = max(others, key=others.get)
        delta, half = row[best]["delta_zeroshot"], row[best]["delta_zeroshot_ci95"]
        said.append(
            f"the best other method is {LABELS[best]} at {pct(others[best])}% ({100 * delta:+.2f} ± "
            f"{pct(half)} points against zero-shot: {_versus_zeroshot(delta, half)})"
        )
    return "; ".join(said) + "." if said else ""


def _versus_zeroshot(delta: float, half: float) -> str:
    if delta == half == 0:
        return "the zero-shot classifier's own predictions on every draw"
    if delta - half > 0:
        return "above it beyond the noise of draws and test images"
    if delta + half < 0:
        return "below it beyond the noise of draws and test images"
    return "within the noise of draws and test images"


def _prototype_paragraph(metrics: dict, linear_probe_acc: float | None) -> str:
    """Why labels add little or much here: the class means of all train images against the text weights."""
    zs, class_mean = metrics["zeroshot_acc"], metrics["class_mean_acc"]
    gap = 100 * (class_mean - zs)
    verdict = f"a {'better' if gap > 0 else 'worse'} prototype than the class names by {abs(gap):.2f} points"
    probe = (
        ""
        if linear_probe_acc is None
        else f" Trained discriminatively on all of them, the full linear probe reaches {pct(linear_probe_acc)}% "
        f"({100 * (linear_probe_acc - zs):+.2f} points against zero-shot)."
    )
    return (
        "How much a labelled image can add: the nearest-class-mean classifier on the mean feature of *all* train "
        f"images of each class scores {pct(class_mean)}% against zero-shot's {pct(zs)}%, {verdict}. A handful "
        "of images per class gives a noisier prototype than that, and Tip-Adapter's cache, GDA's class means and "
        f"LP++'s initialisation all start from such few-shot prototypes.{probe}"
    )


def render(params: Params, out_dir: Path) -> str:
    metrics = json.loads(paths.FEWSHOT.read_text())
    acc = pd.read_csv(paths.FEWSHOT_ACC)
    curves = pd.read_csv(paths.FEWSHOT_CURVES)
    profile = profile_name(params)
    shots = [int(k) for k in acc["shots"]]
    methods = [c for c in acc.columns if c in LABELS]
    first = shots[0]
    _accuracy_figure(acc, metrics, f"Few-shot accuracy vs shots: {profile}", out_dir / ACC_FIGURE)
    lines = [
        "## Few-shot: random vs zero-shot initialisation, and stronger methods",
        "",
        _run_paragraph(params),
        "",
        f"![Few-shot accuracy vs shots]({ACC_FIGURE})",
        "",
    ]
    first_curves = curves[curves["shots"] == first]
    if not first_curves.empty and any(f"{m}_test" in curves for m in CURVE_METHODS):
        title = f"{first}-shot accuracy vs epoch: {profile}"
        _curves_figure(first_curves, metrics["zeroshot_acc"], title, out_dir / CURVES_FIGURE)
        lines += [f"![{first}-shot accuracy vs epoch]({CURVES_FIGURE})", ""]
    lines += [
        f"Test top-1 (%), mean ± 95% interval over {params.fewshot.draws} support-set draws; in brackets the "
        f"paired difference to the zero-shot classifier ({pct(metrics['zeroshot_acc'])}%) on the same test "
        "images, ± its 95% interval over draws *and* test images (the test split is a finite sample too); best "
        f"per row in bold; chance {pct(metrics['chance'])}%.",
        "",
        *_table(metrics, shots, methods),
        "",
        _findings(metrics, first),
        "",
        _prototype_paragraph(metrics, _linear_probe_acc()),
    ]
    return "\n".join(lines) + "\n"


def _linear_probe_acc() -> float | None:
    """The full linear probe's test accuracy from the probe stage, when it ran."""
    if not paths.PROBE.exists():
        return None
    return json.loads(paths.PROBE.read_text())["linear_probe"]["acc"]


def _run_paragraph(params: Params) -> str:
    cfg = params.fewshot
    return (
        f"Frozen `{params.clip.arch}` features of `{params.data.classification}`, L2-normalised. For each shot count "
        f"K in {', '.join(map(str, params.shots))}, {cfg.draws} support sets of K train images per class are drawn "
        f"without replacement, each with a few-shot val set of min(K, {cfg.val_per_class}) val images per class; "
        "every method sees the same draws, so differences are paired. Random and zero-shot init share one recipe "
        f"(logits = logit scale x features x W + b, AdamW lr {cfg.linear.lr:g}, weight decay "
        f"{cfg.linear.weight_decay:g}, {cfg.epochs} full-batch epochs); they and LP++ (step sizes from its "
        "Lipschitz bounds) keep the earliest evaluation point (every "
        f"{cfg.eval_every} epochs, epoch 0 included) whose few-shot val accuracy is within one paired standard "
        "error of the best. CLAP (zero-shot-initialised cosine classifier with its class-wise pull to the text "
        f"weights, SGD lr {cfg.clap.lr:g}, cosine schedule) is validation-free and keeps the last epoch. "
        f"Tip-Adapter ({len(cfg.tip.alphas)} x {len(cfg.tip.betas)} grid) and GDA ({len(cfg.gda.alphas)} weights) "
        "are training-free and take the grid point with the best few-shot val accuracy. The few-shot val sets "
        "are extra labelled images; the test split only scores the chosen models."
    )
