"""Report section: the CLIP weights, and the pretraining curves when the CLIP was trained from scratch."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from clipprobe.params import Params
from clipprobe.report import figures
from clipprobe.report.markdown import Summary

FIGURE = "figures/clip_pretrain.png"


def render(params: Params, out_dir: Path) -> str:
    tables = Summary().data["pretrain"]["curves"]
    curves = {int(seed): pd.DataFrame(table) for seed, table in tables.items()}
    if all(curve.empty for curve in curves.values()):
        return (
            "## CLIP weights\n\n"
            f"`{params.clip.arch}` with pretrained weights `{params.clip.pretrained}`: nothing was trained, so "
            "every seed reads the same CLIP; seeds vary the heads and decoders trained on it.\n"
        )
    figures.pretrain_curve(curves, out_dir / FIGURE)
    cfg, shapes = params.clip.pretrain, params.data.shapes
    mix = shapes.captions
    first = ", ".join(f"{curve['loss'].iloc[0]:.3f}" for curve in curves.values())
    last = ", ".join(f"{curve['loss'].iloc[-1]:.3f}" for curve in curves.values())
    scale = ", ".join(f"{curve['logit_scale'].iloc[-1]:.1f}" for curve in curves.values())
    return (
        "## CLIP pretraining from scratch\n\n"
        f"`{params.clip.arch}` trained with CLIP's symmetric contrastive loss on {shapes.n_pretrain} captioned "
        f"{shapes.image_size} px shapes-world images (captions only, never labels): {cfg.steps} AdamW steps, "
        f"batch {cfg.batch_size}, peak lr {cfg.lr:g}, {cfg.warmup_steps} warm-up steps then cosine, once per "
        f"training seed (the seed fixes the init and the batch order). Caption mix: {mix.free:.0%} free-form, "
        f"{mix.class_like:.0%} class-like, {mix.count_only:.0%} count-only.\n\n"
        f"![CLIP pretraining loss]({FIGURE})\n\n"
        "The contrastive loss of each step's batch (solid) and the learnt logit scale (dashed), one colour per "
        f"seed: loss {first} at step 1 and {last} at step {cfg.steps}; final logit scale {scale}.\n"
    )
