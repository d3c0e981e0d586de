"""modes stage (per seed, shapes world): does few-shot training forget the modes its support does not show?
Support sets concentrated in one mode vs spread over them, the zero-shot-init and random heads."""

from clipprobe import paths
from clipprobe.contracts import load_features, load_split
from clipprobe.experiment import write_result
from clipprobe.params import load_params
from clipprobe.probes.fewshot import modes
from clipprobe.runtime import resolve_device, start
from clipprobe.stage import run_stage


def main(seed: int) -> None:
    params = load_params()
    start(seed, params.threads)
    if params.data.classification != "shapes" or not params.fewshot.modes.attributes:
        result = modes.skipped()  # only the shapes world records modes (the paper preset lists none)
    else:
        features, text = load_features(paths.features_dir(seed))
        data = {split: load_split(params.data.root, "shapes", split) for split in ("train", "test")}
        inputs = modes.Inputs(
            features, text, params.embed.ensemble, data, seed, resolve_device(params.device)
        )
        result = modes.evaluate(inputs, params.fewshot)
    write_result(paths.run_dir(seed), "modes", result)
    print(f"modes: {len(result.figures)} curves")


if __name__ == "__main__":
    run_stage("modes", main, per_seed=True)
