"""Training and scoring of the VQ-VAEs and of the untrained floors they are compared with.

Every model reconstructs the same target images (pixels in [0, 1], one side S) from its own input: the
images themselves (plain VQ-VAE) or cached frozen features. Scores are on the test split at side S:
MSE, MSE over the train pixels' variance (the Sonnet VQ-VAE example's `recon_error`), dataset-level PSNR
(from the pooled MSE) and mean per-image SSIM (torchmetrics), with predictions clamped to [0, 1]; codebook
perplexity and the share of codes used are counted over the whole test split.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from clipprobe import readouts, syncs
from clipprobe.decoders.batches import batch_rows
from clipprobe.decoders.vqvae_models import VQVAE
from clipprobe.errors import ClipprobeError
from clipprobe.features.tower import Feed
from clipprobe.plateau import Plateau, PlateauRule
from clipprobe.progress import progress

TERMS = ("recon", "commitment", "latent")  # per-epoch loss terms, train and val


@dataclass
class Pairs:
    """Model inputs and the images they must reconstruct, row for row."""

    inputs: torch.Tensor  # (N, 3, S, S) pixels, (N, C, g, g) map or (N, D) embedding
    targets: torch.Tensor  # (N, 3, S, S) float32 in [0, 1]

    def __len__(self) -> int:
        return len(self.targets)


def _terms(
    model: VQVAE, inputs: torch.Tensor, targets: torch.Tensor, generator=None
) -> dict[str, torch.Tensor]:
    if inputs.ndim == 4:  # pixels or a frozen map: channels_last, like the model's weights
        inputs = inputs.contiguous(memory_format=torch.channels_last)
    out = model(inputs, generator)
    recon = F.mse_loss(out.reconstruction, targets)
    return {"recon": recon, "commitment": out.quantized.commitment, "latent": out.quantized.latent_mse}


@dataclass
class Training:
    history: list[dict[str, float]] = field(default_factory=list)  # per epoch: train_ and val_ TERMS
    best_epoch: int = 0  # 1-based: the weights kept, lowest val reconstruction error
    rising: bool = False  # its last fifth still improved: short of its plateau


def train_vqvae(
    model: VQVAE,
    train: Pairs,
    val: Pairs,
    *,
    rule: PlateauRule,
    batch_size: int,
    lr: float,
    seed: int,
    device: torch.device,
    desc: str,
) -> Training:
    """Adam on reconstruction MSE + commitment (the codebook follows by EMA) over the whole schedule
    (`plateau`); the model ends with the weights of its epoch of lowest val reconstruction error.

    The batch order comes from a CPU generator on every device; the codebook's restarts draw from it on
    the CPU and from a generator of the same seed on a GPU (`EMAQuantizer`). Two declared syncs per epoch
    (`syncs.host`): the train loss terms and the val evaluation."""
    generator = torch.Generator().manual_seed(seed)
    restarts = generator if device.type == "cpu" else torch.Generator(device).manual_seed(seed)
    model.to(device, memory_format=torch.channels_last)  # faster convolutions, CPU and CUDA
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    plateau = Plateau(rule, False, lr, math.ceil(len(train) / batch_size))
    inputs, targets = Feed(train.inputs, device), Feed(train.targets, device)
    training, step = Training(), 0
    bar = progress(total=rule.max_epochs, desc=f"{desc} (epochs; the best val epoch is kept)")
    for epoch in range(1, rule.max_epochs + 1):
        model.train()
        sums = torch.zeros(len(TERMS), dtype=torch.float64, device=device)  # no per-step sync
        for rows in batch_rows(len(train), batch_size, generator, device):
            terms = _terms(model, inputs(rows), targets(rows), restarts)
            plateau.set_lr(optimizer, step)
            step += 1
            optimizer.zero_grad(set_to_none=True)
            (terms["recon"] + terms["commitment"]).backward()
            optimizer.step()
            sums += torch.stack([terms[name].detach().double() for name in TERMS]) * len(rows.host)
        (sums,) = syncs.host(sums, what="vqvae: train loss terms")
        means = dict(zip(TERMS, (total / len(train) for total in sums.tolist()), strict=True))
        if not all(math.isfinite(mean) for mean in means.values()):
            raise ClipprobeError(
                f"vqvae.lr: training diverged (non-finite loss in epoch {epoch}); lower it (got {lr:g})"
            )
        row = {"epoch": epoch, **{f"train_{name}": mean for name, mean in means.items()}}
        row.update(
            {f"val_{name}": value for name, value in evaluate_terms(model, val, batch_size, device).items()}
        )
        training.history.append(row)
        bar.set_postfix_str(f"val recon {row['val_recon']:.5f}")
        bar.update()
        plateau.end_epoch(row["val_recon"], model)
    bar.close()
    plateau.restore_best(model)
    training.best_epoch, training.rising = plateau.best_epoch, plateau.rising
    return training


@torch.no_grad()
def evaluate_terms(model: VQVAE, pairs: Pairs, batch_size: int, device: torch.device) -> dict[str, float]:
    """Mean loss terms over a split, in eval mode (the codebook does not move); one declared sync."""
    model.eval()
    inputs, targets = Feed(pairs.inputs, device), Feed(pairs.targets, device)
    sums = torch.zeros(len(TERMS), dtype=torch.float64, device=device)
    for rows in batch_rows(len(pairs), batch_size, device=device):
        terms = _terms(model, inputs(rows), targets(rows))
        sums += torch.stack([terms[name].double() for name in TERMS]) * len(rows.host)
    (sums,) = syncs.host(sums, what="vqvae: evaluation")
    return {name: total / len(pairs) for name, total in zip(TERMS, sums.tolist(), strict=True)}


@torch.no_grad()
def reconstruct(
    model: VQVAE, inputs: torch.Tensor, batch_size: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """(reconstructions clamped to [0, 1], code indices) for every row of `inputs`, on the CPU."""
    model.eval()
    feed = Feed(inputs, device)
    images, indices = [], []
    for rows in batch_rows(len(inputs), batch_size, device=device):
        out = model(feed(rows))
        images.append(out.reconstruction.clamp(0, 1))
        indices.append(out.quantized.indices)
    return syncs.host(torch.cat(images), torch.cat(indices), what="vqvae: reconstructions")


def image_scores(predictions: torch.Tensor, targets: torch.Tensor, data_variance: float) -> dict[str, float]:
    """MSE, MSE / data variance, dataset-level PSNR (dB) and mean SSIM of [0, 1] images at one resolution."""
    if predictions.shape != targets.shape:
        raise ValueError(f"predictions {tuple(predictions.shape)} and targets {tuple(targets.shape)} differ")
    mse = F.mse_loss(predictions, targets).item()
    return {
        "mse": mse,
        "mse_over_variance": mse / data_variance,
        "psnr": peak_signal_noise_ratio(predictions, targets, data_range=1.0).item(),
        "ssim": structural_similarity_index_measure(predictions, targets, data_range=1.0).item(),
    }


def codebook_usage(indices: torch.Tensor, codebook_size: int) -> dict[str, float]:
    """Perplexity exp(H) of the code histogram over a whole split and the share of codes used at least once."""
    counts = torch.bincount(indices.flatten(), minlength=codebook_size).double()
    probs = counts / counts.sum()
    entropy = -(probs[probs > 0] * probs[probs > 0].log()).sum().item()
    return {"perplexity": math.exp(entropy), "codes_used": (counts > 0).double().mean().item()}


def thumbnail_floor(targets: torch.Tensor, grid: int) -> torch.Tensor:
    """What a g x g RGB thumbnail alone gives: area-downsampled to the code grid, bilinearly upsampled back."""
    small = F.adaptive_avg_pool2d(targets, grid)
    return F.interpolate(small, size=targets.shape[-1], mode="bilinear", align_corners=False).clamp(0, 1)


def mean_colour(targets: torch.Tensor) -> torch.Tensor:
    """The per-image mean-colour predictor: every pixel replaced by its image's mean RGB."""
    return targets.mean(dim=(2, 3), keepdim=True).expand_as(targets).contiguous()


FLOORS: dict[str, Callable[[torch.Tensor, int], torch.Tensor]] = dict(
    zip(readouts.VQVAE_FLOORS, (thumbnail_floor, lambda targets, grid: mean_colour(targets)), strict=True)
)
