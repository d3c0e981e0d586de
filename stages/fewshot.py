"""fewshot stage: shot counts x methods x support-set draws on cached features; metrics and per-epoch curves."""

from clipprobe import paths
from clipprobe.features import load_features
from clipprobe.io import write_csv, write_json
from clipprobe.params import load_params
from clipprobe.probes import fewshot
from clipprobe.runtime import resolve_device, seed_everything, show_progress
from clipprobe.stage import run_stage


def main() -> None:
    params = load_params()
    seed_everything(params.seed)
    splits, text = load_features(paths.FEATURES)
    result = fewshot.evaluate(params, splits, text, resolve_device(params.device), progress=show_progress())
    write_json(paths.FEWSHOT, result["metrics"])
    write_csv(paths.FEWSHOT_ACC, *result["acc"])
    write_csv(paths.FEWSHOT_CURVES, *result["curves"])
    metrics = result["metrics"]
    print(f"zero-shot {metrics['zeroshot_acc']:.4f}")
    for k in params.shots:
        row = metrics[f"shots_{k}"]
        print(f"  {k:>3}-shot " + "  ".join(f"{n} {row[n]['acc']:.4f}±{row[n]['ci95']:.4f}" for n in row))


if __name__ == "__main__":
    run_stage("fewshot", main)
