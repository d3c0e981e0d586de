"""Small pinned staging buffers between ordinary host memory and a GPU, reused in turn behind CUDA events,
with their copies on a side stream of their own.

A copy between host and GPU runs asynchronously only from pinned memory, but pinning a whole cache costs
more than the cache: PyTorch's pinned allocator rounds every request up to a power of two (a 22.5 GiB cache
would pin 32 GiB), and `values[rows]` on a pinned tensor returns pageable memory anyway. So caches and image
arrays stay in ordinary host memory, and each batch passes through one of a few pinned slots: filled on the
host, then copied to the GPU (`take`, `to_device`), or copied from the GPU into a slot and from there into
the cache (`from_device`).

The copies run on the ring's copy stream, not on the stream that computes (the current one), so a copy
overlaps the compute on the batches around it: the compute stream waits for an upload before the work it
queues on that batch, and a download waits only for the compute queued before it. A slot is handed out again
only once its last use is over: a download's once its copy has finished (an event recorded on the copy
stream behind that copy), an upload's once the compute the consumer queued on its batch has finished (an
event recorded on the compute stream when the next slot is asked for). That bounds the batches in flight to
the slots: batch k + 1 is filled on the host and copied while batch k is computed.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch


class PinnedRing:
    """`slots` pinned buffers taken in turn, copied on `stream` (a fresh side stream by default); a slot is
    handed out again only after its last use finished."""

    def __init__(self, device: torch.device, slots: int = 2, stream: torch.cuda.Stream | None = None) -> None:
        self.device = device
        self.stream = stream if stream is not None else torch.cuda.Stream(device)
        self._buffers: list[torch.Tensor | None] = [None] * slots
        self._events: list[torch.cuda.Event | None] = [None] * slots
        self._pending: list[Callable[[], None] | None] = [None] * slots
        self._taken = -1
        self._slot: torch.Tensor | None = None  # the view last handed out by `take`
        self._uploaded: int | None = None  # the slot whose batch the consumer is queueing work on

    def take(self, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        """The next slot as a pinned (shape, dtype) tensor, once its last use (and what followed it) is
        done. Asking for it also says the consumer of the last upload has queued its work on that batch."""
        if self._uploaded is not None:
            self._events[self._uploaded] = torch.cuda.current_stream(self.device).record_event()
            self._uploaded = None
        self._taken = (self._taken + 1) % len(self._buffers)
        self._finish(self._taken)
        size = math.prod(shape)
        buffer = self._buffers[self._taken]
        if buffer is None or buffer.dtype != dtype or buffer.numel() < size:
            buffer = self._buffers[self._taken] = torch.empty(size, dtype=dtype, pin_memory=True)
        self._slot = buffer[:size].view(shape)
        return self._slot

    def to_device(self) -> torch.Tensor:
        """The slot just taken, filled on the host, as a new tensor on the device: copied on the copy stream;
        the current (compute) stream waits for the copy before any work queued after this call, and the
        allocator keeps the batch until that work is done."""
        compute = torch.cuda.current_stream(self.device)
        with torch.cuda.stream(self.stream):
            batch = self._slot.to(self.device, non_blocking=True)
        compute.wait_stream(self.stream)
        batch.record_stream(compute)
        self._uploaded = self._taken
        return batch

    def from_device(self, value: torch.Tensor, then: Callable[[torch.Tensor], None]) -> None:
        """GPU `value`, computed on the current stream, into the next slot: copied on the copy stream once
        the work queued so far has produced it; `then(slot)` runs on the host once the copy has finished
        (at the slot's next `take`, or at `drain`)."""
        slot = self.take(tuple(value.shape), value.dtype)
        self.stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(self.stream):
            slot.copy_(value, non_blocking=True)
            self._events[self._taken] = self.stream.record_event()
        value.record_stream(self.stream)  # its memory is not reused before the copy has read it
        self._pending[self._taken] = lambda: then(slot)

    def drain(self) -> None:
        """Wait for every slot's last use and run what follows each."""
        for slot in range(len(self._buffers)):
            self._finish(slot)

    def _finish(self, slot: int) -> None:
        event, then = self._events[slot], self._pending[slot]
        if event is not None:
            event.synchronize()  # the host waits for this event alone, not for the work queued behind it
        if then is not None:
            then()
        self._events[slot], self._pending[slot] = None, None
