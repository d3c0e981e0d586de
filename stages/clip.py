"""clip stage: fetch pretrained open_clip weights, or pretrain the tiny CLIP from scratch on shapes captions."""

from pathlib import Path

from clipprobe.data.store import load_split
from clipprobe.models.clip import create_clip, save_clip
from clipprobe.models.pretrain import PretrainConfig, pretrain_clip
from clipprobe.params import load_params
from clipprobe.runtime import resolve_device, run_stage, seed_everything, show_progress, write_csv

OUT = Path("models/clip")
LOSS_CSV = Path("plots/clip_pretrain.csv")


def clip() -> None:
    params = load_params()
    seed_everything(params.seed)
    cfg = params.clip
    device = resolve_device(params.device)
    model, tokenizer = create_clip(
        cfg.arch, cfg.pretrained, cache_dir=Path(params.data.downloads) / "open_clip"
    )
    rows = []
    if cfg.pretrained == "scratch":
        # Captions only: the pretraining split carries no labels, so zero-shot stays zero-shot.
        pretrain = load_split(params.data.root, "shapes", "pretrain")
        rows = pretrain_clip(
            model,
            tokenizer,
            pretrain.images,
            pretrain.captions,
            PretrainConfig(**cfg.pretrain.model_dump()),
            seed=params.seed,
            device=device,
            progress=show_progress(),
        )
        print(f"pretrained {cfg.pretrain.steps} steps: loss {rows[0]['loss']:.3f} -> {rows[-1]['loss']:.3f}")
    # Written even when empty, so the plots and report have a stable input for every profile.
    write_csv(LOSS_CSV, rows, columns=["step", "loss", "logit_scale", "lr"])
    save_clip(model.cpu(), cfg.arch, cfg.pretrained, OUT)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    run_stage(clip)
