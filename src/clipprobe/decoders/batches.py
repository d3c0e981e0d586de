"""Row batches of the decoders' training and evaluation loops over cached inputs."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from clipprobe import syncs
from clipprobe.syncs import Rows

CPU = torch.device("cpu")


def batch_rows(
    n: int,
    batch_size: int,
    generator: torch.Generator | None = None,
    device: torch.device = CPU,
) -> Iterator[Rows]:
    """Row indices in batches: shuffled by `generator` (training), in order without one (evaluation).

    The order is drawn on the host by the (CPU) generator, so every device gets the same batches, and moved
    to `device` once per pass without waiting (`syncs.to_device`): no batch waits for an index copy.
    """
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    on_device = syncs.to_device(order, device)
    yield from (
        Rows(*pair) for pair in zip(order.split(batch_size), on_device.split(batch_size), strict=True)
    )
