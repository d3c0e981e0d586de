"""Benchmark: seconds for the full few-shot sweep on CIFAR-100-shaped synthetic features.

50k x 512 train features (100 classes), 5k val, 10k test; text embeddings near the class means; every method
of params.yaml's `fewshot.inits`, its recipe (epochs, eval_every, grids) and 10 draws per shot count, shots
1, 2, 4, 8, 16. Timing covers the sweep only (support sampling, training, evaluation), after one warm-up
sweep at 1 shot; on CUDA it synchronises before reading the clock. Prints the seconds per shot count and in total.

    python bench/fewshot_sweep.py                  # the device `auto` resolves to
    python bench/fewshot_sweep.py --device cpu --threads 2
"""

from __future__ import annotations

import argparse
import time

import torch

from clipprobe.params import load_params
from clipprobe.probes.fewshot.sweep import run_sweep, summarize
from clipprobe.runtime import resolve_device


def synthetic_split(n: int, means: torch.Tensor, offset: torch.Tensor, generator: torch.Generator) -> dict:
    """(n, D) CLIP-like image features: class mean + a shared offset (the "cone") + isotropic noise."""
    labels = torch.arange(n) % len(means)
    image = offset + means[labels] + 1.3 * torch.randn(n, means.shape[1], generator=generator)
    return {"image": image, "labels": labels}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads during the sweep (run_sweep's default: 1)"
    )
    parser.add_argument("--draws", type=int, default=10)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--n-train", type=int, default=50_000)
    args = parser.parse_args()
    device = resolve_device(args.device)
    cfg = load_params().fewshot.model_copy(update={"draws": args.draws})
    shots = (1, 2, 4, 8, 16)

    g = torch.Generator().manual_seed(0)
    means = torch.randn(args.classes, args.dim, generator=g) / args.dim**0.25
    offset = torch.randn(args.dim, generator=g) / args.dim**0.25
    train, val, test = (synthetic_split(n, means, offset, g) for n in (args.n_train, 5_000, 10_000))
    text = means + 0.8 * torch.randn(4, *means.shape, generator=g) / args.dim**0.25  # (T=4, C, D)

    def sweep(ks: tuple[int, ...]):
        result = run_sweep(
            train, val, test, text, 100.0, ks, cfg, seed=0, device=device, cpu_threads=args.threads
        )
        if device.type == "cuda":
            torch.cuda.synchronize()
        return result

    sweep((1,))  # warm-up: CUDA context, kernels, allocator
    print(
        f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else args.threads}"
        f"{'' if device.type == 'cuda' else ' threads'}), {args.n_train} x {args.dim} train features, "
        f"{args.classes} classes, {cfg.draws} draws, methods {', '.join(cfg.inits)}, {cfg.epochs} epochs"
    )
    total = 0.0
    for k in shots:
        start = time.perf_counter()
        metrics = summarize(sweep((k,)))
        seconds = time.perf_counter() - start
        total += seconds
        accs = "  ".join(f"{n} {100 * v['acc']:.1f}" for n, v in metrics[f"shots_{k}"].items())
        print(f"{k:>2}-shot: {seconds:6.2f} s   (zero-shot {100 * metrics['zeroshot_acc']:.1f}; {accs})")
    print(
        f"full sweep ({len(shots)} shot counts x {len(cfg.inits)} methods x {cfg.draws} draws): {total:.2f} s"
    )


if __name__ == "__main__":
    main()
