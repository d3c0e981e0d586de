"""`python -m clipprobe.experiments`: every experiment of the repository in one table of 120 columns.

`dvc exp show` gives every param, dependency and metric a column of its own and has no setting to hide
them. This view reads DVC's own API instead: `dvc.api.exp_show` for the experiments and their params, and
each one's results/summary.json at its revision for the headline figures and their per-seed values. Rows
are experiments; columns are the params that differ between them and the headline figures that do. Each
figure is its mean with its 95% interval over seeds and, against the baseline (the commit the experiments
start from), a verdict paired by seed: `+` ahead, `-` behind (the interval excludes zero), `=` not
distinguishable, `?` not comparable (fewer than two seeds in common). Figures that are the same in every
row are named below the table; a table wider than the terminal is cut into blocks of figure columns.

    python -m clipprobe.experiments                   # all experiments, 120 columns
    python -m clipprobe.experiments --width 160 --figures fewshot
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from clipprobe import paths
from clipprobe.report.claims import Claim
from clipprobe.stats import claim_from_seeds

SCALE = {"acc1": 100.0, "miou": 100.0, "psnr": 1.0}  # shown as % (dB for PSNR)
META = {"Experiment", "rev", "typ", "Created", "parent", "State", "Executor"}


@dataclass
class Row:
    name: str  # the experiment's name, or the baseline's branch
    rev: str
    params: dict[str, object]
    headline: dict[str, dict] | None  # results/summary.json's "headline" at that revision; None: no results


def _param_keys(params_file: Path) -> set[str]:
    """The dotted keys of params.yaml, the columns of exp_show that are params."""

    def walk(node: object, prefix: str) -> set[str]:
        if isinstance(node, dict):
            return set().union(*(walk(v, f"{prefix}{k}.") for k, v in node.items())) if node else set()
        return {prefix.rstrip(".")}

    return walk(yaml.safe_load(params_file.read_text()), "")


def _headline(repo: str, rev: str) -> dict[str, dict] | None:
    import dvc.api

    try:
        if rev == "workspace":
            text = (Path(repo) / paths.SUMMARY).read_text()
        else:
            text = dvc.api.read(str(paths.SUMMARY), repo=repo, rev=rev)
        return json.loads(text).get("headline")
    except Exception:  # noqa: BLE001 (a queued, running or failed experiment has no results at its revision)
        return None


def collect(repo: str = ".") -> list[Row]:
    """The baseline first, then every experiment of it (exp_show's order), with their params and results."""
    import dvc.api

    keys = _param_keys(Path(repo) / "params.yaml")
    rows = []
    for entry in dvc.api.exp_show(repo=repo):
        if entry["rev"] == "workspace":
            continue
        name = entry.get("Experiment") or entry["rev"]
        # a param whose name a metric shares (shots) comes as "params.yaml:<key>"
        params = {key: entry.get(f"params.yaml:{key}", entry.get(key)) for key in sorted(keys)}
        rows.append(Row(str(name), entry["rev"], params, _headline(repo, entry["rev"])))
    return rows


def verdict(figure: dict, base: dict, seeds: Sequence[int], base_seeds: Sequence[int]) -> str:
    """+, - or = for figure - base paired by seed; ? with fewer than two seeds in common."""
    common = [s for s in seeds if s in base_seeds]
    if len(common) < 2:
        return "?"
    a = [figure["per_seed"][list(seeds).index(s)] for s in common]
    b = [base["per_seed"][list(base_seeds).index(s)] for s in common]
    claim = Claim(**asdict(claim_from_seeds(a, b)))
    return "=" if not claim.distinguishable else "+" if claim.delta > 0 else "-"


def _cell(figure: dict) -> str:
    scale = SCALE[figure["measure"]]
    mean = f"{scale * figure['mean']:.1f}"
    return mean if figure["ci95"] is None else f"{mean}±{scale * figure['ci95']:.1f}"


def table(rows: list[Row], width: int = 120, figures: str = "") -> str:
    """The view (see the module docstring) of `rows`, the first of which is the baseline."""
    if not rows:
        return "no experiments: run some with `dvc exp run` (or queue them with --queue)"
    base, done = rows[0], [row for row in rows if row.headline]
    varying = [k for k in base.params if len({json.dumps(r.params[k], default=str) for r in rows}) > 1]
    names = sorted({name for row in done for name in row.headline if figures in name})
    changing = [n for n in names if len({_cell(r.headline[n]) for r in done if n in r.headline}) > 1]
    same = [n for n in names if n not in changing]
    seeds = {row.name: _seeds(row) for row in done}
    lead = [("experiment", [row.name for row in rows])]
    lead += [(key, [_short(row.params[key]) for row in rows]) for key in varying]
    columns = []
    for name in changing:
        cells = []
        for row in rows:
            figure = (row.headline or {}).get(name)
            if figure is None:
                cells.append("-")
                continue
            mark = ""
            if row is not base and base.headline and name in base.headline:
                mark = " " + verdict(figure, base.headline[name], seeds[row.name], seeds[base.name])
            cells.append(_cell(figure) + mark)
        columns.append((_label(name), cells))
    blocks = _blocks(lead, columns, width)
    legend = (
        f"baseline: {base.name}. Figures in % (PSNR in dB), mean±95% over seeds; against the baseline, paired "
        "by seed: + ahead, - behind, = not distinguishable, ? no two seeds in common."
    )
    if same:
        legend += f" The same in every row: {', '.join(same)}."
    if len(done) < len(rows):
        legend += " -: no results (queued, running or failed)."
    return "\n\n".join(blocks) + "\n\n" + _wrap(legend, width)


def _seeds(row: Row) -> list[int]:
    value = row.params.get("seeds")
    if isinstance(value, str):
        value = yaml.safe_load(value)
    return list(value) if isinstance(value, list | tuple) else [int(value)]


def _short(value: object) -> str:
    text = str(value) if not isinstance(value, float) or not value.is_integer() else str(int(value))
    return text if len(text) <= 16 else text[:15] + "…"


def _label(name: str) -> str:
    return name.replace("fewshot_", "fs_").replace("zeroshot", "zs").replace("_pooled", "_pool")


def _blocks(lead: list[tuple[str, list[str]]], columns: list[tuple[str, list[str]]], width: int) -> list[str]:
    """Tables of the lead columns plus as many figure columns as fit `width`, as many as needed."""

    def widths(cols):
        return [max(len(h), *(len(c) for c in cells)) for h, cells in cols]

    lead_width = sum(w + 2 for w in widths(lead))
    blocks, current, used = [], [], lead_width
    for column in columns:
        w = widths([column])[0] + 2
        if current and used + w > width:
            blocks.append(current)
            current, used = [], lead_width
        current.append(column)
        used += w
    blocks.append(current)
    out = []
    for block in blocks:
        cols = lead + block
        ws = widths(cols)
        lines = ["  ".join(h.ljust(w) for (h, _), w in zip(cols, ws, strict=True)).rstrip()]
        for i in range(len(lead[0][1])):
            lines.append("  ".join(c[i].ljust(w) for (_, c), w in zip(cols, ws, strict=True)).rstrip())
        out.append("\n".join(lines))
    return out


def _wrap(text: str, width: int) -> str:
    import textwrap

    return textwrap.fill(text, width)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--width", type=int, default=min(120, shutil.get_terminal_size((120, 24)).columns))
    parser.add_argument("--figures", default="", help="only the headline figures whose name contains this")
    args = parser.parse_args()
    print(table(collect(), args.width, args.figures))


if __name__ == "__main__":
    sys.exit(main())
