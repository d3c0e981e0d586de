"""Which paired claims keep their verdict under a perturbation that a reviewer's machine could bring.

Reruns the whole pipeline in a fresh copy (bench/repro.py's) under one perturbation, then prints, for every
paired claim of results/summary.json, its verdict here ("supported", "contradicted", "not distinguishable")
and in the perturbed run, and the count of flips. Writes docs/verdicts.json, which the report reads (each
claim is marked "stable under ..." or "fragile: <other verdict> under ..."), and the same table in
docs/verdicts.md. Run from the repository root
with the venv active, after `dvc repro`, on an otherwise idle machine (a whole pipeline: about 90 minutes on 2 cores):

    python bench/verdicts.py --seeds 3 4 5     # another set of training seeds (what docs/verdicts.json holds)
    python bench/verdicts.py --native-cpu      # the host's fastest kernels instead of the vendor-neutral ones
    python bench/verdicts.py --seeds 3 4 5 --from /tmp/r   # reuse a perturbed run kept with --keep
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from repro import ROOT, pipeline_copy

from clipprobe import paths
from clipprobe.report.claims import Claim


def verdicts(summary: dict) -> dict[str, str]:
    """ "<experiment>/<claim>" -> the claim's verdict, for every paired claim of a summary."""
    return {
        f"{experiment}/{name}": Claim(**claim).verdict()
        for experiment, section in summary.items()
        if isinstance(section, dict) and "claims" in section
        for name, claim in section["claims"].items()
    }


def perturbed_summary(args: argparse.Namespace) -> dict:
    """results/summary.json of the pipeline rerun under the perturbation (or of the run kept in --from)."""
    if args.reuse:
        return json.loads((args.reuse / paths.SUMMARY).read_text())
    repo = args.keep or Path(tempfile.mkdtemp(prefix="clipprobe-verdicts-")) / "repo"
    pipeline_copy(repo, args.seeds)
    env = {**os.environ, "CLIPPROBE_NATIVE_CPU": "1"} if args.native_cpu else None
    print(f"dvc repro in {repo} under {describe(args)} (a whole pipeline)", file=sys.stderr, flush=True)
    result = subprocess.run([sys.executable, "-m", "dvc", "repro"], cwd=repo, env=env)
    if result.returncode:
        sys.exit(f"dvc repro in {repo} failed (exit {result.returncode}); its output is above")
    summary = json.loads((repo / paths.SUMMARY).read_text())
    if not args.keep:
        shutil.rmtree(repo.parent)
    return summary


def describe(args: argparse.Namespace) -> str:
    parts = [f"seeds {list(args.seeds)}"] if args.seeds else []
    return ", ".join(parts + (["native CPU kernels"] if args.native_cpu else []))


def reproduce(args: argparse.Namespace) -> str:
    """The command that reruns this perturbation from scratch (without --keep, --from, --output)."""
    seeds = ["--seeds", *map(str, args.seeds)] if args.seeds else []
    return " ".join(["python bench/verdicts.py", *seeds, *(["--native-cpu"] if args.native_cpu else [])])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", help="training seeds of the perturbed run")
    parser.add_argument(
        "--native-cpu", action="store_true", help="CLIPPROBE_NATIVE_CPU=1 in the perturbed run"
    )
    parser.add_argument(
        "--keep", type=Path, help="build the perturbed repo here and keep it (must not exist)"
    )
    parser.add_argument("--from", dest="reuse", type=Path, help="a perturbed repo kept with --keep: no rerun")
    parser.add_argument(
        "--output", type=Path, default=ROOT / paths.VERDICTS, help="default: docs/verdicts.json"
    )
    args = parser.parse_args()
    if not (args.seeds or args.native_cpu):
        parser.error("name a perturbation: --seeds 3 4 5 and/or --native-cpu")
    committed = verdicts(json.loads((ROOT / paths.SUMMARY).read_text()))
    perturbed = verdicts(perturbed_summary(args))
    shared = [key for key in committed if key in perturbed]
    flips = [key for key in shared if committed[key] != perturbed[key]]
    width = max(map(len, shared))
    print(f"{'claim':<{width}}  {'committed':<20}  {describe(args):<20}  flip")
    for key in shared:
        print(f"{key:<{width}}  {committed[key]:<20}  {perturbed[key]:<20}  {'yes' if key in flips else ''}")
    print(f"{len(flips)} of {len(shared)} verdicts flip under {describe(args)}")
    record = {
        "perturbation": describe(args),
        "command": reproduce(args),
        "flips": len(flips),
        "claims": {key: {"committed": committed[key], "perturbed": perturbed[key]} for key in shared},
    }
    args.output.write_text(json.dumps(record, indent=1) + "\n")
    args.output.with_suffix(".md").write_text(markdown(record))


def markdown(record: dict) -> str:
    """docs/verdicts.md: the table, the count of flips and the command that made it."""
    lines = [
        "# Which claims keep their verdict on another machine",
        "",
        f"Every paired claim of the committed results (`results/summary.json`), and its verdict when the whole "
        f"pipeline is rerun under {record['perturbation']}. Made by `{record['command']}` (a whole pipeline in a "
        "fresh copy); the report marks each claim `stable` or `fragile` from `docs/verdicts.json`, and the "
        "README's claims list keeps only the stable ones.",
        "",
        f"**{record['flips']} of {len(record['claims'])} verdicts flip.**",
        "",
        f"| claim | committed | {record['perturbation']} | flip |",
        "|---|---|---|---|",
    ]
    for key, verdict in record["claims"].items():
        flip = "**yes**" if verdict["committed"] != verdict["perturbed"] else ""
        lines.append(f"| `{key}` | {verdict['committed']} | {verdict['perturbed']} | {flip} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
