"""Bad files and bad numbers: every stage answers with exit code 2 and one line naming the file or key.

Each case breaks one thing in a workspace built from the reproduced tiny pipeline (its files linked, the
broken one written in their place), runs one stage script as a subprocess, and checks: exit code 2, exactly
one stderr line, naming what is broken, no traceback, and the stage's outputs untouched. The cases run
concurrently (two at a time), the timed offline ones alone. A few more run through `dvc repro` itself.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from helpers import edited
from pipeline_repo import dvc

from clipprobe.profiles import compose

INPUTS = ("data", "models", "features", "runs", "results")


def _truncate(path: Path) -> bytes:
    return path.read_bytes()[: len(path.read_bytes()) // 2]


def _garbage_header(path: Path) -> bytes:
    data = path.read_bytes()
    return b"\x00junk\xff" + data[6:]


def _torch_bytes(obj: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _features(path: Path, **changes) -> bytes:
    feats = torch.load(path, weights_only=True)
    for key, value in changes.items():
        if value is None:
            del feats[key]
        else:
            feats[key] = value(feats[key])
    return _torch_bytes(feats)


def _weights(path: Path, change) -> bytes:
    state = torch.load(path, weights_only=True)
    key = next(key for key, value in state.items() if value.is_floating_point())
    state[key] = change(state[key])
    return _torch_bytes(state)


def _json(path: Path, **changes) -> bytes:
    return json.dumps({**json.loads(path.read_text()), **changes}).encode()


def _first_cell(path: Path, value: str) -> bytes:
    """The CSV with its first data row's second cell replaced by `value`."""
    lines = path.read_text().splitlines()
    cells = lines[1].split(",")
    cells[1] = value
    return "\n".join([lines[0], ",".join(cells), *lines[2:]]).encode() + b"\n"


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


@dataclass
class Case:
    stage: str  # stages/<stage>.py, run for seed 0 unless it is data/summary/report
    names: str  # what the one stderr line must name
    files: dict[str, object] = field(
        default_factory=dict
    )  # repo-relative path -> bytes, callable(path), or "dir"/None
    params: dict[str, object] = field(default_factory=dict)  # dotted params to change
    outputs: tuple[str, ...] = ()  # files that must be left as they were
    profile: str | None = None  # compose params.yaml with this profile (the offline paper preset)
    seed: str = "0"  # the argument of a per-seed stage

    @property
    def argv(self) -> list[str]:
        return [
            sys.executable,
            f"stages/{self.stage}.py",
            *([] if self.stage in ("data", "summary", "report") else [self.seed]),
        ]


LOCAL = {"data.downloads": "downloads"}  # the offline cases' downloads folder: empty, in the workspace

