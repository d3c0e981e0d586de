"""The VQ-VAE of the tutorial the report builds on, with either its own conv encoder or frozen CLIP features.

Every model is input -> encoder -> `EMAQuantizer` (one code per grid position, NHWC) -> `Decoder`. The plain
encoder is the tutorial's (two stride-2 4x4 convs, a 3x3 and a 1x1 residual layer; no norm); the feature
encoder maps a cached frozen input to the code width: a 1x1 conv over the CLIP tower's pre-pool map (or a
random tower's), a per-position linear map of the pooled embedding. The decoder is the tutorial's residual layers followed by
stride-2 transposed convs: as many as fit under the output side, then a bilinear resize to it when the grid
does not divide it (RN50's 7x7 map decodes to 28x28, scored at CIFAR's 32x32, as in the report).

Unlike the tutorial, whose `x.reshape(-1, D)` on an NCHW tensor makes each "vector" span channel maps, codes
here are per position, the codebook is initialised from the first batch's encodings (the tutorial's
U(+-1/K) init sits far from CLIP-scale features and leaves most codes dead) and its perplexity is measured
over a whole split, not one batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from clipprobe.errors import ClipprobeError


class _Residual(nn.Module):
    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.block = block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


def _residual_layers(hidden: int) -> list[nn.Module]:
    """The tutorial's pair: ReLU -> [3x3 conv + skip] -> ReLU -> [1x1 conv + skip]."""
    return [
        nn.ReLU(),
        _Residual(nn.Conv2d(hidden, hidden, 3, padding=1)),
        nn.ReLU(),
        _Residual(nn.Conv2d(hidden, hidden, 1)),
    ]


class PlainEncoder(nn.Sequential):
    """(B, 3, S, S) pixels in [0, 1] -> (B, code_dim, S/4, S/4): the tutorial's trainable encoder."""

    downsample = 4

    def __init__(self, hidden: int, code_dim: int) -> None:
        super().__init__(
            nn.Conv2d(3, hidden, 4, stride=2, padding=1),
            nn.Conv2d(hidden, hidden, 4, stride=2, padding=1),
            *_residual_layers(hidden),
            nn.Conv2d(hidden, code_dim, 1),
        )


