"""Report section: zero-shot (one prompt, ensemble) and the full linear probe, beside labelled references."""

from __future__ import annotations

import json
from pathlib import Path

from clipprobe import paths
from clipprobe.params import Params
from clipprobe.report import figures
from clipprobe.report.markdown import lookup, pct, profile_name
from clipprobe.report.references import PROBE_REFERENCES, references_apply

FIGURE = "figures/probes.png"
ROWS = {
    "zeroshot.single": "zero-shot (1 prompt)",
    "zeroshot.ensemble": "zero-shot (ensemble)",
    "linear_probe": "linear probe",
}


def render(params: Params, out_dir: Path) -> str:
    metrics = json.loads(paths.PROBE.read_text())
    refs_apply = references_apply(params.data.classification, params.clip.arch, params.clip.pretrained)
    figures.probe_bars(
        {label: lookup(metrics, key)["acc"] for key, label in ROWS.items()},
        metrics["chance"],
        {ROWS[key]: refs for key, refs in PROBE_REFERENCES.items()} if refs_apply else {},
        f"Probes: {profile_name(params)}",
        out_dir / FIGURE,
    )
    embed, probe = params.embed, params.probe
    how_c = "chosen by the CLIP paper's search on val, refit on train+val" if probe.C == "auto" else "fixed"
    lines = [
        "## Zero-shot and linear probe",
        "",
        f"Frozen `{params.clip.arch}` image features of `{params.data.classification}` "
        f"({metrics['n_classes']:.0f} classes). Zero-shot: cosine similarity to the class text embeddings, one "
        f'prompt ("a photo of a {{}}.") and the `{embed.ensemble}` template ensemble (mean of normalised template '
        f"embeddings, renormalised). Linear probe: multinomial logistic regression with sklearn's objective, "
        f"solved by full-batch L-BFGS on the `{probe.features}` features, C = {metrics['linear_probe']['C']:.4g} "
        f"({how_c}). All accuracies on the test split, on which nothing is selected.",
        "",
        f"![Probe accuracies]({FIGURE})",
        "",
        "| method | measured top-1 (%) | reference top-1 (%) | reference source | reference setting |",
        "|---|---|---|---|---|",
    ]
    for key, label in ROWS.items():
        refs = PROBE_REFERENCES.get(key, [])
        cells = [
            "<br>".join(pct(r.value) for r in refs),
            "<br>".join(r.source for r in refs),
            "<br>".join(r.setting for r in refs),
        ]
        lines.append(f"| {label} | **{pct(lookup(metrics, key)['acc'])}** | {' | '.join(cells)} |")
    lines.append(f"| chance | {pct(metrics['chance'])} | | | |")
    if not refs_apply:
        lines += [
            "",
            "The reference columns were measured on CIFAR-100 with ViT-B/32 (openai). This run uses another dataset "
            "or model, so they are context, not a target: run the paper preset to compare like with like.",
        ]
    return "\n".join(lines) + "\n"
