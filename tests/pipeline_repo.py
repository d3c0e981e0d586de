"""A git + DVC repo holding this project's pipeline with a composed profile, for end-to-end tests.

The repo composes its params like the project (DVC's Hydra mode over conf/), with the profile given here
(written to conf/profile/) selected by default, so `dvc exp run -S ...` goes through the same composition
as a user's.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from clipprobe.profiles import compose

ROOT = Path(__file__).resolve().parents[1]

# Small enough for CI (about two minutes on 2 cores), large enough that every stage does real work.
TINY = {
    "data.shapes.image_size": 32,
    "data.shapes.n_pretrain": 768,
    "data.shapes.n_train": 960,
    "data.shapes.n_val": 480,
    "data.shapes.n_test": 192,
    "seeds": [0, 1],
    "device": "cpu",
    "clip.pretrain.steps": 12,
    "clip.pretrain.batch_size": 64,
    "clip.pretrain.warmup_steps": 2,
    "embed.batch_size": 256,
    "embed.views": 2,
    "probe.max_iter": 200,
    "shots": [1, 2],
    "fewshot.draws": 2,
    "fewshot.epochs": 20,
    "fewshot.modes.shots": [2],  # 20 train images per class: 8 of one mode are not always there
    "vqvae.n_train": 96,
    "vqvae.n_val": 32,
    "vqvae.n_test": 32,
    "vqvae.max_epochs": 1,
    "vqvae.hidden": 16,
    "vqvae.code_dim": 16,
    "vqvae.codebook_size": 64,
    "segment.n_train": 96,
    "segment.n_val": 32,
    "segment.n_test": 32,
    "segment.max_epochs": 1,
    "segment.unet_width_div": 8,
}


def nested(dotted: dict) -> dict:
    out: dict = {}
    for key, value in dotted.items():
        *parents, leaf = key.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


# No command of a test repo runs this long (the longest, a paper-preset `dvc repro`, takes about 4 min on 2
# cores): past it, the call is stuck and the test fails instead of holding CI until its own limit.
COMMAND_TIMEOUT_S = 1200


def run(
    *cmd: str, cwd: Path, check: bool = True, env: dict | None = None, log: Path | None = None
) -> subprocess.CompletedProcess:
    """Run `cmd` to its end, within COMMAND_TIMEOUT_S. Its output is captured, or appended to `log` when given:
    a command that leaves a daemon behind (`dvc queue start`'s workers) must not hand it our pipes, or the
    call would last as long as the daemon."""
    # The stages run `python`: make it this interpreter, whether or not its venv is activated.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, "PATH": path, "DVC_NO_ANALYTICS": "1", "HF_HUB_OFFLINE": "1", **(env or {})}
    with open(log, "a") if log else contextlib.nullcontext() as out:
        streams = (
            {"stdout": out, "stderr": subprocess.STDOUT, "stdin": subprocess.DEVNULL}
            if out
            else {"capture_output": True}
        )
        try:
            result = subprocess.run(cmd, cwd=cwd, env=env, text=True, timeout=COMMAND_TIMEOUT_S, **streams)
        except subprocess.TimeoutExpired as stuck:
            pytest.fail(
                f"{' '.join(cmd)} still running after {COMMAND_TIMEOUT_S} s:\n{stuck.stdout}\n{stuck.stderr}"
            )
    if check:
        output = log.read_text() if log else f"{result.stdout}\n{result.stderr}"
        assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{output}"
    return result


def dvc(
    *args: str, cwd: Path, check: bool = True, env: dict | None = None, log: Path | None = None
) -> subprocess.CompletedProcess:
    return run(sys.executable, "-m", "dvc", *args, cwd=cwd, check=check, env=env, log=log)


def _merged(base: dict, top: dict) -> dict:
    out = dict(base)
    for key, value in top.items():
        out[key] = (
            _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        )
    return out


def report_records() -> list[str]:
    """The committed records the report stage reads besides results/: its deps under docs/ in dvc.yaml."""
    report = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["report"]
    return [dep for dep in report["deps"] if dep.startswith("docs/")]


def make_repo(
    path: Path,
    overrides: dict,
    extra: dict[str, Path] | None = None,
    repro: bool = True,
    base: str | None = None,
    env: dict | None = None,
) -> Path:
    """The project's pipeline in a fresh git + DVC repo at `path`, its default profile being conf/'s
    default plus the profile `base` (conf/profile/<base>.yaml, e.g. "paper") plus `overrides` (dotted keys);
    committed, reproduced (in `env`) and committed again when `repro`. `extra` copies more files in
    (repo-relative name -> source)."""
    for name in ("dvc.yaml", "stages", "src", "conf", *report_records()):
        source = ROOT / name
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, path / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy(source, path / name)
    for name, source in (extra or {}).items():
        shutil.copy(source, path / name)
    layers = (
        yaml.safe_load((ROOT / "conf/profile" / f"{base}.yaml").read_text()) if base else {"profile": "tiny"}
    )
    profile = "# @package _global_\n" + yaml.safe_dump(_merged(layers, nested(overrides)))
    (path / "conf/profile/tiny.yaml").write_text(profile)
    config = path / "conf/config.yaml"
    config.write_text(config.read_text().replace("  - profile: default", "  - profile: tiny"))
    (path / "params.yaml").write_text(compose(conf_dir=path / "conf"))
    run("git", "init", "-q", cwd=path)
    run("git", "config", "user.email", "ci@clipprobe.test", cwd=path)
    run("git", "config", "user.name", "clipprobe ci", cwd=path)
    dvc("init", "-q", cwd=path)
    dvc("config", "core.analytics", "false", cwd=path)
    dvc("config", "hydra.enabled", "true", cwd=path)
    shutil.copytree(ROOT / ".dvc/plots", path / ".dvc/plots")  # the plot template and the offline page
    dvc("config", "plots.html_template", "plots/offline.html", cwd=path)
    shutil.copy(ROOT / ".gitignore", path / ".gitignore")
    run("git", "add", "-A", cwd=path)
    run("git", "commit", "-qm", "pipeline", cwd=path)
    if repro:
        dvc("repro", cwd=path, env=env)
        run("git", "add", "-A", cwd=path)
        run("git", "commit", "-qm", "results", cwd=path)
    return path
