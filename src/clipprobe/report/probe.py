"""Report section: zero-shot (one prompt, ensemble) and the full linear probe, beside labelled references."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from clipprobe.params import Params
from clipprobe.report import figures
from clipprobe.report.markdown import Summary, ci, pct
from clipprobe.report.references import CIFAR100_VITB32, PROBE_REFERENCES, references_apply

FIGURE = "figures/probes.png"
SEARCH_FIGURE = "figures/probe_c_search.png"
ROWS = {
    "zeroshot_report": "zero-shot, the report's prompt",
    "zeroshot_single": "zero-shot, 1 clean prompt",
    "zeroshot_ensemble": "zero-shot, ensemble",
    "linear_probe": "linear probe",
}


def _c_search(params: Params, out_dir: Path) -> list[str]:
    """The C search's validation curves (one per seed), when C was searched."""
    if params.probe.C != "auto":
        return []
    tables = Summary().data["probe"]["curves"]["c_search"]
    searches = {int(seed): pd.DataFrame(table) for seed, table in tables.items()}
    figures.c_search(searches, out_dir / SEARCH_FIGURE)
    return [
        f"![Linear-probe C search]({SEARCH_FIGURE})",
        "",
        "Validation accuracy of each C the CLIP paper's search tried, one line per seed; the probe keeps the "
        "best C of its seed and is refit on train + val.",
        "",
    ]


def render(params: Params, out_dir: Path) -> str:
    summary = Summary()
    context = summary.context("probe")
    refs_apply = references_apply(params.data.classification, params.clip.arch, params.clip.pretrained)
    measured = {label: summary.figure("probe", key) for key, label in ROWS.items()}
    figures.probe_bars(
        {label: (fig["mean"], fig["ci95"]) for label, fig in measured.items()},
        context["chance"],
        {ROWS[key]: refs for key, refs in PROBE_REFERENCES.items()} if refs_apply else {},
        out_dir / FIGURE,
    )
    embed, probe = params.embed, params.probe
    Cs = sorted(set(context["C"]))
    how_c = "chosen by the CLIP paper's search on val, refit on train+val" if probe.C == "auto" else "fixed"
    lines = [
        "## Zero-shot and linear probe",
        "",
        f"Frozen `{params.clip.arch}` image features of `{params.data.classification}` "
        f"({context['n_classes']:.0f} classes). Zero-shot: cosine similarity to the class text embeddings of "
        "three prompt conventions: the seed report's exact prompt (`a photo of a {c}`, the data set's raw class "
        "names, no full stop), the CLIP repo's single prompt (`a photo of a {c}.`, cleaned names) and the "
        f"`{embed.ensemble}` template ensemble (cleaned names; mean of normalised template embeddings, "
        "renormalised). Linear probe: multinomial logistic regression with sklearn's objective, "
        f"solved by full-batch L-BFGS on the `{probe.features}` features, C = {', '.join(f'{c:.4g}' for c in Cs)} "
        f"({how_c}). All scores on the test split, on which nothing is selected.",
        "",
        f"![Probe accuracies]({FIGURE})",
        "",
        "Test top-1 accuracy of each readout, with its 95% interval over seeds and test images (error bars); "
        "black markers are the reference numbers of the table below, drawn only for their own setting.",
        "",
        "Test top-1 (%) of each readout, mean ± 95% interval; beside it the published numbers of the same "
        f"convention (not measured here; {CIFAR100_VITB32}):",
        "",
        "| readout | top-1 (%) | reference top-1 (%) |",
        "|---|---|---|",
    ]
    for key, label in ROWS.items():
        refs = "; ".join(f"{pct(r.value)}, {r.source}" for r in PROBE_REFERENCES[key]) or "–"
        lines.append(f"| {label} | **{ci(measured[label])}** | {refs} |")
    lines += [
        f"| chance | {pct(context['chance'])} | |",
        "",
        "| readout | top-5 (%) | mean per-class recall (%) |",
    ]
    lines.append("|---|---|---|")
    for key, label in ROWS.items():
        top5, recall = (summary.figure("probe", f"{key}.{m}") for m in ("acc5", "mean_per_class_recall"))
        lines.append(f"| {label} | {ci(top5)} | {ci(recall)} |")
    lines += ["", *_c_search(params, out_dir)]
    if not refs_apply:
        lines += [
            "",
            "The references were measured on CIFAR-100 with ViT-B/32 (openai). This run uses another dataset "
            "or model, so they are context, not a target: run the paper preset to compare like with like.",
        ]
    gain = summary.claim("probe", "linear_probe-zeroshot_ensemble")
    lines += ["", f"Labels against text: {gain.words('the linear probe', 'the zero-shot ensemble')}."]
    return "\n".join(lines) + "\n"
