"""counting stage (per seed): object count and position read out by zero-shot and by probes before and after
the attention pool."""

from clipprobe import paths
from clipprobe.contracts import load_split
from clipprobe.io import save_arrays, write_json
from clipprobe.models.tower import tower_clip
from clipprobe.params import load_params
from clipprobe.probes import counting
from clipprobe.runtime import resolve_device, start
from clipprobe.stage import run_stage


def main(seed: int) -> None:
    params = load_params()
    start(seed, params.threads)
    device = resolve_device(params.device)
    clip_dir = paths.clip_dir(seed)
    model, tokenizer = tower_clip(
        params.tower, clip_dir=clip_dir, downloads=params.data.downloads, device=device
    )
    splits = {split: load_split(params.data.root, params.data.counting, split) for split in counting.SPLITS}
    result = counting.evaluate(model, tokenizer, splits, params.counting, device)
    run = paths.Run(seed)
    write_json(run.counting, result["metrics"])
    save_arrays(run.counting_hits, result["hits"])
    for name, readouts in result["metrics"].items():
        accs = ", ".join(f"{k} {v['acc']:.3f}" for k, v in readouts.items() if isinstance(v, dict))
        print(f"{name}: {accs} (chance {readouts['chance']:.3f})")


if __name__ == "__main__":
    run_stage("counting", main, per_seed=True)
