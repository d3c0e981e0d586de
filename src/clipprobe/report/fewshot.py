"""Report section: the few-shot sweep (accuracy vs shots per method, and the accuracy-vs-epoch curves at the
smallest shot count), every comparison read off the paired claims over seeds."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from clipprobe.contracts import read_fewshot_before
from clipprobe.params import Params
from clipprobe.report import figures
from clipprobe.report.markdown import Summary, ci, pct
from clipprobe.stats import t_interval

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
    "random_swept": "random init, step size on val",
    "zeroshot_swept": "zero-shot init, step size on val",
}
HEADS = {"random": "the random init", "zeroshot": "the zero-shot init"}  # the report's pair, by their words
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


def _readings(summary: Summary, k: str, name: str) -> str:
    """A trained head's two readings: at the epoch chosen on few-shot val and at its last epoch."""
    chosen, last = summary.figure("fewshot", f"{k}_{name}"), summary.figure("fewshot", f"{k}_{name}.acc_last")
    return f"{ci(chosen)}% at the epoch chosen on few-shot val, {ci(last)}% at its last epoch"


def _findings(summary: Summary, first: int, methods: list[str]) -> str:
    """The report's few-shot findings at the smallest shot count, worded by their claims."""
    k = f"{first}shot"
    said = []
    if "random" in methods:
        said.append(summary.claim("fewshot", f"{k}_random-zeroshot").words("the random init", "zero-shot"))
    if "zeroshot" in methods:
        init = summary.figure("fewshot", f"{k}_zeroshot.acc_init")
        said.append(
            f"the zero-shot init starts at {ci(init)}% (the zero-shot classifier itself) and keeps "
            + _readings(summary, k, "zeroshot")
        )
        if "random" in methods:
            said.append(f"the random init keeps {_readings(summary, k, 'random')}")
            said.append(
                summary.claim("fewshot", f"{k}_zeroshot-random").words(HEADS["zeroshot"], HEADS["random"])
            )
    for head, words in HEADS.items():
        if f"{head}_swept" in methods:
            said.append(
                f"at the step size chosen on few-shot val, {words} keeps {_readings(summary, k, f'{head}_swept')}"
            )
    if {"random_swept", "zeroshot_swept"} <= set(methods):
        said.append(
            summary.claim("fewshot", f"{k}_zeroshot_swept-random_swept").words(
                f"{HEADS['zeroshot']} at its swept step size", f"{HEADS['random']} at its own"
            )
        )
    for name in methods:
        if name not in ("random", "zeroshot", "random_swept", "zeroshot_swept"):
            said.append(summary.claim("fewshot", f"{k}_{name}-zeroshot").words(LABELS[name], "zero-shot"))
    shot = f"{first} shot" + ("" if first == 1 else "s")
    return f"At {shot} per class: " + "; ".join(said) + "." if said else ""


def _protocol_table(summary: Summary, before: dict, shots: list[int], methods: list[str]) -> list[str]:
    """Each method's accuracy at the fewest and most shots before and after the protocol change
    (docs/fewshot_before.json), the difference paired seed by seed; empty when the seeds differ."""
    if not before or before["seeds"] != summary.seeds:
        return []
    ends = sorted({shots[0], shots[-1]})
    head = (
        "| method | "
        + " | ".join(f"{k} shot{'s' if k > 1 else ''}: before → after (change)" for k in ends)
        + " |"
    )
    rows = [head, "|---|" + "---|" * len(ends)]
    for name in methods:
        cells = []
        for k in ends:
            old = before["per_seed"].get(f"{k}shot_{name}")
            if old is None:
                cells.append("new")
                continue
            new = summary.figure("fewshot", f"{k}shot_{name}")["per_seed"]
            change, half = t_interval(np.subtract(new, old))
            cell = f"{100 * np.mean(old):.2f} → {100 * np.mean(new):.2f} ({100 * change:+.2f} ± {100 * (half or 0):.2f})"
            cells.append(f"**{cell}**" if half is not None and abs(change) > half else cell)
        rows.append(f"| {LABELS[name]} | " + " | ".join(cells) + " |")
    return [
        f"What the protocols changed. Before: {before['protocol']}. Test top-1 (%), mean over seeds; the change "
        "is paired seed by seed (± 95% interval over seeds; bold where it excludes zero):",
        "",
        *rows,
        "",
    ]


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
        *_protocol_table(summary, read_fewshot_before(), shots, methods),
        _prototype_paragraph(summary),
    ]
    return "\n".join(lines) + "\n"


