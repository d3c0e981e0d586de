"""The one image streamer every frozen-feature pass reads through (embedding, tower maps, BN calibration),
and the check every such pass ends with.

Images never pass through PIL or a DataLoader: uint8 (N, H, W, 3) arrays (memmaps included) are cut into
batches that land on the device in order, where they are resized and normalised (`clipprobe.preprocess`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import torch

from clipprobe import syncs
from clipprobe.errors import ClipprobeError
from clipprobe.features.staging import PinnedRing


def stream_images(images: np.ndarray, batch_size: int, device: torch.device) -> Iterator[torch.Tensor]:
    """(B, H, W, 3) uint8 batches of `images` on `device`, in order.

    On CUDA each batch is read into one of two pinned slots and copied on a side stream (`staging.PinnedRing`),
    so the copy of batch k + 1 overlaps the compute of batch k; a slot is refilled only once the compute
    queued on the batch it last held has finished, which also bounds the batches in flight to two. On the
    CPU a batch is a copy (torch.from_numpy warns on a read-only memmap).
    """
    starts = range(0, len(images), batch_size)
    if device.type != "cuda":
        for start in starts:
            yield torch.from_numpy(np.array(images[start : start + batch_size]))
        return
    ring = PinnedRing(device)
    for start in starts:
        chunk = images[start : start + batch_size]
        ring.take(tuple(chunk.shape), torch.uint8).numpy()[...] = chunk
        yield ring.to_device()


def _overflow(what: str) -> ClipprobeError:
    return ClipprobeError(
        f"{what}: the CLIP computes NaN or inf from finite weights and images (it overflows); "
        "use other weights (clip.pretrained, tower.pretrained) or retrain it with a lower clip.pretrain.lr"
    )


def check_finite(tensors: Iterable[torch.Tensor], what: str) -> None:
    """Features computed from finite, checked weights and uint8 images must be finite: if not, the model
    overflows, and the line says so instead of leaving NaN for a later stage to trip on."""
    if not all(torch.isfinite(t).all() for t in tensors):
        raise _overflow(what)


class Finite:
    """`check_finite` folded over batches as they are computed: one flag on the device, and-ed per batch (no
    sync, no pass over a whole cache), read once by `check` (one declared sync)."""

    def __init__(self, device: torch.device) -> None:
        self.ok = torch.ones((), dtype=torch.bool, device=device)

    def add(self, value: torch.Tensor) -> None:
        self.ok &= torch.isfinite(value).all()

    def check(self, what: str) -> None:
        (ok,) = syncs.host(self.ok, what="features: finite")
        if not bool(ok):
            raise _overflow(what)
