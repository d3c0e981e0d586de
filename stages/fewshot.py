"""fewshot stage (per seed): shot counts x methods x support-set draws on cached features; metrics, per-image
hits, curves."""

from clipprobe import paths
from clipprobe.contracts import load_features
from clipprobe.experiment import write_result
from clipprobe.params import load_params
from clipprobe.probes.fewshot import sweep
from clipprobe.runtime import resolve_device, start
from clipprobe.stage import run_stage


def main(seed: int) -> None:
    params = load_params()
    start(seed, params.threads)
    features, text = load_features(paths.features_dir(seed))
    cfg = params.fewshot
    device = resolve_device(params.device)
    inputs = sweep.Inputs(features, text, params.embed.ensemble, params.shots, seed, device, progress=True)
    result = sweep.evaluate(inputs, cfg)
    write_result(paths.run_dir(seed), "fewshot", result)
    figures = result.figures
    print(f"zero-shot {figures['zeroshot_acc']:.4f}")
    for k in params.shots:
        row = [
            f"{n} {figures[f'shots_{k}.{n}.acc']:.4f}±{figures[f'shots_{k}.{n}.ci95']:.4f}" for n in cfg.inits
        ]
        print(f"  {k:>3}-shot " + "  ".join(row))


if __name__ == "__main__":
    run_stage("fewshot", main, per_seed=True)
