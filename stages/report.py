"""report stage: render the PNG figures and reports/report.md from what the summary wrote (results/)."""

from pathlib import Path

from clipprobe import paths
from clipprobe.io import replace_folder
from clipprobe.params import load_params
from clipprobe.report import counting, fewshot, figures, modes, pretrain, probe, segment, vqvae
from clipprobe.report.markdown import render_report
from clipprobe.stage import run_stage

SECTIONS = (
    pretrain,
    probe,
    fewshot,
    modes,
    counting,
    vqvae,
    segment,
)  # each: render(params, out_dir) -> markdown


def main() -> None:
    params = load_params()
    figures.set_style()

    def write(
        folder: Path,
    ) -> None:  # the whole of reports/, built aside, so no figure of an earlier run lingers
        sections = [section.render(params, folder) for section in SECTIONS]
        (folder / "report.md").write_text(render_report(params, sections))

    replace_folder(paths.REPORTS, write)


if __name__ == "__main__":
    run_stage("report", main)
