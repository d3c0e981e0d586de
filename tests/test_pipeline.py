"""End to end: the real dvc.yaml in a temp git repo with tiny params: repro, experiments, metrics/plots diff."""

import json
import sys

import pytest
import yaml
from pipeline_repo import dvc, run


def _run(*cmd: str, cwd) -> str:
    return run(*cmd, cwd=cwd).stdout


def _dvc(*args: str, cwd) -> str:
    return dvc(*args, cwd=cwd).stdout


@pytest.fixture(scope="module")
def repo(tiny_repo):
    return tiny_repo  # experiments here run in its workspace: the module runs after those that only read it


@pytest.mark.slow
def test_repro_writes_every_seed_the_summary_and_the_report(repo):
    assert sorted(p.name for p in (repo / "runs").iterdir()) == ["seed0", "seed1"]
    zeroshot = json.loads((repo / "metrics/zeroshot_ensemble.json").read_text())
    assert set(zeroshot) == {"acc1", "acc1_ci95"} and 0.0 <= zeroshot["acc1"] <= 1.0
    summary = json.loads((repo / "results/summary.json").read_text())
    assert summary["seeds"] == [0, 1]
    assert len(summary["probe"]["figures"]["linear_probe"]["per_seed"]) == 2
    report = (repo / "reports/report.md").read_text()
    assert "mean over the 2 training seeds (0, 1)" in report
    for link in ("figures/probes.png", "figures/clip_pretrain.png", "figures/segment_iou.png"):
        assert link in report and (repo / "reports" / link).stat().st_size > 0
    assert "Data and pipelines are up to date" in _dvc("status", cwd=repo)
    shown = _dvc("metrics", "show", cwd=repo).splitlines()
    assert shown[0].split() == [
        "Path",
        "acc1",
        "acc1_ci95",
        "miou",
        "miou_ci95",
        "psnr",
        "psnr_ci95",
        "shots",
    ]
    assert max(map(len, shown)) <= 120


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
    diff = json.loads(_dvc("metrics", "diff", "--json", cwd=repo))
    assert set(diff) == {"metrics/linear_probe.json"}  # only the figure the change moves
    assert set(diff["metrics/linear_probe.json"]) <= {"acc1", "acc1_ci95"}


@pytest.mark.slow
def test_scalar_shots_experiment_changes_only_fewshot_metrics(repo):
    _dvc("exp", "run", "-S", "shots=4", cwd=repo)
    diff = json.loads(_dvc("metrics", "diff", "--json", cwd=repo))
    assert diff and all(path.startswith("metrics/fewshot_") for path in diff), sorted(diff)
    # the same files under the same names: the fewest-shot figures are now at 4 shots
    assert diff["metrics/fewshot_fewest_random.json"]["shots"] == {"old": 1, "new": 4, "diff": 3}
    committed = _run("git", "ls-files", "metrics", cwd=repo).split()
    assert sorted(f"metrics/{p.name}" for p in (repo / "metrics").iterdir()) == sorted(committed)
    plots = json.loads(_dvc("plots", "diff", "--json", cwd=repo))["data"]
    assert "plots/fewshot_acc.csv" in plots, f"no few-shot plot in dvc plots diff: {sorted(plots)}"
    (fewshot,) = plots["plots/fewshot_acc.csv"]
    assert fewshot["revisions"] == ["workspace", "HEAD"]  # the experiment overlaid on the last commit
    shots = {row["shots"] for row in fewshot["content"]["data"]["values"] if row["rev"] == "workspace"}
    assert shots == {"4"}


@pytest.mark.slow
def test_one_seed_experiment_reuses_that_seed_and_drops_seed_intervals(repo):
    out = _dvc("exp", "run", "-S", "seeds=[0]", cwd=repo)
    assert "Running stage 'clip@0'" not in out and "Running stage 'summary'" in out
    assert "psnr_ci95" not in json.loads((repo / "metrics/vqvae_clip.json").read_text())
    assert "from the single training seed 0" in (repo / "reports/report.md").read_text()


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
