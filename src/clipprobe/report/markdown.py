"""Pieces every report section shares: the profile's name, metric lookup, the report's header."""

from __future__ import annotations

from clipprobe.params import Params
from clipprobe.report.references import references_apply


def lookup(metrics: dict, key: str) -> dict:
    """The metrics entry at a dotted key such as `zeroshot.single`."""
    for part in key.split("."):
        metrics = metrics[part]
    return metrics


def profile_name(params: Params) -> str:
    """How figures and tables name the profile they come from."""
    data, clip = params.data.classification, params.clip
    if data == "shapes" and clip.pretrained == "scratch":
        return f"embedded default (shapes world, {clip.arch} pretrained from scratch)"
    if references_apply(data, clip.arch, clip.pretrained):
        return "paper preset (CIFAR-100, ViT-B-32 openai)"
    return f"custom ({data}, {clip.arch} / {clip.pretrained})"


def tower_label(params: Params) -> str:
    """Markdown name of the CLIP whose tower counting and the decoders read: `tower.arch`, or the clip stage's."""
    if params.tower.arch:
        return f"`{params.tower.arch}` ({params.tower.pretrained})"
    return f"`{params.clip.arch}` ({params.clip.pretrained})"


def pct(value: float) -> str:
    """An accuracy in [0, 1] as a percentage with two decimals."""
    return f"{100 * value:.2f}"


def render_report(params: Params, sections: list[str]) -> str:
    header = (
        "# clipprobe report\n\n"
        f"Profile: **{profile_name(params)}**. Regenerate with `dvc repro`; every number below is read from "
        "`metrics/*.json` and `plots/*.csv` of the same run. Measured values are in bold; numbers from "
        "elsewhere (the seed report, the CLIP paper, CLIP_benchmark) sit in separate, labelled reference columns.\n"
    )
    return "\n".join([header, *sections])
