"""Row batches of the decoders' training and evaluation loops over cached inputs."""

from __future__ import annotations

from collections.abc import Iterator

import torch


def batch_rows(n: int, batch_size: int, generator: torch.Generator | None = None) -> Iterator[torch.Tensor]:
    """Row indices in batches: shuffled by `generator` (training), in order without one (evaluation)."""
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    yield from order.split(batch_size)
