"""Moves of small values between host and device inside the training loops, and the syncs they declare.

On a GPU every host read of a device value (`.item()`, `bool()`, `float()`, `.cpu()`) waits until the GPU
has drained its queue, and so does a copy to the device from ordinary (pageable) host memory: hidden in a
step, either stalls the GPU every step. So a loop reads device values on the host only through `host`, the
one declared sync, named and counted in COUNTS (the tests count a loop's syncs per epoch through it, on any
device), and moves what it builds on the host (a permutation) with `to_device`, which never waits. A
loop's whole input (a dataset) goes to the device before the loop starts with `upload`, an ordinary copy and
one declared sync. On the CPU all three hand back their tensors unchanged: the values, and so the CPU's
bytes, are the same either way.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator
from typing import NamedTuple

import torch

COUNTS: Counter[str] = Counter()  # declared syncs so far, by what each reads (tests reset and read it)


class Rows(NamedTuple):
    """One batch's row indices where a cache may live: on the host (a cache there is gathered by them) and
    on the loop's device (one there is indexed by them). On the CPU both are the same tensor."""

    host: torch.Tensor
    on_device: torch.Tensor


def host(*tensors: torch.Tensor, what: str) -> tuple[torch.Tensor, ...]:
    """`tensors` on the host, for reading: one declared sync, named by `what`.

    The first copy waits for the GPU, the rest find it drained. Allowed under
    `torch.cuda.set_sync_debug_mode("error")`, which the CUDA tests run every loop's epoch under.
    """
    COUNTS[what] += 1
    if not any(t.is_cuda for t in tensors):
        return tensors
    with _declared():
        return tuple(t.cpu() for t in tensors)


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A host tensor on `device` without waiting: staged in pinned memory, copied non-blocking (the pinned
    block is not reused before the copy is done: PyTorch's host allocator records the copy). For index
    orders and small constants, not for datasets or caches: a pinned block is rounded up to a power of two
    (`upload` moves a dataset)."""
    if device.type != "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


def upload(*tensors: torch.Tensor, device: torch.device, what: str) -> tuple[torch.Tensor, ...]:
    """A loop's whole inputs on `device`, before the loop starts: ordinary copies from pageable host memory
    (pinning a dataset would round it up to a power of two), which wait for the copy: one declared sync,
    named by `what`."""
    COUNTS[what] += 1
    if device.type != "cuda":
        return tuple(t.to(device) for t in tensors)
    with _declared():
        return tuple(t.to(device) for t in tensors)


@contextlib.contextmanager
def _declared() -> Iterator[None]:
    """The sync debug mode off for one declared sync, whatever it was."""
    mode = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode(0)
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode(mode)
