"""Few-shot methods scored on a large held-out shapes set: is a difference to zero-shot real or test noise?

The test split (2000 images by default) cannot resolve differences of half a point. The shapes world is
endless, so this draws a fresh held-out set from a seed no pipeline split uses, embeds it with the pipeline's
CLIP, and reruns the few-shot sweep of params.yaml (same support sets, few-shot val sets and recipes) with
that set in place of the test split. Prints, per shot count and method, the accuracy and the paired difference
to zero-shot with its 95% interval over draws and held-out images, and the nearest-class-mean diagnostic.
Run after `dvc repro` (it reads one seed's models/clip/seed<k> and features/seed<k> and writes nothing).

    python bench/fewshot_heldout.py                 # 12000 held-out images
    python bench/fewshot_heldout.py --n 24000 --shots 1 16
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from clipprobe import paths
from clipprobe.contracts import load_features
from clipprobe.data.shapes import generate_shapes
from clipprobe.errors import ClipprobeError
from clipprobe.features.embed import embed_images
from clipprobe.models.clip import load_clip
from clipprobe.params import load_params
from clipprobe.probes.fewshot.sweep import Inputs, summarize, sweep_inputs
from clipprobe.runtime import resolve_device

HELDOUT_STREAM = 1000  # seed purpose of the held-out set; the pipeline's splits use 0-3 (shapes.split_seed)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=12_000, help="held-out images")
    parser.add_argument("--shots", type=int, nargs="+", help="shot counts (default: params.yaml's)")
    parser.add_argument(
        "--seed", type=int, help="training seed whose CLIP and features to read (default: the first)"
    )
    args = parser.parse_args()
    params = load_params()
    seed = params.seeds[0] if args.seed is None else args.seed
    if params.data.classification != "shapes":
        raise SystemExit(f"data.classification: this check needs shapes (got {params.data.classification})")
    device = resolve_device(params.device)
    shapes = params.data.shapes
    start = time.perf_counter()
    heldout_seed = int(np.random.SeedSequence([params.seed, HELDOUT_STREAM]).generate_state(1)[0])
    heldout = generate_shapes(
        args.n,
        shapes.image_size,
        heldout_seed,
        shapes.captions.model_dump(),
        shapes.min_objects,
        shapes.max_objects,
        workers=params.data.workers,
    )
    model, _, _ = load_clip(paths.clip_dir(seed), device=device)
    test = embed_images(
        model,
        heldout.images,
        device=device,
        batch_size=params.embed.batch_size,
        pre_projection=params.embed.pre_projection,  # ProLIP reads the pre-projection features
    )
    test["labels"] = torch.from_numpy(heldout.labels)
    splits, text = load_features(paths.features_dir(seed))
    inputs = Inputs(splits, text, params.embed.ensemble, args.shots or params.shots, seed, device, test=test)
    sweep = sweep_inputs(inputs, params.fewshot)
    metrics = summarize(sweep)
    print(
        f"{args.n} held-out images ({time.perf_counter() - start:.0f} s): zero-shot "
        f"{100 * metrics['zeroshot_acc']:.2f}%, nearest class mean of all train images "
        f"{100 * metrics['class_mean_acc']:.2f}%"
    )
    print("shots  method     acc %   difference to zero-shot (points, 95% interval over draws and images)")
    for k in sweep.results:
        for name, entry in metrics[f"shots_{k}"].items():
            delta, half = 100 * entry["delta_zeroshot"], 100 * entry["delta_zeroshot_ci95"]
            print(f"{k:>5}  {name:<9} {100 * entry['acc']:6.2f}   {delta:+6.2f} ± {half:.2f}")


if __name__ == "__main__":
    try:
        main()
    except ClipprobeError as error:
        raise SystemExit(str(error)) from None
