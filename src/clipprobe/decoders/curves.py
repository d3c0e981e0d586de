"""A decoder comparison's training curves as one table: a row per epoch, a column per model and measure.

Every model of a comparison trains the same whole cosine schedule (plateau.py), so the epochs line up. A
column per model ("clip.val_miou", named as the figures are) lets any reader of
runs/seed<k>/<experiment>_curves.csv take each model's curve as one series.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from clipprobe.experiment import Table


def per_epoch(histories: Mapping[str, Sequence[Mapping[str, float]]]) -> Table:
    """{model: [{"epoch": 1, "val_loss": ...}, ...]} -> a Table with columns epoch, <model>.<measure>, ..."""
    lengths = {name: len(history) for name, history in histories.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"every model trains the same epochs, not {lengths}")
    rows = [{"epoch": row["epoch"]} for row in next(iter(histories.values()))]
    for name, history in histories.items():
        for row, values in zip(rows, history, strict=True):
            row.update({f"{name}.{key}": value for key, value in values.items() if key != "epoch"})
    return Table(list(rows[0]), rows)
