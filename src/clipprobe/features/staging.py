"""Small pinned staging buffers between an ordinary host tensor and a GPU, reused in turn behind CUDA events.

A copy between host and GPU runs asynchronously only from pinned memory, but pinning a whole cache costs
more than the cache: PyTorch's pinned allocator rounds every request up to a power of two (a 22.5 GiB cache
would pin 32 GiB), and `values[rows]` on a pinned tensor returns pageable memory anyway. So caches stay in
ordinary host memory, and each batch passes through one of a few pinned slots: gathered into it, then
copied to the GPU (`take`, `release`), or copied from the GPU into it and then into the cache
(`release(then=...)`). A slot is reused only once the copy that last used it has finished, which also
bounds the copies in flight; batch k + 1 is gathered while batch k is copied.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch


class PinnedRing:
    """`slots` pinned buffers taken in turn; a slot is handed out again only after its last copy finished."""

    def __init__(self, slots: int = 2) -> None:
        self._buffers: list[torch.Tensor | None] = [None] * slots
        self._events: list[torch.cuda.Event | None] = [None] * slots
        self._pending: list[Callable[[], None] | None] = [None] * slots
        self._taken = -1

    def take(self, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        """The next slot as a pinned (shape, dtype) tensor, once its previous copy (and what followed it)
        is done."""
        self._taken = (self._taken + 1) % len(self._buffers)
        self._finish(self._taken)
        size = math.prod(shape)
        buffer = self._buffers[self._taken]
        if buffer is None or buffer.dtype != dtype or buffer.numel() < size:
            buffer = self._buffers[self._taken] = torch.empty(size, dtype=dtype, pin_memory=True)
        return buffer[:size].view(shape)

    def release(self, then: Callable[[], None] | None = None) -> None:
        """The slot just taken now has its copy queued on the current stream; `then` runs on the host once
        that copy has finished (at the slot's next `take`, or at `drain`)."""
        self._events[self._taken] = torch.cuda.current_stream().record_event()
        self._pending[self._taken] = then

    def drain(self) -> None:
        """Wait for every queued copy and run what follows each."""
        for slot in range(len(self._buffers)):
            self._finish(slot)

    def _finish(self, slot: int) -> None:
        event, then = self._events[slot], self._pending[slot]
        if event is not None:
            event.synchronize()  # a host wait on this slot's copy alone, not a drain of the GPU's queue
        if then is not None:
            then()
        self._events[slot], self._pending[slot] = None, None
