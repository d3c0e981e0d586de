"""probe stage: zero-shot (one prompt and the template ensemble) and the full linear probe on cached features."""

from clipprobe import paths
from clipprobe.features import load_features
from clipprobe.io import write_csv, write_json
from clipprobe.params import load_params
from clipprobe.probes import classify
from clipprobe.runtime import resolve_device, seed_everything
from clipprobe.stage import run_stage


def main() -> None:
    params = load_params()
    seed_everything(params.seed)
    splits, text = load_features(paths.FEATURES)
    result = classify.evaluate(
        splits, text, params.embed.ensemble, params.probe, resolve_device(params.device)
    )
    write_json(paths.PROBE, result["metrics"])
    write_csv(paths.PROBE_C_SEARCH, result["c_search"], columns=["C", "val_acc"])
    zs, lp = result["metrics"]["zeroshot"], result["metrics"]["linear_probe"]
    print(
        f"zero-shot {zs['single']['acc']:.4f} (1 prompt), {zs['ensemble']['acc']:.4f} (ensemble); "
        f"linear probe {lp['acc']:.4f} (C={lp['C']:.4g})"
    )


if __name__ == "__main__":
    run_stage("probe", main)
