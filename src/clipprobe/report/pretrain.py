"""Report section: the CLIP weights, and the pretraining curve when the CLIP was trained from scratch."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from clipprobe import paths
from clipprobe.params import Params
from clipprobe.report import figures
from clipprobe.report.markdown import profile_name

FIGURE = "figures/clip_pretrain.png"


def render(params: Params, out_dir: Path) -> str:
    curve = pd.read_csv(paths.PRETRAIN_CURVE)
    if curve.empty:
        return (
            "## CLIP weights\n\n"
            f"`{params.clip.arch}` with pretrained weights `{params.clip.pretrained}`: nothing was trained.\n"
        )
    figures.pretrain_curve(curve, f"CLIP pretraining: {profile_name(params)}", out_dir / FIGURE)
    cfg, shapes = params.clip.pretrain, params.data.shapes
    mix = shapes.captions
    return (
        "## CLIP pretraining from scratch\n\n"
        f"`{params.clip.arch}` trained with CLIP's symmetric contrastive loss on {shapes.n_pretrain} captioned "
        f"{shapes.image_size} px shapes-world images (captions only, never labels): {cfg.steps} AdamW steps, "
        f"batch {cfg.batch_size}, peak lr {cfg.lr:g}, {cfg.warmup_steps} warm-up steps then cosine. Caption mix: "
        f"{mix.free:.0%} free-form, {mix.class_like:.0%} class-like, {mix.count_only:.0%} count-only.\n\n"
        f"![CLIP pretraining loss]({FIGURE})\n\n"
        f"Loss {curve['loss'].iloc[0]:.3f} at step 1, {curve['loss'].iloc[-1]:.3f} at step {len(curve)}; "
        f"learnt logit scale {curve['logit_scale'].iloc[-1]:.1f}.\n"
    )
