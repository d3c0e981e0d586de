"""The VQ-VAE experiment: VQ-VAEs on the frozen CLIP tower's map vs the tutorial's plain VQ-VAE, with controls.

Every model shares the codebook, the decoder family and the budget; they differ only in what they encode:
the images themselves (plain), the CLIP pre-pool map, the same map from a random-weight tower, or the pooled
embedding. Two untrained floors (an RGB thumbnail at the code grid, the per-image mean colour) say what the
scores mean. Everything is scored on the test split at one resolution.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import open_clip
import torch
import torch.nn.functional as F

from clipprobe import readouts
from clipprobe.data.store import Split
from clipprobe.decoders.curves import per_epoch
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
from clipprobe.experiment import Result, flatten
from clipprobe.features.tower import (
    TRAIN_BYTES_PER_PIXEL,
    FrozenTower,
    frozen_features,
    training_state_bytes,
)
from clipprobe.params import PlateauParams, VqvaeParams
from clipprobe.runtime import fast_cuda_math

_logger = logging.getLogger(__name__)

# model -> the cached input it reads ("pixels" = the target images themselves)
MODELS = dict(zip(readouts.VQVAE_MODELS, ("pixels", "clip", "random", "pooled"), strict=True))


def targets(images: np.ndarray, size: int) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float (N, 3, size, size) in [0, 1], antialiased bilinear resize."""
    x = torch.from_numpy(np.array(images)).permute(0, 3, 1, 2).float() / 255
    if x.shape[-1] != size:
        x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)
    return x


def build(kind: str, cfg: VqvaeParams, features: dict[str, torch.Tensor], grid: int) -> VQVAE:
    """The VQ-VAE reading input `kind` (a key of MODELS' values); `grid` is the frozen map's side."""
    if kind == "pixels":
        encoder, grid = PlainEncoder(cfg.hidden, cfg.code_dim), cfg.image_size // PlainEncoder.downsample
    else:
        encoder = FeatureEncoder(features[kind].shape[1], cfg.code_dim, grid, pooled=features[kind].ndim == 2)
    quantizer = EMAQuantizer(cfg.codebook_size, cfg.code_dim, cfg.commitment, cfg.decay)
    return VQVAE(encoder, quantizer, Decoder(cfg.code_dim, cfg.hidden, grid, cfg.image_size))


