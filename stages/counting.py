"""counting stage: object count and position read out by zero-shot and by probes before and after the attention pool."""

from clipprobe import paths
from clipprobe.data.store import load_split
from clipprobe.io import write_json
from clipprobe.models.tower import tower_clip
from clipprobe.params import load_params
from clipprobe.probes import counting
from clipprobe.runtime import resolve_device, seed_everything
from clipprobe.stage import run_stage


def main() -> None:
    params = load_params()
    seed_everything(params.seed)
    device = resolve_device(params.device)
    model, tokenizer = tower_clip(
        params.tower, clip_dir=paths.CLIP, downloads=params.data.downloads, device=device
    )
    splits = {split: load_split(params.data.root, params.data.counting, split) for split in counting.SPLITS}
    metrics = counting.evaluate(model, tokenizer, splits, params.counting, device)
    write_json(paths.COUNTING, metrics)
    for name, result in metrics.items():
        accs = ", ".join(f"{k} {v['acc']:.3f}" for k, v in result.items() if isinstance(v, dict))
        print(f"{name}: {accs} (chance {result['chance']:.3f})")


if __name__ == "__main__":
    run_stage("counting", main)
