"""End to end: the real dvc.yaml in a temp git repo with tiny params: repro, experiments, metrics/plots diff.

The repo composes its params like the project (DVC's Hydra mode over conf/), with a `tiny` profile written
here selected by default, so `dvc exp run -S ...` goes through the same composition as a user's.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from clipprobe.profiles import compose

ROOT = Path(__file__).resolve().parents[1]

# Small enough for CI (about a minute on 2 cores), large enough that every stage does real work.
TINY = {
    "data.shapes.image_size": 32,
    "data.shapes.n_pretrain": 768,
    "data.shapes.n_train": 960,
    "data.shapes.n_val": 480,
    "data.shapes.n_test": 192,
    "clip.pretrain.steps": 12,
    "clip.pretrain.batch_size": 64,
    "clip.pretrain.warmup_steps": 2,
    "embed.batch_size": 256,
    "probe.max_iter": 200,
    "shots": [1, 2],
    "fewshot.draws": 2,
    "fewshot.epochs": 20,
    "vqvae.n_train": 96,
    "vqvae.n_val": 32,
    "vqvae.n_test": 32,
    "vqvae.epochs": 1,
    "vqvae.hidden": 16,
    "vqvae.code_dim": 16,
    "vqvae.codebook_size": 64,
    "segment.n_train": 96,
    "segment.n_val": 32,
    "segment.n_test": 32,
    "segment.epochs": 1,
    "segment.unet_width_div": 8,
}


def _nested(dotted: dict) -> dict:
    out: dict = {}
    for key, value in dotted.items():
        *parents, leaf = key.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def _run(*cmd: str, cwd: Path) -> str:
    # The stages run `python`: make it this interpreter, whether or not its venv is activated.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, "PATH": path, "DVC_NO_ANALYTICS": "1", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def _dvc(*args: str, cwd: Path) -> str:
    return _run(sys.executable, "-m", "dvc", *args, cwd=cwd)


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """A git + DVC repo holding this project's pipeline with tiny params, reproduced and committed once."""
    path = tmp_path_factory.mktemp("pipeline")
    for name in ("dvc.yaml", "stages", "src", "conf"):
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, path / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy(source, path / name)
    shutil.copy(ROOT / "bench" / "fewshot_heldout.py", path / "fewshot_heldout.py")
    tiny = "# @package _global_\n" + yaml.safe_dump(_nested({**TINY, "profile": "tiny", "device": "cpu"}))
    (path / "conf/profile/tiny.yaml").write_text(tiny)
    config = path / "conf/config.yaml"
    config.write_text(config.read_text().replace("  - profile: default", "  - profile: tiny"))
    (path / "params.yaml").write_text(compose(conf_dir=path / "conf"))
    _run("git", "init", "-q", cwd=path)
    _run("git", "config", "user.email", "ci@clipprobe.test", cwd=path)
    _run("git", "config", "user.name", "clipprobe ci", cwd=path)
    _dvc("init", "-q", cwd=path)
    _dvc("config", "core.analytics", "false", cwd=path)
    _dvc("config", "hydra.enabled", "true", cwd=path)
    _run("git", "add", "-A", cwd=path)
    _run("git", "commit", "-qm", "pipeline", cwd=path)
    _dvc("repro", cwd=path)
    _run("git", "add", "-A", cwd=path)
    _run("git", "commit", "-qm", "results", cwd=path)
    return path


@pytest.mark.slow
def test_repro_writes_metrics_and_report(repo):
    metrics = json.loads((repo / "metrics/probe.json").read_text())
    for value in (metrics["zeroshot"]["single"]["acc"], metrics["linear_probe"]["acc"]):
        assert isinstance(value, float) and 0.0 <= value <= 1.0
    report = (repo / "reports/report.md").read_text()
    assert "embedded default" in report
    for link in ("figures/probes.png", "figures/clip_pretrain.png"):
        assert link in report and (repo / "reports" / link).stat().st_size > 0
    assert "Data and pipelines are up to date" in _dvc("status", cwd=repo)


@pytest.mark.slow
def test_heldout_check_reruns_the_sweep_and_writes_nothing(repo):
    out = _run(sys.executable, "fewshot_heldout.py", "--n", "96", "--shots", "1", cwd=repo)
    assert out.startswith("96 held-out images") and "nearest class mean" in out
    rows = [line.split() for line in out.splitlines()[2:]]
    inits = yaml.safe_load((repo / "params.yaml").read_text())["fewshot"]["inits"]
    assert [(row[0], row[1]) for row in rows] == [("1", name) for name in inits]
    assert _run("git", "status", "--porcelain", cwd=repo) == ""
    assert "Data and pipelines are up to date" in _dvc("status", cwd=repo)


@pytest.mark.slow
def test_experiment_shows_in_metrics_diff(repo):
    _dvc("exp", "run", "-S", "probe.C=1.0", cwd=repo)
    diff = json.loads(_dvc("metrics", "diff", "--all", "--json", cwd=repo))
    probe = diff["metrics/probe.json"]
    assert probe["linear_probe.C"]["old"] == pytest.approx(0.316)
    assert probe["linear_probe.C"]["new"] == pytest.approx(1.0)
    assert "linear_probe.acc" in probe and "zeroshot.ensemble.acc" in probe


@pytest.mark.slow
def test_scalar_shots_experiment_changes_fewshot_metrics(repo):
    _dvc("exp", "run", "-S", "shots=4", cwd=repo)
    diff = json.loads(_dvc("metrics", "diff", "--json", cwd=repo))["metrics/fewshot.json"]
    assert any(key.startswith("shots_4.") and value["new"] is not None for key, value in diff.items())
    assert any(key.startswith("shots_1.") and value["new"] is None for key, value in diff.items())
    plots = json.loads(_dvc("plots", "diff", "--json", cwd=repo))["data"]
    assert "plots/fewshot_acc.csv" in plots, f"no few-shot plot in dvc plots diff: {sorted(plots)}"
    (fewshot,) = plots["plots/fewshot_acc.csv"]
    assert fewshot["revisions"] == ["workspace", "HEAD"]  # the experiment overlaid on the last commit
    shots = {row["shots"] for row in fewshot["content"]["data"]["values"] if row["rev"] == "workspace"}
    assert shots == {"4"}


@pytest.mark.slow
def test_paper_profile_is_one_override_and_touches_no_tracked_file(repo):
    before = _run("git", "status", "--porcelain", cwd=repo)  # earlier tests' experiments ran in the workspace
    _dvc("exp", "run", "--queue", "-S", "profile=paper", cwd=repo)
    try:
        assert _run("git", "status", "--porcelain", cwd=repo) == before
        shown = _dvc("exp", "show", "--json", cwd=repo)
        assert (
            '"profile": "paper"' in shown and '"arch": "ViT-B-32"' in shown
        )  # the queued experiment's params
    finally:
        _dvc("queue", "remove", "--all", cwd=repo)