def _to_uint8(images: torch.Tensor) -> np.ndarray:
    return (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


@dataclass
class Inputs:
    """What the vqvae stage passes: the CLIP whose tower is read and the first images of each split."""

    clip: open_clip.CLIP
    splits: Mapping[str, Split]  # train, val, test
    tower_size: int  # params.yaml tower.size: the side the frozen tower reads
    seed: int  # every model's init, the batch order and the random-weight tower
    plateau: PlateauParams  # params.yaml plateau: when a model has learnt what it can
    device: torch.device


def evaluate(inputs: Inputs, cfg: VqvaeParams) -> Result:
    """Train and score every model of MODELS, then the floors.

    figures: `<model>.psnr`, `.ssim`, `.mse`, `.mse_over_variance`, codebook use and the training context;
    curves: `curves` (loss terms per model and epoch); arrays: `samples` (uint8 image rows of the report's grids: test
    reconstructions and decodings of random codes). On a GPU every model and floor runs under
    `runtime.fast_cuda_math` alike.
    """
    with fast_cuda_math(inputs.device):
        return _compare(inputs, cfg)


def train_bytes(cfg: VqvaeParams, state_bytes: int) -> int:
    """What training holds on the device beside the caches and a float32 batch of them (`frozen_features`):
    a batch of targets, the one-hot codes of the finest code grid (the plain encoder's, side / 4), the
    activations and gradients (TRAIN_BYTES_PER_PIXEL, an upper bound the CUDA tests check) and the largest
    model's `state_bytes` (`training_state_bytes`: gradients, Adam's moments, the best epoch's copy)."""
    pixels = cfg.image_size**2
    codes = (cfg.image_size // PlainEncoder.downsample) ** 2 * cfg.codebook_size
    activations = cfg.batch_size * TRAIN_BYTES_PER_PIXEL * pixels
    return cfg.batch_size * 4 * (3 * pixels + codes) + activations + state_bytes


def largest_training_state(clip: open_clip.CLIP, tower_size: int, cfg: VqvaeParams) -> int:
    """`training_state_bytes` of the largest model of MODELS, each built on the meta device (no memory, and
    the seeded generator draws nothing) for `clip`'s tower at `tower_size` px."""
    tower = FrozenTower(clip)
    grid = tower_size // tower.stride
    shapes = {"clip": (tower.out_channels, grid, grid), "pooled": (tower.visual.output_dim,)}
    shapes["random"] = shapes["clip"]
    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        features = {kind: torch.empty(1, *shape) for kind, shape in shapes.items()}
        return max(training_state_bytes(build(kind, cfg, features, grid)) for kind in MODELS.values())


def _compare(inputs: Inputs, cfg: VqvaeParams) -> Result:
    splits, seed, device = inputs.splits, inputs.seed, inputs.device
    start = time.perf_counter()
    state = largest_training_state(inputs.clip, inputs.tower_size, cfg) if device.type == "cuda" else 0
    n_images = sum(len(data.images) for data in splits.values())
    features = frozen_features(
        inputs.clip,
        splits,
        tower_size=inputs.tower_size,
        towers=("clip", "random"),
        seed=seed,
        device=device,
        batch_size=cfg.batch_size,
        train_bytes=train_bytes(cfg, state),
        other_cache_bytes=4 * 3 * cfg.image_size**2 * n_images,  # the float32 targets, on the device below
    )
    grid = features["train"]["clip"].shape[-1]  # the pre-pool map's side
    images = {split: targets(data.images, cfg.image_size) for split, data in splits.items()}
    on_device = {split: x.to(device) for split, x in images.items()}  # the targets, gathered there per batch
    for split in images:
        features[split]["pixels"] = on_device[split]
    variance = images["train"].var().item()
    _logger.info(
        "frozen features in %.1f s: %dx%d map; data variance %.4f",
        time.perf_counter() - start,
        grid,
        grid,
        variance,
    )

    metrics: dict = {"data_variance": variance, "image_size": cfg.image_size, "clip_grid": grid}
    histories: dict[str, list[dict]] = {}
    samples = {"ground_truth": _to_uint8(images["test"][: cfg.samples])}
    random_codes = torch.Generator().manual_seed(seed)
    for name, kind in MODELS.items():
        tic = time.perf_counter()
        torch.manual_seed(seed)
        vq = build(kind, cfg, features["train"], grid)
        pairs = {split: Pairs(features[split][kind], on_device[split]) for split in ("train", "val")}
        training = train_vqvae(
            vq,
            pairs["train"],
            pairs["val"],
            rule=inputs.plateau.rule(cfg.max_epochs),
            batch_size=cfg.batch_size,
            lr=cfg.lr,
            seed=seed,
            device=device,
            desc=f"vqvae {name}",
        )
        recon, indices = reconstruct(vq, features["test"][kind], cfg.batch_size, device)
        kept = training.history[training.best_epoch - 1]
        metrics[name] = {
            **image_scores(recon, images["test"], variance),
            **codebook_usage(indices, cfg.codebook_size),
            "code_grid": indices.shape[-1],
            "trainable_params": sum(p.numel() for p in vq.parameters() if p.requires_grad),
            "best_train_recon": kept["train_recon"],
            "best_val_recon": kept["val_recon"],
            "best_epoch": training.best_epoch,
            "epochs": len(training.history),
            "rising": float(training.rising),
            "report_total_loss": sum(kept[f"train_{term}"] for term in TERMS),  # parity only, see the report
        }
        histories[name] = training.history
        samples[name] = _to_uint8(recon[: cfg.samples])
        codes = torch.randint(cfg.codebook_size, (cfg.samples, *indices.shape[1:]), generator=random_codes)
        with torch.no_grad():
            samples[f"{name}_random_codes"] = _to_uint8(vq.eval().decode_indices(codes.to(device)).cpu())
        scores = metrics[name]
        _logger.info(
            "%s: test PSNR %.2f dB, SSIM %.3f, codes used %.0f%% (perplexity %.0f) in %.1f s",
            name, scores["psnr"], scores["ssim"], 100 * scores["codes_used"], scores["perplexity"],
            time.perf_counter() - tic,
        )  # fmt: skip
    for name, floor in FLOORS.items():
        prediction = floor(images["test"], grid)
        metrics[name] = image_scores(prediction, images["test"], variance)
        samples[name] = _to_uint8(prediction[: cfg.samples])
        _logger.info("%s: test PSNR %.2f dB", name, metrics[name]["psnr"])
    return Result(
        flatten(metrics),
        curves={"curves": per_epoch(histories)},
        arrays={"samples": samples},
    )
