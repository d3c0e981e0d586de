"""Keep the committed few-shot accuracies as the "before" of a protocol change.

The report's before/after table (`report.fewshot`) reads docs/fewshot_before.json: per method and shot count,
each seed's test accuracy (its draws averaged) under the earlier protocol, paired seed by seed with the new
results. Run it on the old results, before regenerating them:

    python tools/fewshot_snapshot.py --protocol "one clean view, ..."
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from clipprobe import paths
from clipprobe.io import write_json

ACCURACY = re.compile(r"^\d+shot_[a-z_]+$")  # "16shot_tip": a method's accuracy at a shot count


def snapshot(summary: dict, protocol: str) -> dict:
    figures = summary["fewshot"]["figures"]
    per_seed = {name: figure["per_seed"] for name, figure in figures.items() if ACCURACY.match(name)}
    return {"protocol": protocol, "seeds": summary["seeds"], "per_seed": per_seed}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--protocol", required=True, help="what the snapshot's results were made with")
    parser.add_argument("--summary", type=Path, default=paths.SUMMARY)
    args = parser.parse_args()
    write_json(paths.FEWSHOT_BEFORE, snapshot(json.loads(args.summary.read_text()), args.protocol))
    print(f"wrote {paths.FEWSHOT_BEFORE}")


if __name__ == "__main__":
    main()
