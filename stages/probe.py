"""probe stage (per seed): zero-shot (one prompt and the template ensemble) and the full linear probe."""

from clipprobe import paths
from clipprobe.contracts import load_features
from clipprobe.io import save_arrays, write_csv, write_json
from clipprobe.params import load_params
from clipprobe.probes import classify
from clipprobe.runtime import resolve_device, start
from clipprobe.stage import run_stage


def main(seed: int) -> None:
    params = load_params()
    start(seed, params.threads)
    splits, text = load_features(paths.features_dir(seed))
    result = classify.evaluate(
        splits, text, params.embed.ensemble, params.probe, resolve_device(params.device)
    )
    run = paths.Run(seed)
    write_json(run.probe, result["metrics"])
    save_arrays(run.probe_hits, result["hits"])
    write_csv(run.probe_c_search, result["c_search"], columns=["C", "val_acc"])
    print(", ".join(f"{name} {result['metrics'][name]['acc1']:.4f}" for name in classify.READOUTS))


if __name__ == "__main__":
    run_stage("probe", main, per_seed=True)
