"""The README's results are the committed ones: every table number is a metric, every claim a report sentence."""

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
SCALE = {"acc1": 100.0, "miou": 100.0, "psnr": 1.0}  # the README shows accuracies and mIoU in %


def _results_rows() -> list[tuple[str, str]]:
    """(metric name, cell) of every row of the results table: `| label | `name` | 12.34 ± 0.56 |`."""
    return re.findall(r"^\| [^|]+ \| `([a-z0-9_]+)` \| ([^|]+) \|$", README, flags=re.MULTILINE)


def test_every_results_table_number_is_the_committed_metric():
    rows = _results_rows()
    assert len(rows) >= 15, "the README's results table is missing"
    for name, cell in rows:
        metric = json.loads((ROOT / "metrics" / f"{name}.json").read_text())
        (measure,) = set(metric) & set(SCALE)
        expected = f"{SCALE[measure] * metric[measure]:.2f}"
        if f"{measure}_ci95" in metric:
            expected += f" ± {SCALE[measure] * metric[f'{measure}_ci95']:.2f}"
        assert cell.strip() == expected, name


def test_every_headline_metric_is_in_the_table():
    assert {name for name, _ in _results_rows()} == {p.stem for p in (ROOT / "metrics").glob("*.json")}


def _claims() -> list[str]:
    """Every claim of the README's claims list, one per "; "-separated part of a line (not inside (...))."""
    lines = re.findall(r"^- (.*\(\S+ ± \S+ \w+, \d of \d seeds[;)].*)$", README, flags=re.MULTILINE)
    lines += re.findall(r"^- (.* by \S+ ± \S+ [\w ]+ \(\d of \d seeds[;)].*)$", README, flags=re.MULTILINE)
    assert lines, "the README states no claim with its interval"
    return [part for line in lines for part in re.split(r"; (?![^(]*\))", line.rstrip("."))]


def test_every_readme_claim_is_a_sentence_of_the_report():
    report = (ROOT / "reports/report.md").read_text()
    for claim in _claims():
        assert claim in report, claim


def test_every_readme_claim_kept_its_verdict_under_the_perturbation():
    """The README lists only the claims bench/verdicts.py found stable (docs/verdicts.json)."""
    record = json.loads((ROOT / "docs/verdicts.json").read_text())
    for claim in _claims():
        assert f"stable under {record['perturbation']}" in claim, claim
