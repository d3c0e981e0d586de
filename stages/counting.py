"""counting stage (per seed): object count and position read out by zero-shot and by probes before and after
the attention pool."""

from clipprobe import paths
from clipprobe.contracts import load_split
from clipprobe.experiment import write_result
from clipprobe.models.clip import tower_clip
from clipprobe.params import load_params
from clipprobe.probes import counting
from clipprobe.runtime import resolve_device, start
from clipprobe.stage import run_stage


def main(seed: int) -> None:
    params = load_params()
    start(seed, params.threads)
    device = resolve_device(params.device)
    clip_dir = paths.clip_dir(seed)
    clip, tokenizer = tower_clip(
        params.tower, clip_dir=clip_dir, downloads=params.data.downloads, device=device
    )
    splits = {split: load_split(params.data.root, params.data.counting, split) for split in counting.SPLITS}
    result = counting.evaluate(counting.Inputs(clip, tokenizer, splits, device), params.counting)
    write_result(paths.run_dir(seed), "counting", result)
    figures = result.figures
    for task in sorted({name.split(".")[0] for name in figures}):
        accs = ", ".join(f"{name} {figures[f'{task}.{name}.acc']:.3f}" for name in counting.READOUTS)
        print(f"{task}: {accs} (chance {figures[f'{task}.chance']:.3f})")


if __name__ == "__main__":
    run_stage("counting", main, per_seed=True)
