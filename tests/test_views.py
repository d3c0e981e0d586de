"""What a reviewer reads through DVC: the headline metrics, the declared plots (on the committed results of
the default profile) and the offline plots page."""

import json
import re
from pathlib import Path

import pandas as pd
import yaml
from dvc_render.vega import VegaRenderer

ROOT = Path(__file__).resolve().parents[1]
DVC_YAML = yaml.safe_load((ROOT / "dvc.yaml").read_text())
MEASURES = {"acc1", "psnr", "miou"}


def _plots() -> dict[str, dict]:
    return {
        name: spec or {}
        for entry in DVC_YAML["plots"]
        for name, spec in (entry.items() if isinstance(entry, dict) else [(entry, None)])
    }


def test_headline_metrics_are_few_one_measure_each_with_its_interval():
    files = sorted((ROOT / "metrics").glob("*.json"))
    assert DVC_YAML["metrics"] == ["metrics"]
    assert 15 <= len(files) <= 30, [f.stem for f in files]
    for path in files:
        metric = json.loads(path.read_text())
        (measure,) = set(metric) & MEASURES
        shots = {"shots"} if path.stem.startswith("fewshot_") else set()  # the shot count the figure is at
        assert set(metric) <= {measure, f"{measure}_ci95", *shots}, path.name
        assert all(isinstance(metric[k], float) for k in set(metric) - shots), path.name
        assert all(isinstance(metric[k], int) for k in shots & set(metric)), path.name
    names = {f.stem for f in files}
    assert {"zeroshot_report", "zeroshot_single", "zeroshot_ensemble", "linear_probe", "vqvae_clip"} <= names
    shots = yaml.safe_load((ROOT / "params.yaml").read_text())["shots"]
    # names that no param changes, each saying which shot count it is at: the fewest and the most
    fewest, most = (
        json.loads((ROOT / f"metrics/fewshot_{n}.json").read_text())["shots"]
        for n in ("fewest_random", "most_prolip")
    )
    assert (fewest, most) == (min(shots), max(shots))


def test_every_declared_plot_exists_and_holds_data():
    for name, spec in _plots().items():
        path = ROOT / name
        if path.suffix == ".csv":
            frame = pd.read_csv(path)
            assert len(frame) > 1, name
            assert {spec["x"], spec["y"]} <= set(frame.columns), name
            if spec.get("template") == "series" and "series" in frame:
                assert frame["series"].nunique() > 1, name
        else:
            images = sorted(path.glob("*.png"))
            assert images and all(image.stat().st_size > 1000 for image in images), name


def test_report_figures_are_all_image_plots():
    report = (ROOT / "reports/report.md").read_text()
    linked = set(re.findall(r"\]\((figures/[^)]+\.png)\)", report))
    on_disk = {str(p.relative_to(ROOT / "reports")) for p in (ROOT / "reports/figures").glob("*.png")}
    assert linked == on_disk
    assert "reports/figures" in _plots()


def test_offline_page_inlines_the_vega_versions_dvc_asks_for():
    config = (ROOT / ".dvc/config").read_text()
    assert re.search(r"html_template = plots/offline.html", config)
    page = (ROOT / ".dvc/plots/offline.html").read_text()
    wanted = re.findall(r"npm/([a-z-]+)@([0-9.]+)", VegaRenderer.SCRIPTS)
    assert len(wanted) == 3
    for name, version in wanted:
        assert f"<script>/* {name} {version} */" in page, (name, version)
    assert "{plot_divs}" in page and "cdn.jsdelivr" not in page


def test_series_template_colours_by_series_and_dashes_by_revision():
    template = json.loads((ROOT / ".dvc/plots/series.json").read_text())
    assert template["encoding"]["color"]["field"] == "series"
    assert template["encoding"]["strokeDash"]["field"] == "rev"
    assert template["encoding"]["x"]["axis"]["tickMinStep"] == 1  # whole epochs and shots


def test_architecture_lists_every_on_disk_contract():
    from clipprobe.contracts import CONTRACTS

    page = (ROOT / "docs/architecture.md").read_text()
    missing = [
        path
        for path, (stage, checks) in CONTRACTS.items()
        if f"| `{path}` | {stage} | {checks} |" not in page
    ]
    assert not missing, f"docs/architecture.md lacks these rows of contracts.CONTRACTS: {missing}"
