"""Pieces every report section shares: the profile's name, figures over seeds, claims, the report's header."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd

from clipprobe import paths
from clipprobe.contracts import load_arrays, read_stability, read_summary
from clipprobe.params import Params
from clipprobe.report.claims import Claim, stability_words
from clipprobe.report.references import references_apply

PROFILES = {"default": "embedded default", "paper": "paper preset"}


class Summary:
    """results/summary.json, read by every section: `figure(exp, name)` and `claim(exp, name)`."""

    def __init__(self) -> None:
        self.data = read_summary()
        self.stability = read_stability()
        self.seeds = self.data["seeds"]

    def figure(self, experiment: str, name: str) -> dict:
        return self.data[experiment]["figures"][name]

    def mean(self, experiment: str, name: str) -> float:
        return self.figure(experiment, name)["mean"]

    def claim(self, experiment: str, name: str) -> Claim:
        claim = Claim(**self.data[experiment]["claims"][name])
        return replace(
            claim, stability=stability_words(self.stability, f"{experiment}/{name}", claim.verdict())
        )

    def context(self, experiment: str) -> dict:
        return self.data[experiment]["context"]

    def curves(self, experiment: str, name: str = "epochs") -> pd.DataFrame:
        """A table of the summary's curves (`name` "epochs": means over seeds, one row per epoch; "runs": every
        seed's own curve, long: seed, model, epoch, ...)."""
        return pd.DataFrame(self.data[experiment]["curves"][name])

    @staticmethod
    def arrays(name: str) -> dict:
        """results/<name>/: the first seed's sample images (`vqvae_samples`, `segment_overlays`)."""
        return load_arrays(paths.RESULTS / name, "summary")


def profile_name(params: Params) -> str:
    """How tables and the report's header name the profile they come from."""
    data, clip = params.data.classification, params.clip
    name = PROFILES.get(params.profile, f"profile `{params.profile}`")
    if data == "shapes" and clip.pretrained == "scratch":
        return f"{name} (shapes world, {clip.arch} pretrained from scratch)"
    if references_apply(data, clip.arch, clip.pretrained):
        return f"{name} (CIFAR-100, ViT-B-32 openai)"
    return f"{name} ({data}, {clip.arch} / {clip.pretrained})"


def tower_label(params: Params) -> str:
    """Markdown name of the CLIP whose tower counting and the decoders read: `tower.arch`, or the clip stage's."""
    if params.tower.arch:
        return f"`{params.tower.arch}` ({params.tower.pretrained})"
    return f"`{params.clip.arch}` ({params.clip.pretrained})"


def pct(value: float) -> str:
    """An accuracy in [0, 1] as a percentage with two decimals."""
    return f"{100 * value:.2f}"


def ci(figure: dict, scale: float = 100.0, digits: int = 2) -> str:
    """'45.65 ± 1.23' (mean ± 95% half-width; the mean alone when there is no interval)."""
    mean = f"{scale * figure['mean']:.{digits}f}"
    return mean if figure["ci95"] is None else f"{mean} ± {scale * figure['ci95']:.{digits}f}"


def render_report(params: Params, sections: list[str]) -> str:
    seeds = params.seeds
    over = (
        f"a mean over the {len(seeds)} training seeds ({', '.join(map(str, seeds))}) ± its 95% interval"
        if len(seeds) > 1
        else f"from the single training seed {seeds[0]} (intervals over test images and draws only)"
    )
    header = (
        "# clipprobe report\n\n"
        f"Profile: **{profile_name(params)}**. Regenerate with `dvc repro`; every number below is read from "
        f"`results/summary.json` and `runs/` of the same run. Every figure is {over}; accuracies' intervals "
        "also count the finite test split. A comparison names a winner only when its paired 95% interval "
        "excludes zero, and says in how many seeds it holds; otherwise the two are *not distinguishable*. "
        "Numbers from elsewhere (the seed report, the CLIP paper, CLIP_benchmark) sit in separate, labelled "
        "reference columns.\n"
    )
    return "\n".join([header, *sections])
