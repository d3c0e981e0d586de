"""fewshot stage (per seed): shot counts x methods x support-set draws on cached features, and the modes
experiment (shapes world); metrics, per-image hits, curves."""

from clipprobe import paths
from clipprobe.contracts import load_features, load_split
from clipprobe.io import save_arrays, write_csv, write_json
from clipprobe.params import load_params
from clipprobe.probes import fewshot
from clipprobe.runtime import resolve_device, start
from clipprobe.stage import run_stage


def main(seed: int) -> None:
    params = load_params()
    start(seed, params.threads)
    splits, text = load_features(paths.features_dir(seed))
    device = resolve_device(params.device)
    shapes = params.data.classification == "shapes" and params.fewshot.modes.attributes
    modes_data = {s: load_split(params.data.root, "shapes", s) for s in ("train", "test")} if shapes else None
    result = fewshot.evaluate(params, splits, text, seed, device, progress=True, modes_data=modes_data)
    run = paths.Run(seed)
    write_json(run.fewshot, result["metrics"])
    save_arrays(run.fewshot_hits, result["hits"])
    write_csv(run.fewshot_curves, *result["curves"])
    write_json(run.modes, result["modes"])
    metrics = result["metrics"]
    print(f"zero-shot {metrics['zeroshot_acc']:.4f}")
    for k in params.shots:
        row = metrics[f"shots_{k}"]
        print(f"  {k:>3}-shot " + "  ".join(f"{n} {row[n]['acc']:.4f}±{row[n]['ci95']:.4f}" for n in row))


if __name__ == "__main__":
    run_stage("fewshot", main, per_seed=True)
