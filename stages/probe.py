"""probe stage (per seed): zero-shot (one prompt and the template ensemble) and the full linear probe."""

from clipprobe import paths
from clipprobe.contracts import load_features
from clipprobe.experiment import write_result
from clipprobe.params import load_params
from clipprobe.probes import classify
from clipprobe.runtime import resolve_device, start
from clipprobe.stage import run_stage


def main(seed: int) -> None:
    params = load_params()
    start(seed, params.threads)
    splits, text = load_features(paths.features_dir(seed))
    inputs = classify.Inputs(splits, text, params.embed.ensemble, resolve_device(params.device))
    result = classify.evaluate(inputs, params.probe)
    write_result(paths.run_dir(seed), "probe", result)
    print(", ".join(f"{name} {result.figures[f'{name}.acc1']:.4f}" for name in classify.READOUTS))


if __name__ == "__main__":
    run_stage("probe", main, per_seed=True)
