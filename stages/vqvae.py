"""vqvae stage: a VQ-VAE on the frozen CLIP ResNet tower vs the tutorial's plain VQ-VAE, with controls."""

import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from clipprobe.decoders.inputs import first_images, frozen_features
from clipprobe.decoders.vqvae_models import VQVAE, Decoder, EMAQuantizer, FeatureEncoder, PlainEncoder
from clipprobe.decoders.vqvae_train import (
    FLOORS,
    TERMS,
    Pairs,
    codebook_usage,
    image_scores,
    reconstruct,
    train_vqvae,
)
from clipprobe.models.tower import tower_clip
from clipprobe.params import VqvaeParams, load_params
from clipprobe.runtime import resolve_device, run_stage, save_arrays, seed_everything, write_csv, write_json

METRICS = Path("metrics/vqvae.json")
CURVES = Path("plots/vqvae_curves.csv")
SAMPLES = Path("vqvae/samples")  # one .npy per row of the reconstruction figure
# model -> the cached input it reads ("pixels" = the target images themselves)
MODELS = {"plain": "pixels", "clip": "clip", "random_tower": "random", "pooled": "pooled"}


def _targets(images: np.ndarray, size: int) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float (N, 3, size, size) in [0, 1], antialiased bilinear resize."""
    x = torch.from_numpy(np.array(images)).permute(0, 3, 1, 2).float() / 255
    if x.shape[-1] != size:
        x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)
    return x


def _build(kind: str, cfg: VqvaeParams, features: dict[str, torch.Tensor], grid: int) -> VQVAE:
    if kind == "pixels":
        encoder, grid = PlainEncoder(cfg.hidden, cfg.code_dim), cfg.image_size // PlainEncoder.downsample
    else:
        encoder = FeatureEncoder(features[kind].shape[1], cfg.code_dim, grid, pooled=features[kind].ndim == 2)
    quantizer = EMAQuantizer(cfg.codebook_size, cfg.code_dim, cfg.commitment, cfg.decay)
    return VQVAE(encoder, quantizer, Decoder(cfg.code_dim, cfg.hidden, grid, cfg.image_size))


def _to_uint8(images: torch.Tensor) -> np.ndarray:
    return (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def vqvae() -> None:
    params = load_params()
    seed_everything(params.seed)
    device = resolve_device(params.device)
    cfg = params.vqvae
    start = time.perf_counter()
    sizes = {"train": cfg.n_train, "val": cfg.n_val, "test": cfg.n_test}
    splits = first_images(params.data.root, params.data.vqvae, sizes, "vqvae")
    model, _ = tower_clip(params, "vqvae", clip_dir="models/clip", device=device)
    features = frozen_features(
        model,
        splits,
        tower_size=cfg.tower_size,
        towers=("clip", "random"),
        seed=params.seed,
        device=device,
        batch_size=cfg.batch_size,
    )
    grid = features["train"]["clip"].shape[-1]  # the pre-pool map's side
    targets = {split: _targets(data.images, cfg.image_size) for split, data in splits.items()}
    for split in targets:
        features[split]["pixels"] = targets[split]
    variance = targets["train"].var().item()
    print(
        f"frozen features in {time.perf_counter() - start:.1f} s: {grid}x{grid} map; data variance {variance:.4f}"
    )

    metrics: dict = {"data_variance": variance, "image_size": cfg.image_size, "clip_grid": grid}
    curves: dict[int, dict] = {}
    samples = {"ground_truth": _to_uint8(targets["test"][: cfg.samples])}
    random_codes = torch.Generator().manual_seed(params.seed)
    for name, kind in MODELS.items():
        tic = time.perf_counter()
        torch.manual_seed(params.seed)
        vq = _build(kind, cfg, features["train"], grid)
        pairs = {split: Pairs(features[split][kind], targets[split]) for split in ("train", "val")}
        history = train_vqvae(
            vq,
            pairs["train"],
            pairs["val"],
            epochs=cfg.epochs,
            batch_size=cfg.batch_size,
            lr=cfg.lr,
            seed=params.seed,
            device=device,
            desc=f"vqvae {name}",
        )
        recon, indices = reconstruct(vq, features["test"][kind], cfg.batch_size, device)
        last = history[-1]
        metrics[name] = {
            **image_scores(recon, targets["test"], variance),
            **codebook_usage(indices, cfg.codebook_size),
            "code_grid": indices.shape[-1],
            "trainable_params": sum(p.numel() for p in vq.parameters() if p.requires_grad),
            "final_train_recon": last["train_recon"],
            "final_val_recon": last["val_recon"],
            "report_total_loss": sum(last[f"train_{term}"] for term in TERMS),  # parity only, see the report
        }
        for row in history:
            curves.setdefault(row["epoch"], {"epoch": row["epoch"]}).update(
                {f"{name}_{key}": value for key, value in row.items() if key != "epoch"}
            )
        samples[name] = _to_uint8(recon[: cfg.samples])
        codes = torch.randint(cfg.codebook_size, (cfg.samples, *indices.shape[1:]), generator=random_codes)
        with torch.no_grad():
            samples[f"{name}_random_codes"] = _to_uint8(vq.eval().decode_indices(codes.to(device)).cpu())
        scores = metrics[name]
        print(
            f"{name}: test PSNR {scores['psnr']:.2f} dB, SSIM {scores['ssim']:.3f}, "
            f"codes used {scores['codes_used']:.0%} (perplexity {scores['perplexity']:.0f}) "
            f"in {time.perf_counter() - tic:.1f} s"
        )
    for name, floor in FLOORS.items():
        prediction = floor(targets["test"], grid)
        metrics[name] = image_scores(prediction, targets["test"], variance)
        samples[name] = _to_uint8(prediction[: cfg.samples])
        print(f"{name}: test PSNR {metrics[name]['psnr']:.2f} dB")

    columns = ["epoch", *[f"{m}_{s}_{t}" for m in MODELS for t in TERMS for s in ("train", "val")]]
    write_csv(CURVES, curves.values(), columns)
    save_arrays(SAMPLES, samples)
    write_json(METRICS, metrics)
    print(f"wrote {METRICS}, {CURVES}, {SAMPLES} in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    run_stage(vqvae)
