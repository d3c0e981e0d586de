"""Report section: how much image information the frozen CLIP ResNet tower keeps, read through a VQ-VAE.

The seed report compared final training losses (1.7655 with the CLIP encoder vs 0.1265 for the tutorial's
VQ-VAE); those mix loss terms and resolutions. Here every model is scored on the same held-out images at
one resolution, beside controls that say what the numbers mean, once per training seed. The verdict is read
off the paired claims over seeds of results/summary.json.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from clipprobe.params import Params
from clipprobe.report import figures, plateau
from clipprobe.report.markdown import Summary, ci, tower_label

FIGURES = {
    "samples": "figures/vqvae_reconstructions.png",
    "random": "figures/vqvae_random_codes.png",
    "curves": "figures/vqvae_curves.png",
}
MODELS = {
    "plain": "plain VQ-VAE (trainable conv encoder)",
    "clip": "CLIP tower, pre-pool map",
    "random_tower": "control: random-weight tower",
    "pooled": "control: pooled CLIP embedding",
}
FLOORS = {"thumbnail": "floor: RGB thumbnail at the CLIP grid", "mean_colour": "floor: per-image mean colour"}
# The tutorial's stored notebook output (CIFAR-10, 32 px, 8x8 codes of 768): shared anchors, decoders §1.
TUTORIAL = {"mse": 0.0073, "psnr": 21.4, "perplexity": "641-671 (one batch)"}


def _curves_figure(summary: Summary, path: Path) -> None:
    """Val reconstruction error per epoch, one line per model and seed, each run to its plateau."""
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    plateau.draw(ax, summary.curves("vqvae", "runs"), MODELS, "val_recon", summary.context("vqvae"))
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    figures.integer_epochs(ax)
    ax.set_ylabel("validation reconstruction MSE (pixels in [0, 1])")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=3)
    ax.set_title("VQ-VAE validation loss, every seed over its whole schedule", fontsize=10)
    figures.save(fig, path)


def _verdict(summary: Summary) -> str:
    def says(a: str, b: str) -> str:
        return summary.claim("vqvae", f"{a}-{b}").words(_short(a), _short(b), unit="dB", scale=1.0)

    parts = [
        f"**Which encoder keeps more:** {says('plain', 'clip')}, at the same resolution and codebook size.",
        f"Pretraining against a random-weight tower: {says('clip', 'random_tower')}.",
        f"The attention pool: {says('clip', 'pooled')}.",
        f"Against an RGB thumbnail of the same grid: {says('clip', 'thumbnail')}.",
    ]
    below = [
        c.marked(MODELS[name])
        for name in MODELS
        if not ((c := summary.claim("vqvae", f"{name}-mean_colour")).distinguishable and c.delta > 0)
    ]
    parts.append(
        f"Not above the per-image mean colour: {', '.join(below)}; what it encodes does not reliably fix each image's average colour."
        if below
        else "Every model beats the per-image mean colour beyond noise."
    )
    collapsed = [MODELS[name] for name in MODELS if summary.mean("vqvae", f"{name}.codes_used") < 0.1]
    parts.append(
        f"Codebook collapse (under 10% of codes used): {', '.join(collapsed)}."
        if collapsed
        else "No codebook collapsed (every model uses at least 10% of its codes on test, on average)."
    )
    return " ".join(parts)


def _short(name: str) -> str:
    return {"plain": "the plain VQ-VAE", "clip": "the CLIP map", "random_tower": "the random tower",
            "pooled": "the pooled embedding", "thumbnail": "the thumbnail", "mean_colour": "the mean colour"}[name]  # fmt: skip


def render(params: Params, out_dir: Path) -> str:
    summary = Summary()
    context = summary.context("vqvae")
    first = params.seeds[0]
    samples = summary.arrays("vqvae_samples")
    cfg = params.vqvae
    figures.set_style()
    rows = {"ground truth": samples["ground_truth"]}
    rows.update({label: samples[name] for name, label in {**MODELS, **FLOORS}.items()})
    figures.image_grid(rows, f"VQ-VAE test reconstructions (seed {first})", out_dir / FIGURES["samples"])
    random_rows = {MODELS[name]: samples[f"{name}_random_codes"] for name in MODELS}
    figures.image_grid(random_rows, f"Decodings of random codes (seed {first})", out_dir / FIGURES["random"])
    _curves_figure(summary, out_dir / FIGURES["curves"])

    grid, size = int(context["clip_grid"]), int(context["image_size"])
    paper = params.data.vqvae == "cifar10"
    lines = [
        "## VQ-VAE: how much of the image the frozen CLIP tower keeps",
        "",
        f"On `{params.data.vqvae}` ({cfg.n_train} train / {cfg.n_val} val / {cfg.n_test} test images), VQ-VAEs "
        f"with the same EMA codebook ({cfg.codebook_size} codes of width {cfg.code_dim}, commitment "
        f"{cfg.commitment:g}, decay {cfg.decay:g}), the same decoder family ({cfg.hidden} channels) and recipe "
        f"(batch {cfg.batch_size}, Adam {cfg.lr:g}, {plateau.rule_words(params, 'val reconstruction error', cfg.max_epochs)}) "
        f"reconstruct {size}x{size} images. "
        f"The CLIP model reads the frozen ResNet tower of {tower_label(params)} (attention pool removed, BatchNorm "
        f"in eval mode) at {params.tower.size} px: a {grid}x{grid} map, one code per position, through a "
        "trainable 1x1 conv. Controls: the same tower with random weights (BatchNorm recalibrated), the pooled "
        "embedding spread over the grid by a per-position linear map, an RGB thumbnail at the grid size "
        "upsampled back, and each image's mean colour. Codebooks start from encodings of the first batch and "
        "dead codes are restarted (both unlike the tutorial). Scores are on the test split at one resolution, "
        "pixels in [0, 1], predictions clamped; PSNR from the pooled MSE; SSIM per image (torchmetrics), "
        "averaged; each a mean over seeds ± its 95% interval.",
        "",
        f"![VQ-VAE reconstructions]({FIGURES['samples']})",
        "",
        f"Test images (top row) and each model's reconstruction of them, from seed {first}.",
        "",
        "| model | codes per image | trainable params | epochs trained (kept), per seed | MSE | PSNR (dB) | SSIM "
        "| perplexity | codes used (%) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, label in MODELS.items():
        fig = lambda key, n=name: summary.figure("vqvae", f"{n}.{key}")  # noqa: E731
        grid_ = context["models"][name]["code_grid"]
        lines.append(
            f"| {label} | {grid_:.0f}x{grid_:.0f} | {context['models'][name]['trainable_params']:,.0f} | "
            f"{plateau.epochs_cell(context, name)} | "
            f"{ci(fig('mse'), 1, 4)} | **{ci(fig('psnr'), 1)}** | {ci(fig('ssim'), 1, 3)} | "
            f"{ci(fig('perplexity'), 1, 0)} | {ci(fig('codes_used'), 100, 0)} |"
        )
    for name, label in FLOORS.items():
        fig = lambda key, n=name: summary.figure("vqvae", f"{n}.{key}")  # noqa: E731
        lines.append(
            f"| {label} | - | 0 | - | {ci(fig('mse'), 1, 4)} | {ci(fig('psnr'), 1)} | {ci(fig('ssim'), 1, 3)} | - | - |"
        )
    lines += ["", _verdict(summary), ""]
    tutorial = (
        f"MSE {TUTORIAL['mse']} (PSNR {TUTORIAL['psnr']} dB), perplexity {TUTORIAL['perplexity']}"
        if paper
        else "CIFAR-10 only: none applies to this dataset"
    )
    totals = ", ".join(
        f"{MODELS[name]} {sum(v) / len(v):.4f}" for name, v in context["report_total_loss"].items()
    )
    lines += [
        "| reference (not measured here) | value | setting |",
        "|---|---|---|",
        "| seed report: final training loss, CLIP encoder vs tutorial VQ-VAE | 1.7655 vs 0.1265 | CIFAR-10; one "
        "mini-batch's recon + commitment + codebook terms: not comparable across encoders |",
        f"| tutorial VQ-VAE, last training batches (Jackson-Kang notebook output) | {tutorial} | CIFAR-10, 8x8 "
        "codes of 768 |",
        "",
        f"For parity with the seed report only, the kept epoch's summed training terms (recon + commitment + "
        f"codebook), averaged over seeds, are {totals}; they mix terms on different scales and should not be compared.",
        "",
        f"![VQ-VAE loss curves]({FIGURES['curves']})",
        "",
        "Validation reconstruction MSE after each epoch (log scale), every seed over its whole schedule "
        "(`*` in the table: not flat at the end); dots mark the epoch kept. "
        + plateau.rising_words(context, MODELS),
        "",
        f"![Decodings of random codes]({FIGURES['random']})",
        "",
        "Each decoder fed codes drawn uniformly from its codebook, one row per model: what the codebook can "
        "express without an encoder choosing the codes (a VQ-VAE with a learnt prior would sample far better).",
    ]
    return "\n".join(lines) + "\n"
