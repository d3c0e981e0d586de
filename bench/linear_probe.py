"""Benchmark: full-batch torch L-BFGS logistic regression (clipprobe) vs scikit-learn's LogisticRegression.

Both minimise the same objective (C * sum CE + 0.5 ||W||^2, unpenalised intercept) with the same stopping
rule (max |grad| <= tol on the objective / (C n), max_iter; sklearn's defaults 1e-4 and 1000), on the same synthetic CIFAR-100-shaped
features. The features imitate CLIP image embeddings: class clusters in a space with a decaying spectrum,
plus a shared offset as large as the spread (pairwise cosine ~0.5, CLIP's "cone"), scaled to norm ~10
like raw ViT-B/32 embeddings. Prints one table row per solver: seconds, iterations, test accuracy and the
objective value reached (lower is better).

    python bench/linear_probe.py                    # 50k x 512, 100 classes, C = 0.316 (the report's)
    python bench/linear_probe.py --n 10000 --device cuda
"""

from __future__ import annotations

import argparse
import logging
import time

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from clipprobe.probes.linear import LinearModel
from clipprobe.probes.logreg import fit_logreg, objective, search_C
from clipprobe.probes.zeroshot import accuracy
from clipprobe.runtime import resolve_device


def clip_like_features(n: int, n_test: int, dim: int, classes: int, sep: float, seed: int = 0):
    """Train and test (X (n, dim) float32, y (n,)) from one class-cluster distribution fixed by `seed`."""
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(classes, dim, generator=g) * sep  # (K, dim) latent class centres
    basis, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g))
    mixing = basis * torch.logspace(0, -2, dim)  # (dim, dim): random directions, spectrum decaying 100x
    offset = torch.randn(dim, generator=g)
    offset *= mixing.norm() / offset.norm()  # shared offset as large as the typical centred feature
    scale = 10.0 / (2**0.5 * mixing.norm())  # feature norm ~10

    def draw(m: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, classes, (m,), generator=g)
        x = (means[y] + torch.randn(m, dim, generator=g)) @ mixing.T + offset  # (m, dim)
        return (scale * x).float(), y

    return draw(n), draw(n_test)


def run_ours(Xtr: torch.Tensor, ytr: torch.Tensor, args: argparse.Namespace) -> tuple[float, LinearModel]:
    device = resolve_device(args.device)
    fit_logreg(Xtr[:500], ytr[:500], args.C, n_classes=args.classes, device=device)  # warm-up (imports)
    start = time.perf_counter()
    model = fit_logreg(
        Xtr, ytr, args.C, n_classes=args.classes, max_iter=args.max_iter, tol=args.tol, device=device
    )
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, model


def run_sklearn(Xtr: torch.Tensor, ytr: torch.Tensor, args: argparse.Namespace) -> tuple[float, LinearModel]:
    dtype = np.float32 if args.sklearn_dtype == "float32" else np.float64
    clf = LogisticRegression(C=args.C, max_iter=args.max_iter, tol=args.tol)
    start = time.perf_counter()
    clf.fit(Xtr.numpy().astype(dtype), ytr.numpy())
    seconds = time.perf_counter() - start
    logging.getLogger(__name__).debug("sklearn C=%g: %d iterations", args.C, clf.n_iter_[0])
    return seconds, LinearModel(torch.from_numpy(clf.coef_).float(), torch.from_numpy(clf.intercept_).float())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50000, help="training rows")
    parser.add_argument("--test-n", type=int, default=10000, help="test rows")
    parser.add_argument("--dim", type=int, default=512, help="feature dimension")
    parser.add_argument("--classes", type=int, default=100, help="number of classes")
    parser.add_argument("--sep", type=float, default=0.22, help="class-centre spread (sets the accuracy)")
    parser.add_argument("--C", type=float, default=0.316, help="inverse L2 strength (sklearn's C)")
    parser.add_argument("--tol", type=float, default=1e-4, help="max |grad| stopping rule (both solvers)")
    parser.add_argument("--max-iter", type=int, default=1000, help="L-BFGS iteration cap (both solvers)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (ours only)")
    parser.add_argument("--sklearn-dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--skip-sklearn", action="store_true", help="time ours only")
    parser.add_argument("--search", action="store_true", help="also time search_C (20%% of train as val)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", action="store_true", help="log L-BFGS iterations and evaluations")
    args = parser.parse_args()
    logging.basicConfig(format="%(message)s", level=logging.DEBUG if args.verbose else logging.WARNING)

    (Xtr, ytr), (Xte, yte) = clip_like_features(
        args.n, args.test_n, args.dim, args.classes, args.sep, args.seed
    )
    print(
        f"features {tuple(Xtr.shape)}, {args.classes} classes, C = {args.C}, torch threads {torch.get_num_threads()}"
    )
    runs = {f"clipprobe L-BFGS ({args.device}, float32)": run_ours}
    if not args.skip_sklearn:
        runs[f"sklearn lbfgs ({args.sklearn_dtype})"] = run_sklearn
    print(f"| {'solver':<34} | seconds | test acc | objective |")
    print(f"|{'-' * 36}|---------|----------|-----------|")
    for name, run in runs.items():
        seconds, model = run(Xtr, ytr, args)
        acc = accuracy(model.predict(Xte), yte)
        obj = objective(model, Xtr, ytr, args.C)
        print(f"| {name:<34} | {seconds:7.1f} | {100 * acc:8.2f} | {obj:9.1f} |", flush=True)
    if args.search:
        n_val = len(Xtr) // 5
        start = time.perf_counter()
        train, val = (Xtr[n_val:], ytr[n_val:]), (Xtr[:n_val], ytr[:n_val])
        kw = dict(device=resolve_device(args.device), max_iter=args.max_iter, tol=args.tol)
        best, curve = search_C(*train, *val, **kw)
        seconds = time.perf_counter() - start
        print(f"search_C: {len(curve)} fits in {seconds:.1f} s, best C = {best:.4g}")
        for c, acc in curve:
            print(f"  C = {c:<10.4g} val acc {100 * acc:.2f}")


if __name__ == "__main__":
    main()
