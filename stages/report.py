"""report stage: render the PNG figures and reports/report.md from metrics/ and plots/."""

from clipprobe import paths
from clipprobe.io import atomic_write
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
    sections = [section.render(params, paths.REPORTS) for section in SECTIONS]
    text = render_report(params, sections)
    atomic_write(paths.REPORTS / "report.md", lambda tmp: tmp.write_text(text))


if __name__ == "__main__":
    run_stage("report", main)