CASES = {
    "truncated images.npy": Case("clip", "data/shapes/pretrain/images.npy", {"data/shapes/pretrain/images.npy": _truncate}),
    "garbage .npy header": Case("counting", "data/shapes/test/images.npy", {"data/shapes/test/images.npy": _garbage_header}),
    "labels out of range": Case("embed", "data/shapes/val/labels.npy", {"data/shapes/val/labels.npy": lambda p: _npy(np.full(np.load(p).shape, 999, dtype=np.int64))}),
    "bad mask values": Case("segment", "data/shapes/train/masks.npy", {"data/shapes/train/masks.npy": lambda p: _npy(np.full(np.load(p).shape, 77, dtype=np.uint8))}),
    "broken meta.json": Case("embed", "data/shapes/meta.json", {"data/shapes/meta.json": b"{not json"}),
    "random bytes as weights": Case("embed", "models/clip/seed0/weights.pt", {"models/clip/seed0/weights.pt": os.urandom(4096)}),
    "weights of another arch": Case("counting", "models/clip/seed0/weights.pt", {"models/clip/seed0/weights.pt": lambda p: _torch_bytes({"visual.proj": torch.zeros(2, 2)})}),
    "model.json without arch": Case("vqvae", "models/clip/seed0/model.json", {"models/clip/seed0/model.json": b'{"pretrained": "scratch"}'}),
    "truncated features": Case("probe", "features/seed0/train.pt", {"features/seed0/train.pt": _truncate}, outputs=("runs/seed0/probe.json",)),
    "features of the wrong width": Case("fewshot", "features/seed0/val.pt", {"features/seed0/val.pt": lambda p: _features(p, image=lambda t: torch.cat([t, t[:, :1]], dim=1))}, outputs=("runs/seed0/fewshot.json",)),
    "features without labels": Case("probe", "features/seed0/test.pt", {"features/seed0/test.pt": lambda p: _features(p, labels=None)}),
    "int64 features": Case("probe", "features/seed0/train.pt", {"features/seed0/train.pt": lambda p: _features(p, image=lambda t: t.long())}, outputs=("runs/seed0/probe.json",)),
    "NaN features": Case("fewshot", "features/seed0/test.pt", {"features/seed0/test.pt": lambda p: _features(p, image=lambda t: t * float("nan"))}),
    "missing text.pt": Case("fewshot", "features/seed0/text.pt", {"features/seed0/text.pt": None}),
    "a directory for a file": Case("probe", "features/seed0/test.pt", {"features/seed0/test.pt": "dir"}),
    "unwritable output folder": Case("probe", "runs/seed0", {"runs/seed0": b"a file where the folder goes"}),
    "broken per-seed result": Case("summary", "runs/seed0/probe.json", {"runs/seed0/probe.json": b'{"zeroshot_single": '}, outputs=("results/summary.json",)),
    "missing hits": Case("summary", "runs/seed1/counting_hits", {"runs/seed1/counting_hits": None}),
    "broken summary": Case("report", "results/summary.json", {"results/summary.json": b"[1, 2"}, outputs=("reports/report.md",)),
    "seed beyond numpy's": Case("data", "seed", params={"seed": 2**32}),
    # poisoned values: each refused by the checked loader of the file that holds it
    "NaN in the weights": Case("embed", "models/clip/seed0/weights.pt: expected finite weights", {"models/clip/seed0/weights.pt": lambda p: _weights(p, lambda t: t * float("nan"))}),
    "float16 weights": Case("counting", "models/clip/seed0/weights.pt: expected float32 weights", {"models/clip/seed0/weights.pt": lambda p: _weights(p, lambda t: t.half())}),
    "model.json with a 2-channel mean": Case("vqvae", "models/clip/seed0/model.json: expected mean as 3 finite numbers", {"models/clip/seed0/model.json": lambda p: _json(p, mean=[0.5, 0.5])}),
    "model.json with a zero std": Case("segment", "models/clip/seed0/model.json: expected std as 3 positive", {"models/clip/seed0/model.json": lambda p: _json(p, std=[0.3, 0.0, 0.3])}),
    "NaN in a per-seed CSV": Case("summary", "runs/seed1/segment_curves.csv: expected finite numbers in every cell", {"runs/seed1/segment_curves.csv": lambda p: _first_cell(p, "nan")}, outputs=("results/summary.json",)),
    "a word in a per-seed CSV": Case("summary", "runs/seed0/vqvae_curves.csv: expected finite numbers in every cell", {"runs/seed0/vqvae_curves.csv": lambda p: _first_cell(p, "oops")}, outputs=("results/summary.json",)),
    "a word in a per-seed JSON": Case("summary", "runs/seed0/counting.json: expected a number under every key", {"runs/seed0/counting.json": lambda p: _json(p, **{"count.chance": "a third"})}),
    "sample images the report shows, missing": Case("report", "results/segment_overlays", {"results/segment_overlays": None}, outputs=("reports/report.md",)),
    "a seed beyond numpy's as the stage argument": Case("clip", "usage: python stages/clip.py <seed>", seed="99999999999"),
    "a non-ASCII digit as the stage argument": Case("embed", "usage: python stages/embed.py <seed>", seed="\u0663"),
    "diverging few-shot lr": Case("fewshot", "fewshot.linear.lr", params={"fewshot.linear.lr": 1e30}, outputs=("runs/seed0/fewshot.json",)),
    "diverging pretraining lr": Case("clip", "clip.pretrain.lr", params={"clip.pretrain.lr": 1e12}, outputs=("runs/seed0/clip_pretrain.csv",)),
    # the paper preset offline: each stage that fetches names its own file or key, within seconds (downloads
    # in the workspace, never the user's ~/.cache/clipprobe, whatever it holds)
    "offline: CIFAR": Case("data", "not found in downloads/ and the download failed", params=LOCAL, profile="paper"),
    "offline: ViT-B-32 weights": Case("clip", "clip.pretrained", params=LOCAL, profile="paper"),
    "offline: RN50 tower for counting": Case("counting", "tower.pretrained", params=LOCAL, profile="paper"),
    "offline: RN50 tower for segment": Case("segment", "tower.pretrained", params=LOCAL, profile="paper"),
}  # fmt: skip
OFFLINE_SECONDS = 10


