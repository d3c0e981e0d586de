"""The one contract every experiment follows, and how a stage writes what it returns.

Each experiment module (probes.classify, probes.counting, probes.fewshot.sweep, decoders.vqvae,
decoders.segment) exposes `evaluate(inputs: Inputs, cfg: <its params group>) -> Result`: `Inputs` is its own
dataclass of what the stage passes explicitly (data, models, device, seed), `cfg` its own group of
params.yaml and nothing else of it. The Result is flat, as CLIP_benchmark's: figures {"<readout>.<measure>":
number}, plus its curves (tables, one row per epoch or step) and arrays (per-image test hits, sample images)
for the summary. Torch-free: the summary reads what `write_result` writes without the experiments' code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clipprobe.io import save_arrays, write_csv, write_json


@dataclass
class Table:
    """Rows of a CSV with a fixed column order (a curve: one row per epoch, step or grid point)."""

    columns: list[str]
    rows: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Result:
    """What `evaluate` returns: runs/seed<k>/<experiment>.json, <experiment>_<curve>.csv, <experiment>_<arrays>/."""

    figures: dict[str, float | int]  # flat: "<readout>.<measure>" -> number
    curves: dict[str, Table] = field(default_factory=dict)
    arrays: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # folder -> {name: array}


def flatten(nested: Mapping[str, Any], prefix: str = "") -> dict[str, float | int]:
    """{"a": {"b": 1.5}, "c": 2} -> {"a.b": 1.5, "c": 2}: an experiment's figures, built nested, made flat."""
    flat: dict[str, float | int] = {}
    for key, value in nested.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def result_paths(run_dir: str | Path, experiment: str, result: Result) -> list[Path]:
    """Where `write_result` puts `result`, in the order it writes (figures last: they mark a complete run)."""
    run_dir = Path(run_dir)
    return [
        *(run_dir / f"{experiment}_{name}.csv" for name in result.curves),
        *(run_dir / f"{experiment}_{name}" for name in result.arrays),
        run_dir / f"{experiment}.json",
    ]


def write_result(run_dir: str | Path, experiment: str, result: Result) -> None:
    """Write every part of `result` atomically under `run_dir` (paths: `result_paths`)."""
    run_dir = Path(run_dir)
    for name, table in result.curves.items():
        write_csv(run_dir / f"{experiment}_{name}.csv", table.rows, columns=table.columns)
    for name, arrays in result.arrays.items():
        save_arrays(run_dir / f"{experiment}_{name}", arrays)
    write_json(run_dir / f"{experiment}.json", result.figures)