def _run_paragraph(params: Params) -> str:
    cfg, shots, views = params.fewshot, params.shots, params.embed.views
    each = f"each shot count K in {', '.join(map(str, shots))}" if len(shots) > 1 else f"K = {shots[0]} shots"
    betas, alphas = cfg.tip.beta_steps, cfg.tip.alpha_steps
    return (
        f"Frozen `{params.clip.arch}` features of `{params.data.classification}`, L2-normalised, for each training "
        f"seed's CLIP. For {each}, {cfg.draws} support sets of K train images per class are drawn "
        f"without replacement, each with a few-shot val set of min(K, {cfg.val_per_class}) val images per class; "
        "every method sees the same draws, so differences are paired. The embed stage also caches "
        f"{views} augmented views of every train image (random resized crop of 50-100% of the area, then a "
        "horizontal flip), and each method below uses the views its official code uses, up to that number. "
        "Random and zero-shot init share the report's recipe (logits = logit scale x features x W + b, AdamW lr "
        f"{cfg.linear.lr:g}, weight decay {cfg.linear.weight_decay:g}, {cfg.epochs} full-batch epochs on the clean "
        f"features); both keep the evaluation point (every {cfg.eval_every} epochs, epoch 0 included) with the "
        "best few-shot val accuracy, ties to the later, and their last epoch is reported beside it. The same two "
        f"heads also run at each step size of {', '.join(f'{lr:g}' for lr in cfg.linear.lrs)}, the step size and "
        "epoch chosen per draw on few-shot val (ties: the smaller step, the later epoch). "
        f"CLAP (zero-shot-initialised cosine classifier with its class-wise pull to the text weights; SGD lr "
        f"{cfg.clap.lr:g}, minibatches of {cfg.clap.batch_size}, one warm-up epoch at {cfg.clap.warmup_lr:g}, "
        f"then a cosine; {cfg.clap.views} views, one per epoch) and ProLIP (fine-tunes CLIP's last visual "
        "projection on the cached pre-projection features with a pull lambda ||W - W0||^2 to the pretrained "
        f"projection, lambda = 1/K, Adam lr {cfg.prolip.lr:g}, cosine schedule, {cfg.prolip.views} views, one "
        "per epoch; it starts exactly at zero-shot) are validation-free and keep the last epoch. LP++ (step "
        f"sizes from its Lipschitz bounds; {cfg.lpp.views} augmented view; its blend weights step every "
        f"{cfg.lpp.alpha_every} epochs by their accumulated gradient) keeps its best epoch on min(K, "
        f"{cfg.lpp.val_per_class}) val images per class, ties to the later. Tip-Adapter (cache keys averaged over "
        f"{cfg.tip.views} views; the official {betas} x {alphas} grid of beta and alpha) and GDA (means and "
        f"covariance over {cfg.gda.views} views; {len(cfg.gda.alphas)} weights) are training-free and take the "
        "first grid point with the best few-shot val accuracy. Deliberate differences from the official code: "
        "every method selects on the same small few-shot val set (the official ones use a dataset's val "
        "split), the views are crops of the embedded world's 64-pixel images, and a method whose official "
        "number of views exceeds the cache uses the cache's (each epoch then cycles through them). The few-shot "
        "val sets are extra labelled images; the test split only scores the chosen models."
    )
