"""fewshot stage: shot counts x methods x support-set draws on cached features; metrics and per-epoch curves."""

import time
from pathlib import Path

from clipprobe.params import load_params
from clipprobe.probes.fewshot import accuracy_rows, curve_rows, summarize, sweep_cached_features
from clipprobe.runtime import resolve_device, run_stage, seed_everything, show_progress, write_csv, write_json

FEATURES = Path("features")


def fewshot() -> None:
    params = load_params()
    seed_everything(params.seed)
    device = resolve_device(params.device)
    start = time.perf_counter()
    sweep = sweep_cached_features(params, FEATURES, device, progress=show_progress())
    seconds = time.perf_counter() - start
    metrics = summarize(sweep)
    write_json("metrics/fewshot.json", metrics)
    write_csv("plots/fewshot_acc.csv", *accuracy_rows(sweep))
    write_csv("plots/fewshot_curves.csv", *curve_rows(sweep))
    print(
        f"few-shot sweep: {len(params.shots)} shot counts x {len(params.fewshot.inits)} methods x "
        f"{params.fewshot.draws} draws in {seconds:.1f} s on {device.type}; zero-shot {metrics['zeroshot_acc']:.4f}"
    )
    for k in params.shots:
        row = metrics[f"shots_{k}"]
        print(f"  {k:>3}-shot " + "  ".join(f"{n} {row[n]['acc']:.4f}±{row[n]['ci95']:.4f}" for n in row))


if __name__ == "__main__":
    run_stage(fewshot)
