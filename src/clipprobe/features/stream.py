"""The one image streamer every frozen-feature pass reads through (embedding, tower maps, BN calibration),
and the check every such pass ends with.

Images never pass through PIL or a DataLoader: uint8 (N, H, W, 3) arrays (memmaps included) are cut into
batches that land on the device in order, where they are resized and normalised (`clipprobe.preprocess`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import torch

from clipprobe.errors import ClipprobeError


def stream_images(images: np.ndarray, batch_size: int, device: torch.device) -> Iterator[torch.Tensor]:
    """(B, H, W, 3) uint8 batches of `images` on `device`, in order.

    On CUDA each batch is read into one of two pinned buffers and copied on a side stream, so the copy of
    batch k + 1 overlaps the compute of batch k; a buffer is refilled only once the compute on the batch it
    last held has finished, which also bounds the batches in flight to two. On the CPU a batch is a copy
    (torch.from_numpy warns on a read-only memmap).
    """
    starts = range(0, len(images), batch_size)
    if device.type != "cuda":
        for start in starts:
            yield torch.from_numpy(np.array(images[start : start + batch_size]))
        return
    compute = torch.cuda.current_stream(device)
    copy = torch.cuda.Stream(device)
    shape = (min(batch_size, len(images)), *images.shape[1:])
    staging = [torch.empty(shape, dtype=torch.uint8, pin_memory=True) for _ in range(2)]
    consumed: list[torch.cuda.Event | None] = [None, None]
    for k, start in enumerate(starts):
        slot = k % 2
        if consumed[slot] is not None:
            consumed[slot].synchronize()
        chunk = images[start : start + batch_size]
        staging[slot].numpy()[: len(chunk)] = chunk
        with torch.cuda.stream(copy):
            batch = staging[slot][: len(chunk)].to(device, non_blocking=True)
        compute.wait_stream(copy)
        batch.record_stream(compute)  # so the allocator cannot reuse it before the compute is done
        yield batch
        consumed[slot] = compute.record_event()  # the consumer has queued its work on this batch


def check_finite(tensors: Iterable[torch.Tensor], what: str) -> None:
    """Features computed from finite, checked weights and uint8 images must be finite: if not, the model
    overflows, and the line says so instead of leaving NaN for a later stage to trip on."""
    if not all(torch.isfinite(t).all() for t in tensors):
        raise ClipprobeError(
            f"{what}: the CLIP computes NaN or inf from finite weights and images (it overflows); "
            "use other weights (clip.pretrained, tower.pretrained) or retrain it with a lower clip.pretrain.lr"
        )
