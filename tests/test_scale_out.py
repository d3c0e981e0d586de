"""Scaling out with DVC's own machinery: the run-cache, the experiment queue, two machines sharing a Git and a
DVC remote, and the compact experiments view. Every recipe must give the bytes of a serial `dvc repro`."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from pipeline_repo import TINY, dvc, make_repo, run

from clipprobe import experiments

pytestmark = pytest.mark.slow
SEEDS = (0, 1)  # TINY's
PER_SEED = ("clip", "embed", "probe", "fewshot", "modes", "counting", "vqvae", "segment")
# summary and report write the committed results (metrics/, plots/, results/, reports/): git tracks them, so
# DVC cannot cache them, and DVC 3.67 keeps no run-cache entry for a stage with such an output
NOT_RUN_CACHED = ("summary", "report")
RESULTS = ("dvc.lock", "metrics", "plots", "results", "reports")
QUEUE_TIMEOUT_S = 900  # both TINY seeds through two workers take about 2 min on 2 cores


def _files(root: Path, names=RESULTS) -> dict[str, bytes]:
    out = {}
    for name in names:
        top = root / name
        for path in sorted([top] if top.is_file() else top.rglob("*")):
            if path.is_file() and path.name != ".gitignore":
                out[str(path.relative_to(root))] = path.read_bytes()
    return out


def _committed(root: Path) -> dict[str, bytes]:
    """The results as `root`'s last commit holds them: those of its serial `dvc repro` (other tests run
    experiments in that workspace afterwards)."""
    names = run("git", "ls-files", *RESULTS, cwd=root).stdout.split()
    return {
        name: subprocess.run(
            ["git", "show", f"HEAD:{name}"], cwd=root, capture_output=True, check=True
        ).stdout
        for name in names
        if not name.endswith(".gitignore")
    }


def _run_cached(root: Path) -> set[str]:
    """The commands of every stage with an entry in the repo's run-cache."""
    return {
        yaml.safe_load(p.read_text())["cmd"] for p in (root / ".dvc/cache/runs").rglob("*") if p.is_file()
    }


def _seed_targets(seed: int) -> list[str]:
    return [f"{stage}@{seed}" for stage in PER_SEED]


def test_every_stage_but_the_committed_results_enters_the_run_cache(tiny_repo):
    cached = _run_cached(tiny_repo)
    expected = {"python stages/data.py"} | {f"python stages/{s}.py {k}" for s in PER_SEED for k in SEEDS}
    assert cached == expected, sorted(cached ^ expected)


def _clone(remote: Path, path: Path, store: Path) -> Path:
    run("git", "clone", "-q", str(remote), str(path), cwd=remote.parent)
    dvc("remote", "add", "--local", "-d", "store", str(store), cwd=path)
    return path


def test_two_machines_share_a_git_and_a_dvc_remote_and_a_third_reproduces_nothing(tiny_repo, tmp_path):
    """Each node runs one seed and pushes its run-cache; a third pulls it and reproduces: no stage trains, and
    every result is the serial run's to the byte."""
    origin = make_repo(tmp_path / "origin", TINY, repro=False)
    remote, store = tmp_path / "remote.git", tmp_path / "dvc-store"
    run("git", "clone", "-q", "--bare", str(origin), str(remote), cwd=tmp_path)
    for seed in SEEDS:
        node = _clone(remote, tmp_path / f"node{seed}", store)
        dvc("repro", *_seed_targets(seed), cwd=node)
        dvc("push", "--run-cache", cwd=node)
    third = _clone(remote, tmp_path / "aggregate", store)
    log = dvc("repro", "--pull", cwd=third).stdout  # run-cache entries and their outputs come from the remote
    assert not [line for line in log.splitlines() if line.startswith("Running stage '") and "@" in line], log
    assert all(f"Stage '{t}' is cached - skipping run" in log for k in SEEDS for t in _seed_targets(k)), log
    assert _files(third) == _committed(tiny_repo)


def test_one_queued_experiment_per_seed_then_a_repro_that_trains_nothing(tiny_repo, tmp_path):
    repo = make_repo(tmp_path / "queue", TINY, repro=False)
    for seed in SEEDS:
        dvc("exp", "run", "--queue", "-S", f"seeds=[{seed}]", cwd=repo)
    workers = tmp_path / "workers.log"
    dvc("queue", "start", "-j", "2", cwd=repo, log=workers)
    try:
        deadline = time.monotonic() + QUEUE_TIMEOUT_S
        while "Queued" in (status := dvc("queue", "status", cwd=repo).stdout) or "Running" in status:
            assert time.monotonic() < deadline, f"queue unfinished after {QUEUE_TIMEOUT_S} s:\n{status}"
            time.sleep(5)
    finally:  # no worker outlives the test, finished or stuck
        dvc("queue", "stop", "--kill", cwd=repo, check=False, log=workers)
    assert status.count("Success") == len(SEEDS), status
    log = dvc("repro", cwd=repo).stdout
    assert not [line for line in log.splitlines() if line.startswith("Running stage '") and "@" in line], log
    assert _files(repo) == _committed(tiny_repo)


def test_no_metrics_file_outlives_an_experiment_and_the_view_fits(tiny_repo, tmp_path):
    """Headline files are named whatever the params, so returning to the baseline leaves none stale; the
    compact view shows the experiment against its baseline in 120 columns."""
    repo = tmp_path / "stale"
    shutil.copytree(tiny_repo, repo, symlinks=True)
    before = sorted(p.name for p in (repo / "metrics").iterdir())
    dvc("exp", "run", "-S", "shots=2", cwd=repo)
    assert sorted(p.name for p in (repo / "metrics").iterdir()) == before
    shots = json.loads((repo / "metrics/fewshot_fewest_random.json").read_text())["shots"]
    assert shots == 2
    view = experiments.table(experiments.collect(str(repo)))
    lines = view.splitlines()
    assert max(map(len, lines)) <= 120 and "shots" in lines[0].split(), view
    assert "fs_fewest_random" in view and "paired by seed" in view
    run("git", "checkout", "--", ".", cwd=repo)
    dvc("checkout", cwd=repo)
    assert run("git", "status", "--porcelain", cwd=repo).stdout == ""
    shown = json.loads(dvc("metrics", "show", "--json", cwd=repo).stdout)
    files = {name for revision in shown.values() for name in revision["data"]}
    assert files == {f"metrics/{name}" for name in before}