def _workspace(repo: Path, root: Path, case: Case) -> None:
    """`root` mirrors the repo's inputs, every file a symlink, but for the case's files written in place."""
    for top in INPUTS:
        for source in (repo / top).rglob("*"):
            if source.is_file() and ".gitignore" not in source.name:
                target = root / source.relative_to(repo)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.symlink_to(source)
    for name in ("stages", "params.yaml"):
        (root / name).symlink_to(repo / name)
    if case.params or case.profile:
        (root / "params.yaml").unlink()
        params = yaml.safe_load((repo / "params.yaml").read_text())
        if case.profile:
            params = yaml.safe_load(compose([f"profile={case.profile}"], conf_dir=repo / "conf"))
        for key, value in case.params.items():
            params = edited(params, key, value)
        (root / "params.yaml").write_text(yaml.safe_dump(params))
    for rel, content in case.files.items():
        target = root / rel
        original = repo / rel
        if target.is_symlink() or target.is_file():
            target.unlink()
        elif target.is_dir():
            shutil.rmtree(target)
        if callable(content):
            content = content(original)
        if content == "dir":
            target.mkdir(parents=True)
        elif content is not None:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)


def _snapshot(root: Path, names: tuple[str, ...]) -> dict[str, bytes | None]:
    return {name: (root / name).read_bytes() if (root / name).is_file() else None for name in names}


@pytest.fixture(scope="module")
def outcomes(tiny_repo, tmp_path_factory) -> dict[str, tuple[subprocess.CompletedProcess, bool, float]]:
    """Every case run once: (the finished process, whether its outputs were left untouched, its seconds)."""

    def one(name: str, case: Case):
        root = tmp_path_factory.mktemp(name.replace(" ", "_").replace("'", ""))
        _workspace(tiny_repo, root, case)
        before = _snapshot(root, case.outputs)
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "CLIPPROBE_OFFLINE": "1"}  # never download here
        start = time.perf_counter()
        result = subprocess.run(case.argv, cwd=root, capture_output=True, text=True, env=env, timeout=300)
        return result, _snapshot(root, case.outputs) == before, time.perf_counter() - start

    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(one, name, case) for name, case in CASES.items() if not case.profile}
        done = {name: future.result() for name, future in futures.items()}
    # the offline cases are timed: one at a time, so that no other case shares the CPU
    return done | {name: one(name, case) for name, case in CASES.items() if case.profile}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_line_naming_it(outcomes, name):
    result, untouched, seconds = outcomes[name]
    lines = result.stderr.splitlines()
    assert result.returncode == 2, f"exit {result.returncode}:\n{result.stderr[-2000:]}"
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("error: ") and CASES[name].names in lines[0], lines[0]
    assert untouched, "the stage changed its outputs before failing"
    if CASES[name].profile:
        assert seconds < OFFLINE_SECONDS, f"took {seconds:.1f} s to say it is offline"


@pytest.mark.slow
def test_dvc_repro_stops_at_the_bad_file_with_its_line(tiny_repo, tmp_path):
    """Through DVC itself: a corrupted cached input and a nonsense param, each one line in DVC's output."""
    repo = tmp_path / "repo"
    shutil.copytree(tiny_repo, repo, symlinks=True)
    lock = (repo / "dvc.lock").read_bytes()
    features = repo / "features/seed1/train.pt"
    data = features.read_bytes()
    features.unlink()  # DVC links cached outs read-only: replace, never edit in place
    features.write_bytes(data[: len(data) // 3])
    result = dvc("repro", "--single-item", "probe@1", cwd=repo, check=False)  # not embed@1 again
    assert result.returncode != 0
    assert (
        "error: features/seed1/train.pt: expected a weights_only torch file" in result.stdout + result.stderr
    )
    assert "Traceback" not in result.stdout + result.stderr
    assert (repo / "dvc.lock").read_bytes() == lock  # nothing recorded as a result
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["fewshot"]["linear"]["lr"] = float("inf")
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    result = dvc("repro", "--single-item", "fewshot@0", cwd=repo, check=False)
    assert (
        "error: params.yaml: fewshot.linear.lr: must be a finite number (got inf)"
        in result.stdout + result.stderr
    )
    assert (repo / "dvc.lock").read_bytes() == lock
