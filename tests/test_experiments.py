"""The one experiment contract: `evaluate(inputs: Inputs, cfg: <its params group>) -> Result`, and a stage
writes the Result exactly where dvc.yaml says."""

from __future__ import annotations

import dataclasses
import inspect
import typing

import numpy as np
import pytest

from clipprobe import paths
from clipprobe.decoders import segment, vqvae
from clipprobe.experiment import Result, Table, flatten, result_paths, write_result
from clipprobe.params import Params
from clipprobe.probes import classify, counting
from clipprobe.probes.fewshot import modes, sweep

EXPERIMENTS = {"probe": classify, "fewshot": sweep, "modes": modes, "counting": counting, "vqvae": vqvae,
               "segment": segment}  # fmt: skip
GROUPS = {"modes": "fewshot"}  # the params group of a stage not named after one: its experiment's recipe


@pytest.mark.parametrize("stage", EXPERIMENTS)
def test_every_experiment_has_the_one_signature(stage):
    module = EXPERIMENTS[stage]
    assert list(inspect.signature(module.evaluate).parameters) == ["inputs", "cfg"]
    hints = typing.get_type_hints(module.evaluate)
    assert hints["inputs"] is module.Inputs and dataclasses.is_dataclass(module.Inputs)
    assert hints["cfg"] is Params.model_fields[GROUPS.get(stage, stage)].annotation  # one group, nothing else
    assert hints["return"] is Result


def test_a_result_lands_where_the_stage_declares_its_outputs(tmp_path):
    result = Result(
        flatten({"model": {"miou": 0.5, "iou": {"circle": 0.25}}, "n": 3}),
        curves={"curves": Table(["epoch", "loss"], [{"epoch": 1, "loss": 0.5}])},
        arrays={"overlays": {"images": np.zeros((1, 2, 2, 3), dtype=np.uint8)}},
    )
    assert result.figures == {"model.miou": 0.5, "model.iou.circle": 0.25, "n": 3}
    write_result(tmp_path, "segment", result)
    written = result_paths(tmp_path, "segment", result)
    assert all(path.exists() for path in written)
    declared = paths.outputs("segment", 0)
    assert sorted(path.name for path in written) == sorted(path.name for path in declared)