class FeatureEncoder(nn.Module):
    """(B, C, g, g) frozen map -> (B, code_dim, g, g) by a 1x1 conv; or (B, D) pooled embedding -> the same.

    The pooled embedding has no grid: it is broadcast over the g x g positions through a linear map of its
    own per position (a position-wise 1x1 conv), so the pooled model gets as many codes as the pre-pool one
    and may put what the embedding knows wherever it belongs.
    """

    def __init__(self, in_channels: int, code_dim: int, grid: int, pooled: bool) -> None:
        super().__init__()
        self.grid, self.code_dim = grid, code_dim
        self.proj = (
            nn.Linear(in_channels, code_dim * grid * grid) if pooled else nn.Conv2d(in_channels, code_dim, 1)
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if features.ndim == 2:
            return self.proj(features).view(-1, self.code_dim, self.grid, self.grid)
        return self.proj(features)


class Decoder(nn.Module):
    """(B, code_dim, g, g) -> (B, 3, S, S): residual layers, then stride-2 transposed convs, then a resize."""

    def __init__(self, code_dim: int, hidden: int, grid: int, out_size: int) -> None:
        super().__init__()
        if grid > out_size:
            raise ClipprobeError(f"vqvae: a {grid}x{grid} code grid cannot decode to {out_size} px")
        ups = int(
            math.log2(out_size / grid) + 1e-9
        )  # the largest power of two with grid * 2**ups <= out_size
        layers: list[nn.Module] = [nn.Conv2d(code_dim, hidden, 1), *_residual_layers(hidden), nn.ReLU()]
        for i in range(ups):
            last = i == ups - 1
            layers.append(nn.ConvTranspose2d(hidden, 3 if last else hidden, 2, stride=2))
            if not last:
                layers.append(nn.ReLU())
        if ups == 0:
            layers.append(nn.Conv2d(hidden, 3, 1))
        self.net = nn.Sequential(*layers)
        self.out_size = out_size

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        x = self.net(codes)
        if x.shape[-1] != self.out_size:
            x = F.interpolate(x, size=self.out_size, mode="bilinear", align_corners=False)
        return x


@dataclass
class Quantized:
    codes: torch.Tensor  # (B, D, g, g) straight-through quantised latents
    indices: torch.Tensor  # (B, g, g) int64 code per position
    commitment: torch.Tensor  # beta * MSE(z, sg[q]): the only latent term with a gradient (to the encoder)
    latent_mse: torch.Tensor  # MSE(sg[z], q): the tutorial's "codebook loss" (no gradient; EMA moves codes)


class EMAQuantizer(nn.Module):
    """Vector quantiser with an exponential-moving-average codebook (van den Oord et al. 2017, App. A.1).

    A code whose smoothed hit count per batch falls below `restart_below` is dead (no encoding is near it,
    and EMA never moves an unused code): it is restarted at a random encoding of the current batch, as in
    Jukebox's codebook (Dhariwal et al. 2020). Without this the broadcast pooled embedding, whose first
    batch holds only batch-size distinct vectors, would keep a few dozen codes of the codebook.
    """

    def __init__(
        self,
        size: int,
        dim: int,
        commitment: float,
        decay: float,
        eps: float = 1e-5,
        restart_below: float = 0.1,
    ) -> None:
        super().__init__()
        self.commitment, self.decay, self.eps, self.restart_below = commitment, decay, eps, restart_below
        self.register_buffer("embedding", torch.zeros(size, dim))
        self.register_buffer("ema_count", torch.zeros(size))
        self.register_buffer("ema_weight", torch.zeros(size, dim))
        self.register_buffer("initialised", torch.tensor(False))
        self._first_call = True  # on a GPU: the initialisation runs (branch-free) at the first training call

    @torch.no_grad()
    def _reset(self, codes: torch.Tensor, flat: torch.Tensor, generator: torch.Generator | None) -> None:
        """Put `codes` (a bool mask) at random rows of `flat`, each with a hit count of one."""
        rows = torch.randint(len(flat), (int(codes.sum()),), generator=generator).to(flat.device)
        self.embedding[codes] = flat[rows]
        self.ema_weight[codes] = flat[rows]
        self.ema_count[codes] = 1.0

    @torch.no_grad()
    def _restart(self, codes: torch.Tensor, flat: torch.Tensor, generator: torch.Generator | None) -> None:
        """`_reset` without a sync: every code draws a row of `flat`, those in `codes` take it."""
        fresh = flat[torch.randint(len(flat), (len(codes),), generator=generator, device=flat.device)]
        keep = ~codes[:, None]
        self.embedding.copy_(torch.where(keep, self.embedding, fresh))
        self.ema_weight.copy_(torch.where(keep, self.ema_weight, fresh))
        self.ema_count.masked_fill_(codes, 1.0)

    def forward(self, z: torch.Tensor, generator: torch.Generator | None = None) -> Quantized:
        batch, dim, height, width = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, dim)  # one vector per position
        if self.training and flat.is_cuda:
            if self._first_call:  # a Python flag, no sync; the buffer decides (a loaded codebook stays)
                self._restart(~self.initialised.expand(len(self.ema_count)), flat.detach(), generator)
                self.initialised.fill_(True)
                self._first_call = False
        elif self.training and not self.initialised:
            self._reset(torch.ones_like(self.ema_count, dtype=torch.bool), flat.detach(), generator)
            self.initialised.fill_(True)
        distances = (
            flat.pow(2).sum(1, keepdim=True) - 2 * flat @ self.embedding.T + self.embedding.pow(2).sum(1)
        )
        indices = distances.argmin(1)
        quantized = self.embedding[indices]
        if self.training:
            self._ema_update(flat.detach(), indices, generator)
        commitment = self.commitment * F.mse_loss(flat, quantized.detach())
        latent_mse = F.mse_loss(flat.detach(), quantized)
        straight_through = flat + (quantized - flat).detach()
        codes = straight_through.view(batch, height, width, dim).permute(0, 3, 1, 2)
        return Quantized(codes, indices.view(batch, height, width), commitment, latent_mse)

    @torch.no_grad()
    def _ema_update(
        self, flat: torch.Tensor, indices: torch.Tensor, generator: torch.Generator | None
    ) -> None:
        one_hot = F.one_hot(indices, len(self.embedding)).type_as(flat)
        self.ema_count.mul_(self.decay).add_(one_hot.sum(0), alpha=1 - self.decay)
        total = self.ema_count.sum()
        smoothed = (self.ema_count + self.eps) / (total + len(self.ema_count) * self.eps) * total  # Laplace
        self.ema_weight.mul_(self.decay).add_(one_hot.T @ flat, alpha=1 - self.decay)
        self.embedding.copy_(self.ema_weight / smoothed[:, None])
        dead = self.ema_count < self.restart_below
        if flat.is_cuda:
            self._restart(dead, flat, generator)
        elif dead.any():
            self._reset(dead, flat, generator)

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """(B, g, g) code indices -> (B, D, g, g) codebook vectors (decoding chosen codes)."""
        return self.embedding[indices].permute(0, 3, 1, 2)


@dataclass
class Output:
    reconstruction: torch.Tensor  # (B, 3, S, S), pixels on the [0, 1] scale (not clamped)
    quantized: Quantized


class VQVAE(nn.Module):
    """encoder -> EMA vector quantiser -> decoder; only encoder and decoder take gradients."""

    def __init__(self, encoder: nn.Module, quantizer: EMAQuantizer, decoder: Decoder) -> None:
        super().__init__()
        self.encoder, self.quantizer, self.decoder = encoder, quantizer, decoder

    def forward(self, inputs: torch.Tensor, generator: torch.Generator | None = None) -> Output:
        quantized = self.quantizer(self.encoder(inputs), generator)
        return Output(self.decoder(quantized.codes), quantized)

    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.quantizer.lookup(indices))
