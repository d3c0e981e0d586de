"""clip stage (per seed): fetch pretrained open_clip weights, or pretrain the tiny CLIP from scratch on shapes captions."""

from clipprobe import paths
from clipprobe.contracts import load_split
from clipprobe.io import write_csv
from clipprobe.models.clip import create_clip, save_clip
from clipprobe.models.pretrain import PretrainConfig, pretrain_clip
from clipprobe.params import load_params
from clipprobe.runtime import resolve_device, start
from clipprobe.stage import run_stage


def main(seed: int) -> None:
    params = load_params()
    start(seed, params.threads)  # the seed fixes the init and the batch order
    cfg = params.clip
    device = resolve_device(params.device)
    model, tokenizer = create_clip(
        cfg.arch, cfg.pretrained, cache_dir=paths.open_clip_cache(params.data.downloads)
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
            seed=seed,
            device=device,
            progress=True,
        )
        print(f"pretrained {cfg.pretrain.steps} steps: loss {rows[0]['loss']:.3f} -> {rows[-1]['loss']:.3f}")
    # Written even when empty, so the plots and report have a stable input for every profile.
    write_csv(paths.Run(seed).pretrain_curve, rows, columns=["step", "loss", "logit_scale", "lr"])
    save_clip(model.cpu(), cfg.arch, cfg.pretrained, paths.clip_dir(seed))


if __name__ == "__main__":
    run_stage("clip", main, per_seed=True)
