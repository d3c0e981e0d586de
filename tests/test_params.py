"""params.yaml: composed from conf/, the profiles validate, and every kind of bad input is one line naming the key."""

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Literal, get_args, get_origin

import pytest
import yaml
from helpers import edited, one_line
from pydantic import BaseModel

from clipprobe.errors import ClipprobeError
from clipprobe.params import Params, load_params, parse_params
from clipprobe.profiles import HEADER, compose

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"

# The paper profile's values before profiles were composed (presets/paper.yaml, a full copy of params.yaml).
PAPER = {
    "data.classification": "cifar100",
    "data.counting": "clevr",
    "data.vqvae": "cifar10",
    "data.segment": "pets",
    "clip.arch": "ViT-B-32",
    "clip.pretrained": "openai",
    "embed.batch_size": 1024,
    "embed.ensemble": "cifar",
    "tower.arch": "RN50",
    "tower.pretrained": "openai",
    "tower.size": 224,
    "counting.count_templates": ["a photo of {}."],  # CLIP's prompts.md for CLEVRCounts: its one template
    "counting.count_nouns": ["object", "objects"],
    "counting.number_words": False,
    "counting.position_templates": ["a photo of an object in the {}."],
    "counting.prepool_grid": 3,
    "counting.Cs": [0.001, 0.01, 0.1, 1.0, 10.0, 100.0],
    "counting.max_iter": 1000,
    "counting.batch_size": 256,
    "vqvae.n_train": 49500,
    "vqvae.n_test": 10000,
    "vqvae.max_epochs": 100,
    "vqvae.batch_size": 128,
    "vqvae.lr": 0.0002,
    "vqvae.hidden": 128,
    "vqvae.code_dim": 128,
    "vqvae.codebook_size": 768,
    "segment.n_train": 3312,
    "segment.n_val": 368,
    "segment.n_test": 3669,
    "segment.max_epochs": 50,
    "segment.lr": 0.0001,
    "segment.unet_encoders": ["imagenet", "scratch"],
    "segment.unet_width_div": 1,
    "fewshot.draws": 20,
    "fewshot.modes.attributes": [],
}


def _composed(*overrides: str) -> dict:
    return yaml.safe_load(compose(overrides, conf_dir=CONF))


def test_committed_params_yaml_is_the_default_composition():
    assert (ROOT / "params.yaml").read_text() == HEADER + compose([], conf_dir=CONF)


def test_paper_profile_is_the_default_plus_its_overrides_and_validates(default_raw):
    paper = _composed("profile=paper")
    expected = {**default_raw, "profile": "paper"}
    for key, value in PAPER.items():
        expected = edited(expected, key, value)
    assert paper == expected
    params = parse_params(paper)
    assert (params.data.classification, params.clip.arch, params.tower.arch) == (
        "cifar100",
        "ViT-B-32",
        "RN50",
    )


def test_paper_profile_states_only_what_differs():
    overrides = (CONF / "profile" / "paper.yaml").read_text().splitlines()
    assert len(overrides) <= 60
    assert yaml.safe_load("\n".join(overrides))["profile"] == "paper"


def test_overrides_compose_like_dvc_exp_run_set_param():
    assert _composed("shots=4")["shots"] == 4
    assert _composed("profile=paper", "fewshot.draws=3")["fewshot"]["draws"] == 3


def _error_for(raw: dict) -> str:
    with pytest.raises(ClipprobeError) as info:
        parse_params(raw)
    return one_line(info)


BAD_PARAMS = yaml.safe_load((ROOT / "tests" / "bad_params.yaml").read_text())


@pytest.mark.parametrize(
    ("key", "value", "expected"), BAD_PARAMS, ids=[f"{key}={value!r}" for key, value, _ in BAD_PARAMS]
)
def test_bad_value_is_one_line_naming_the_key(default_raw, key, value, expected):
    assert _error_for(edited(default_raw, key, value)) == f"params.yaml: {key}: {expected}"


def test_missing_key_is_named(default_raw):
    raw = edited(default_raw, "embed", dict(default_raw["embed"]))
    del raw["embed"]["batch_size"]
    assert _error_for(raw) == "params.yaml: embed.batch_size: required key is missing"


