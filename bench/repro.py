"""Benchmark: wall time of `dvc repro` of the embedded default, per stage and in total, plus a no-op repro.

Copies the repository's tracked pipeline (dvc.yaml, params.yaml, stages/, src/) into a fresh git + DVC repo
under a temporary folder, so the run starts from nothing (no DVC cache, no run-cache), then runs each stage
in the order `dvc repro` would (`dvc repro -s <stage>`: a per-seed stage runs all its seeds), then one whole
`dvc repro` that must do nothing. Prints one table. Run from the repository root with the venv active, on
an otherwise idle machine:

    python bench/repro.py                # the embedded default as params.yaml holds it (3 seeds)
    python bench/repro.py --seeds 0      # the quick one-seed run (dvc exp run -S 'seeds=[0]')
    python bench/repro.py --keep /tmp/r  # keep the repo afterwards (e.g. to inspect outputs)
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if result.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return time.perf_counter() - start


def _stage_order(repo: Path) -> list[str]:
    """Stages in dvc.yaml order, which lists every stage after its dependencies."""
    return list(yaml.safe_load((repo / "dvc.yaml").read_text())["stages"])


def pipeline_copy(repo: Path, seeds: list[int] | None = None) -> None:
    """A fresh git + DVC repo at `repo` holding the pipeline (dvc.yaml, params.yaml, stages/, src/, docs/'s
    records the report reads), with `seeds` as its training seeds when given: no DVC cache, no run-cache."""
    repo.mkdir(parents=True)
    report_records = [
        d
        for d in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["report"]["deps"]
        if d.startswith("docs/")
    ]
    for name in ("dvc.yaml", "params.yaml", "stages", "src", *report_records):
        source, target = ROOT / name, repo / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy(source, target)
    if seeds:
        params = yaml.safe_load((repo / "params.yaml").read_text())
        (repo / "params.yaml").write_text(yaml.safe_dump({**params, "seeds": seeds}, sort_keys=False))
    dvc = [sys.executable, "-m", "dvc"]
    for cmd in (["git", "init", "-q"], [*dvc, "init", "-q"], [*dvc, "config", "core.analytics", "false"]):
        _run(cmd, repo)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--keep", type=Path, help="build the repo here and keep it (must not exist)")
    parser.add_argument("--seeds", type=int, nargs="+", help="training seeds (default: params.yaml's)")
    args = parser.parse_args()
    repo = args.keep or Path(tempfile.mkdtemp(prefix="clipprobe-repro-")) / "repo"
    pipeline_copy(repo, args.seeds)
    dvc = [sys.executable, "-m", "dvc"]
    rows = [(stage, _run([*dvc, "repro", "-s", stage], repo)) for stage in _stage_order(repo)]
    total = sum(seconds for _, seconds in rows)
    noop = _run([*dvc, "repro"], repo)
    seeds = yaml.safe_load((repo / "params.yaml").read_text())["seeds"]
    print(f"seeds {seeds}")
    print(f"{'stage':<12}{'seconds':>9}")
    for stage, seconds in rows:
        print(f"{stage:<12}{seconds:>9.1f}")
    print(f"{'total':<12}{total:>9.1f}")
    print(f"{'no-op repro':<12}{noop:>9.1f}")
    if not args.keep:
        shutil.rmtree(repo.parent)


if __name__ == "__main__":
    main()
