"""summary stage: every figure over the training seeds (mean, 95% interval, per-seed values), the paired
claims, the curves and sample images the report draws, the headline metrics under metrics/ and the CSVs of
DVC's plots under plots/."""

from clipprobe import paths, summary
from clipprobe.io import save_arrays, write_json, write_json_folder
from clipprobe.params import load_params
from clipprobe.stage import run_stage


def main() -> None:
    params = load_params()
    seeds, shots, methods = params.seeds, params.shots, params.fewshot.inits
    result = summary.summarize(
        seeds, shots, methods, params.fewshot.modes.attributes, params.fewshot.modes.shots
    )
    for name, arrays in summary.report_arrays(seeds).items():
        save_arrays(paths.RESULTS / name, arrays)
    headline = summary.headline(
        result, shots, methods
    )  # also in summary.json: clipprobe.experiments reads it
    write_json(paths.SUMMARY, {**result, "headline": headline})
    write_json_folder(paths.METRICS, summary.metrics_files(headline))
    summary.write_plot_tables(summary.plot_tables(result, shots, methods), paths.PLOTS)


if __name__ == "__main__":
    run_stage("summary", main)
