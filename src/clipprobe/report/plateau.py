"""What the report says about how long each decoder trained: the plateau rule in words, every seed's curve
to its plateau, epochs trained and kept per seed, and the models the cap stopped short."""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from clipprobe.params import Params

SEED_STYLES = ("-", "--", ":", "-.")


def rule_words(params: Params, score: str, max_epochs: int) -> str:
    """The stopping rule, as the sections state it."""
    rule = params.plateau
    return (
        f"trained until {score} stops improving: the learning rate warms up linearly over the first epoch, "
        f"then follows a cosine towards zero over {max_epochs} epochs; after each epoch, a run is flat when "
        f"the best {score} of its last fifth of epochs (at least {rule.patience}) beats the best before by "
        f"less than {100 * rule.tolerance:g}%, and training stops at the first flat stretch in the second half "
        f"of the schedule (cap: "
        f"{max_epochs} epochs). The weights kept are those of the best val epoch"
    )


def draw(ax: plt.Axes, curves: pd.DataFrame, labels: Mapping[str, str], value: str, context: dict) -> None:
    """One line per model (colour) and seed (line style) of `value` against epoch, a dot on each kept epoch."""
    for colour, (name, label) in zip(sns.color_palette(n_colors=len(labels)), labels.items(), strict=True):
        runs = curves[curves["model"] == name]
        for i, (_seed, run) in enumerate(runs.groupby("seed", sort=True)):
            style = SEED_STYLES[i % len(SEED_STYLES)]
            ax.plot(
                run["epoch"], run[value], color=colour, linestyle=style, label=label if i == 0 else "_seed"
            )
            kept = context["best_epoch"][name][i]
            ax.plot(kept, run[value][run["epoch"] == kept].iloc[0], marker="o", color=colour, label="_kept")
    seeds = sorted(curves["seed"].unique())
    for i, seed in enumerate(seeds):
        ax.plot([], [], color="grey", linestyle=SEED_STYLES[i % len(SEED_STYLES)], label=f"seed {seed}")
    ax.plot([], [], marker="o", color="grey", linestyle="none", label="epoch kept")


def epochs_cell(context: dict, name: str) -> str:
    """'31 (24), 27 (20), …': per seed, epochs trained and (the epoch kept); '*' marks a run the cap stopped."""
    runs = zip(context["epochs"][name], context["best_epoch"][name], context["capped"][name], strict=True)
    return ", ".join(f"{e:.0f} ({b:.0f}){'*' if c else ''}" for e, b, c in runs)


def capped_words(context: dict, labels: Mapping[str, str]) -> str:
    """A sentence naming the models that the cap stopped before their plateau (empty when none)."""
    short = [f"{label} ({sum(map(bool, context['capped'][name]))} of {len(context['capped'][name])} seeds)"
             for name, label in labels.items() if any(context["capped"][name])]  # fmt: skip
    if not short:
        return "Every model reached its plateau before the cap, in every seed."
    return f"**Stopped by the cap before its plateau** (its score is a lower bound): {', '.join(short)}."
