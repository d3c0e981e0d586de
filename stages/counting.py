"""counting stage: object count and position read out by zero-shot and by probes before and after the attention pool."""

import time
from pathlib import Path

from clipprobe.data.store import load_split
from clipprobe.models.clip import mean_std
from clipprobe.models.tower import FrozenTower, tower_clip
from clipprobe.params import load_params
from clipprobe.probes.counting import SPLITS, count_task, evaluate_task, position_task, tower_features
from clipprobe.runtime import resolve_device, run_stage, seed_everything, write_json

OUT = Path("metrics/counting.json")


def counting() -> None:
    params = load_params()
    seed_everything(params.seed)
    device = resolve_device(params.device)
    cfg = params.counting
    model, tokenizer = tower_clip(params, "counting", clip_dir="models/clip", device=device)
    tower = FrozenTower(model)  # the tower stops before the pool; its own pool gives the pooled embedding
    mean, std = mean_std(model)

    start = time.perf_counter()
    splits = {split: load_split(params.data.root, params.data.counting, split) for split in SPLITS}
    features = {
        split: tower_features(
            tower,
            data.images,
            mean=mean,
            std=std,
            device=device,
            batch_size=cfg.batch_size,
            grid=cfg.prepool_grid,
        )
        for split, data in splits.items()
    }
    print(f"features: {', '.join(f'{k} {tuple(v.shape)}' for k, v in features['test'].items())} (test)")

    tasks = [
        count_task(
            {s: d.counts for s, d in splits.items()}, cfg.count_templates, cfg.count_nouns, cfg.number_words
        )
    ]
    if all(data.positions is not None for data in splits.values()):
        tasks.append(position_task({s: d.positions for s, d in splits.items()}, cfg.position_templates))
    metrics = {
        task.name: evaluate_task(
            task, features, model, tokenizer, Cs=cfg.Cs, max_iter=cfg.max_iter, device=device
        )
        for task in tasks
    }
    for name, result in metrics.items():
        accs = ", ".join(f"{k} {v['acc']:.3f}" for k, v in result.items() if isinstance(v, dict))
        print(f"{name}: {accs} (chance {result['chance']:.3f})")
    write_json(OUT, metrics)
    print(f"wrote {OUT} in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    run_stage(counting)
