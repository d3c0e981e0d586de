"""params.yaml validation: the shipped profiles pass; every kind of bad input is one line naming the key."""

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from asserts import one_line

from clipprobe.errors import ClipprobeError
from clipprobe.params import load_params, parse_params

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def default_raw() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


@pytest.mark.parametrize("path", ["params.yaml", "presets/paper.yaml"])
def test_shipped_profiles_validate(path):
    params = load_params(ROOT / path)
    assert params.seed >= 0


def test_paper_preset_selects_the_report_setting():
    params = load_params(ROOT / "presets/paper.yaml")
    assert (params.data.classification, params.clip.arch, params.clip.pretrained) == (
        "cifar100",
        "ViT-B-32",
        "openai",
    )
    assert params.embed.ensemble == "cifar"


def _error_for(raw: dict) -> str:
    with pytest.raises(ClipprobeError) as info:
        parse_params(raw)
    return one_line(info)


def _edit(raw: dict, dotted: str, value) -> dict:
    raw = copy.deepcopy(raw)
    *parents, leaf = dotted.split(".")
    node = raw
    for part in parents:
        node = node[part]
    node[leaf] = value
    return raw


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("probe.Cx", 1.0, "probe.Cx: unknown key; allowed here: features, C, max_iter"),
        ("clip.pretrain.steps", "many", "clip.pretrain.steps: Input should be a valid integer"),
        (
            "data.classification",
            "imagenet",
            "data.classification: Input should be 'shapes', 'cifar100' or 'cifar10'",
        ),
        ("clip.arch", "ResNet-9000", "clip.arch: unknown arch 'ResNet-9000'"),
        ("data.shapes.n_train", -5, "data.shapes.n_train: Input should be greater than 0 (got -5)"),
        ("probe.C", -1.0, "probe.C"),
        ("probe.C", "best", "probe.C"),
        ("clip.pretrained", "laion-nonsense", "clip: pretrained 'laion-nonsense' is not available for"),
        ("data.shapes.max_objects", 9, "data.shapes.max_objects: Input should be less than or equal to 3"),
    ],
)
def test_bad_value_is_one_line_naming_the_key(default_raw, key, value, expected):
    assert expected in _error_for(_edit(default_raw, key, value))


def test_missing_key_is_named(default_raw):
    raw = copy.deepcopy(default_raw)
    del raw["embed"]["batch_size"]
    assert _error_for(raw) == "params.yaml: embed.batch_size: required key is missing"


def test_caption_mix_must_sum_to_one(default_raw):
    message = _error_for(_edit(default_raw, "data.shapes.captions.free", 0.9))
    assert "data.shapes.captions" in message and "sum to 1" in message


def test_cross_group_consistency(default_raw):
    raw = _edit(_edit(default_raw, "probe.features", "pre_projection"), "embed.pre_projection", False)
    assert "embed.pre_projection is false" in _error_for(raw)


def test_stage_with_bad_params_exits_with_one_line_and_writes_nothing(tmp_path, default_raw):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(_edit(default_raw, "probe.C", "best")))
    result = subprocess.run(
        [sys.executable, str(ROOT / "stages/probe.py")], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: params.yaml: probe.C")
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]
