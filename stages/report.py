"""report stage: render the PNG figures and reports/report.md from metrics/ and plots/."""

from pathlib import Path

from clipprobe.params import load_params
from clipprobe.report import counting, fewshot, figures, pretrain, probe, segment, vqvae
from clipprobe.report.markdown import render_report
from clipprobe.runtime import run_stage

OUT = Path("reports")
SECTIONS = (
    pretrain,
    probe,
    fewshot,
    counting,
    vqvae,
    segment,
)  # one module per experiment, each with render(params, out_dir) -> markdown


def report() -> None:
    params = load_params()
    figures.set_style()
    sections = [section.render(params, OUT) for section in SECTIONS]
    (OUT / "report.md").write_text(render_report(params, sections))
    print(f"wrote {OUT / 'report.md'}")


if __name__ == "__main__":
    run_stage(report)