def test_caption_mix_must_sum_to_one(default_raw):
    message = _error_for(edited(default_raw, "data.shapes.captions.free", 0.9))
    assert (
        message == "params.yaml: data.shapes.captions: free + class_like + count_only must sum to 1 (got 1.3)"
    )


def test_cross_group_consistency(default_raw):
    raw = edited(edited(default_raw, "probe.features", "pre_projection"), "embed.pre_projection", False)
    assert (
        _error_for(raw) == "params.yaml: probe.features is 'pre_projection' but embed.pre_projection is false"
    )


def test_validation_never_imports_torch():
    code = (
        "import sys; from clipprobe.params import load_params; load_params(); print('torch' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


def test_stage_with_bad_params_exits_with_one_line_and_writes_nothing(tmp_path, default_raw):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(edited(default_raw, "probe.C", "best")))
    result = subprocess.run(
        [sys.executable, str(ROOT / "stages/probe.py"), "0"], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr == "error: params.yaml: probe.C: must be a positive number or 'auto' (got 'best')\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


def test_shipped_profile_loads_from_disk():
    assert load_params(ROOT / "params.yaml").profile == "default"


def _documented_keys() -> dict[str, str]:
    """conf/config.yaml's keys (dotted) -> the documentation that stands with them: the key line's comment,
    the comment lines right above it, or, for a key without either, its group's."""
    docs, stack, above = {}, [], []
    for line in (CONF / "config.yaml").read_text().splitlines():
        code, _, comment = line.partition("#")
        if not code.strip():
            above = above + [comment.strip()] if comment.strip() else []
            continue
        indent, key = len(code) - len(code.lstrip()), code.strip().split(":")[0]
        if key.startswith("- ") or key == "defaults":
            above = []
            continue
        stack = [(i, k) for i, k in stack if i < indent] + [(indent, key)]
        dotted = ".".join(k for _, k in stack)
        own = " ".join([*above, comment.strip()]).strip()
        docs[dotted] = own or docs.get(".".join(k for _, k in stack[:-1]), "")
        above = []
    return docs


def _fields(model: type[BaseModel], prefix: str = "") -> dict[str, object]:
    """Every leaf field of the schema, dotted, with its annotation."""
    out = {}
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            out.update(_fields(annotation, f"{prefix}{name}."))
        else:
            out[f"{prefix}{name}"] = annotation
    return out


def _choices(annotation: object) -> tuple[str, ...]:
    """The values a Literal (or a list of one) allows; () for any other type."""
    while get_origin(annotation) in (list, Annotated):
        annotation = get_args(annotation)[0]
    return get_args(annotation) if get_origin(annotation) is Literal else ()


def test_every_param_is_documented_once_in_conf():
    """conf/config.yaml is the one place the params are documented (params.py holds types and bounds): every
    key of the schema has its words there, and a key with a fixed set of values lists exactly the schema's."""
    docs = _documented_keys()
    fields = _fields(Params)
    assert not [key for key in fields if not docs.get(key)], "keys with no words in conf/config.yaml"
    for key, annotation in fields.items():
        if choices := _choices(annotation):
            assert " | ".join(choices) in docs[key], (
                f"conf/config.yaml: {key} must list {' | '.join(choices)}"
            )


@pytest.mark.parametrize(
    ("args", "broken", "expected"),
    [
        (
            ["profile=nope"],
            None,
            "error: conf/ with ['profile=nope']: In 'config': Could not find 'profile/nope'",
        ),
        (["nokey=3"], None, "error: conf/ with ['nokey=3']: Could not override 'nokey'."),
        (["shots=0"], None, "error: conf/ with ['shots=0']: shots: must be support images per class"),
        ([], "seeds: [0, 1\n", "error: conf/config.yaml, line "),
    ],
)
def test_profiles_entry_point_errors_are_one_line_and_write_nothing(tmp_path, args, broken, expected):
    shutil.copytree(CONF, tmp_path / "conf")
    if broken:
        with (tmp_path / "conf/config.yaml").open("a") as config:
            config.write(broken)
    result = subprocess.run(
        [sys.executable, "-m", "clipprobe.profiles", *args, "--output", "out.yaml"],
        cwd=tmp_path, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 2 and result.stderr.startswith(expected), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "out.yaml").exists()
