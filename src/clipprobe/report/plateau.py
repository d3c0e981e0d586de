"""What the report says about how each decoder trained: the plateau rule in words, every seed's curve,
epochs trained and kept per seed, and the models still rising at the end of their schedule."""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from clipprobe.params import Params

SEED_STYLES = ("-", "--", ":", "-.")


def rule_words(params: Params, score: str, max_epochs: int) -> str:
    """The training rule, as the sections state it."""
    return (
        f"trained for the whole of one schedule: the learning rate warms up linearly over the first epoch, "
        f"then follows a cosine towards zero over {max_epochs} epochs, with no early stop. A run is flat when "
        f"the best {score} of its last fifth of epochs beats the best before by less than "
        f"{100 * params.plateau.tolerance:g}%. The weights kept are those of the best val epoch"
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
    """'60 (54), 60 (47), …': per seed, epochs trained and (the epoch kept); '*' marks a run not flat."""
    runs = zip(context["epochs"][name], context["best_epoch"][name], context["rising"][name], strict=True)
    return ", ".join(f"{e:.0f} ({b:.0f}){'*' if c else ''}" for e, b, c in runs)


def rising_words(context: dict, labels: Mapping[str, str]) -> str:
    """A sentence naming the models still rising at the end of their schedule."""
    short = [f"{label} ({sum(map(bool, context['rising'][name]))} of {len(context['rising'][name])} seeds)"
             for name, label in labels.items() if any(context["rising"][name])]  # fmt: skip
    if not short:
        return "Every model ends flat over its last fifth of epochs, in every seed."
    return f"**Still rising at the end of its schedule** (its score is a lower bound): {', '.join(short)}."
