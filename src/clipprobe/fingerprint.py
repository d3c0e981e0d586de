"""The golden fingerprint: a few steps of every training loop the pipeline runs, hashed, against committed bytes.

Each loop runs the project's own code on small inputs built here (never from params.yaml, so editing the
params cannot move it): CLIP pretraining, the frozen-feature passes, the few-shot heads (AdamW, SGD, Adam on
CLIP's projection, the closed-form ones), L-BFGS logistic regression, the VQ-VAEs and the segmentation
decoders. With the deterministic CPU mode on, every x86-64 machine must give GOLDEN's bytes; a machine that
does not will not reproduce the committed results either, and `mismatch_message` says which loop moved.
`python -m clipprobe.cpu` runs it in a few seconds; tests/test_determinism.py runs it on every test run.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable

import numpy as np
import torch

import clipprobe
from clipprobe.cpu import NATIVE, describe_cpu
from clipprobe.cpu.half import to_half
from clipprobe.data.captions import DEFAULT_CAPTION_MIX
from clipprobe.data.shapes import generate_shapes
from clipprobe.decoders.segment_models import build_models as build_segmenters
from clipprobe.decoders.segment_train import Recipe
from clipprobe.decoders.segment_train import train as train_segmenter
from clipprobe.decoders.vqvae import build as build_vqvae
from clipprobe.decoders.vqvae_train import Pairs, train_vqvae
from clipprobe.features.embed import embed_images, embed_texts
from clipprobe.features.tower import FrozenTower, run_tower
from clipprobe.features.views import embed_views
from clipprobe.models.clip import create_clip, mean_std
from clipprobe.models.pretrain import PretrainConfig, pretrain_clip
from clipprobe.params import FewshotParams, VqvaeParams
from clipprobe.plateau import PlateauRule
from clipprobe.probes.fewshot.sweep import run_sweep
from clipprobe.probes.logreg import fit_logreg
from clipprobe.readouts import FEWSHOT_METHODS
from clipprobe.runtime import start

# sha256 of each loop's bytes under the deterministic CPU mode, made on an Intel Xeon (Sapphire Rapids) and
# checked on emulated Intel and AMD CPUs (tools/cpu_emulated.py). Regenerate after changing a training loop on
# purpose: `python -m clipprobe.cpu --update` prints the new dict.
GOLDEN = {
    "clip pretraining": "32f83a8e7e5ef2a07f5bfdf92815a870dff9788495ce56b1387458b786531a95",
    "embedding": "4a868c8ad6dfbb4aa380cec6ffcfa9159bc162addc855a893b66ef7e5eb87ea6",
    "frozen tower": "2baad3430dc6cb900c2b9d78b6931910ce1aba69947beab99d228a0fc00b4c98",
    "few-shot heads": "63be0c5d9acf2cfcb2224b5a5e1476519125de4ffd1363dcc94628b931c9def2",
    "logistic regression": "acd3b7925edfe9596f8978eaf85be6405baa714e69a59df3b28f1dc241b095a9",
    "vq-vae": "0bf5729832d8ab0ad3e6766f2af7f6d97eec4898f3b140f2c6ea8b03d958b725",
    "segmentation": "44d9ce14b2ea8951c2026ad491ece92456824115d6d18c5ce04b7796c1971546",
}

CPU = torch.device("cpu")
THREADS = 2  # the default of params.yaml's `threads`: the fingerprint holds for that count
CLASSES = ("red circle", "blue square", "green triangle", "yellow star", "purple cross", "white hexagon")
TINY_FEWSHOT = {
    "inits": list(FEWSHOT_METHODS),
    "draws": 2,
    "epochs": 4,
    "eval_every": 2,
    "val_per_class": 2,
    "linear": {"lr": 1e-3, "weight_decay": 0.0, "lrs": [1e-4, 1e-3]},
    "clap": {"lr": 0.1, "warmup_lr": 1e-5, "batch_size": 8, "views": 2},
    "lpp": {"views": 1, "alpha_every": 2, "val_per_class": 3},
    "prolip": {"lr": 1e-3, "views": 2},
    "tip": {"beta_scale": 7, "beta_steps": 4, "alpha_scale": 3, "alpha_steps": 3, "views": 2},
    "gda": {"alphas": [0.0, 0.01, 1.0], "views": 2},
    "modes": {"attributes": [], "shots": [2], "draws": 2, "epochs": 2},
}
ONE_EPOCH = PlateauRule(tolerance=0.01, max_epochs=1)
TINY_VQVAE = {
    "n_train": 16, "n_val": 8, "n_test": 8, "max_epochs": 1, "batch_size": 8, "lr": 1e-3, "image_size": 32,
    "hidden": 16, "code_dim": 16, "codebook_size": 32, "commitment": 0.25, "decay": 0.99, "samples": 2,
}  # fmt: skip


def digest(tensors: Iterable[torch.Tensor]) -> str:
    """sha256 of the tensors' bytes, in order."""
    sha = hashlib.sha256()
    for tensor in tensors:
        sha.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return sha.hexdigest()


class _Loops:
    """The loops in pipeline order; later ones read what earlier ones made (the pretrained CLIP, its maps)."""

    def __init__(self) -> None:
        self.data = generate_shapes(64, 64, seed=0, caption_mix=DEFAULT_CAPTION_MIX, workers=1)
        self.random = torch.Generator().manual_seed(1)

    def clip_pretraining(self) -> list[torch.Tensor]:
        self.model, self.tokenizer = create_clip("clipprobe-tiny-rn", "scratch")
        cfg = PretrainConfig(steps=3, batch_size=32, warmup_steps=1)
        rows = pretrain_clip(
            self.model, self.tokenizer, self.data.images, self.data.captions, cfg, 0, CPU, progress=False
        )
        return [torch.tensor([row["loss"] for row in rows]), *self.model.state_dict().values()]

    def embedding(self) -> list[torch.Tensor]:
        features = embed_images(self.model, self.data.images, device=CPU, batch_size=32, pre_projection=True)
        views = embed_views(
            self.model, self.data.images[:16], 2, 0, device=CPU, batch_size=32, pre_projection=True
        )
        text = embed_texts(
            self.model, self.tokenizer, list(CLASSES), ["a {}.", "a photo of a {}."], device=CPU
        )
        return [*features.values(), *views.values(), text]

    def frozen_tower(self) -> list[torch.Tensor]:
        tower = FrozenTower(self.model)
        mean, std = mean_std(self.model)
        run = {"mean": mean, "std": std, "device": CPU, "batch_size": 32}
        self.maps = run_tower(tower, self.data.images, {"map": lambda fmap: fmap}, input_size=128, **run)[
            "map"
        ]
        pooled = run_tower(tower, self.data.images, {"pooled": tower.pool}, input_size=64, **run)["pooled"]
        return [self.maps, pooled]  # (64, 512, 4, 4) upsampled x2, as the decoders read it; (64, 128)

    def fewshot_heads(self) -> list[torch.Tensor]:
        dim, pre_dim, n_classes = 128, 64, len(CLASSES)
        labels = torch.arange(48) % n_classes

        def split() -> dict[str, torch.Tensor]:
            pre = torch.randn(48, pre_dim, generator=self.random)
            return {"image": pre @ projection["weight"].T, "image_pre": pre, "labels": labels}

        def views(
            pre: torch.Tensor,
        ) -> dict[str, torch.Tensor]:  # two noisy "augmented" copies, as embed keeps
            pre = pre + 0.3 * torch.randn(2, *pre.shape, generator=self.random)
            return {"views": to_half(pre @ projection["weight"].T), "views_pre": to_half(pre)}

        projection = {
            "weight": torch.randn(dim, pre_dim, generator=self.random) / 8,
            "bias": torch.zeros(dim),
        }
        train, val, test = split(), split(), split()
        train.update(views(train["image_pre"]))
        text = torch.randn(2, n_classes, dim, generator=self.random)
        cfg = FewshotParams.model_validate(TINY_FEWSHOT)
        sweep = run_sweep(train, val, test, text, 100.0, [1, 2], cfg, 0, projection=projection)
        results = [result for methods in sweep.results.values() for result in methods.values()]
        trained = [value for result in results if result.trace for value in result.trace.state.values()]
        return [*trained, *(result.hits for result in results)]

    def logistic_regression(self) -> list[torch.Tensor]:
        x = torch.randn(240, 64, generator=self.random)
        y = torch.arange(240) % 6
        model = fit_logreg(x + y[:, None].float(), y, C=0.316, max_iter=15)
        return [model.weight, model.bias]

    def vqvae(self) -> list[torch.Tensor]:
        cfg = VqvaeParams.model_validate(TINY_VQVAE)
        pixels = torch.from_numpy(np.array(self.data.images[:24])).permute(0, 3, 1, 2).float() / 255
        pixels = torch.nn.functional.interpolate(pixels, size=32, mode="bilinear", antialias=True)
        out = []
        for kind, inputs in (("pixels", pixels), ("clip", self.maps[:24])):
            torch.manual_seed(0)
            model = build_vqvae(kind, cfg, {"clip": inputs}, grid=4)
            train, val = Pairs(inputs[:16], pixels[:16]), Pairs(inputs[16:], pixels[16:])
            train_vqvae(
                model, train, val, rule=ONE_EPOCH, batch_size=8, lr=1e-3, seed=0, device=CPU, desc=kind
            )
            out.extend(model.state_dict().values())
        return out

    def segmentation(self) -> list[torch.Tensor]:
        masks = torch.from_numpy(self.data.masks[:24].astype("uint8"))
        images = torch.from_numpy(np.array(self.data.images[:24]))
        names = [f"shape {k}" for k in range(int(masks.max()) + 1)]
        recipe = Recipe(ONE_EPOCH, batch_size=8, lr=3e-3, seed=0)
        models = build_segmenters(
            ["clip", "unet11_scratch"], self.model, tower_size=128, image_size=64, n_classes=len(names),
            width_div=8, weights_dir="", seed=0, device=CPU,
        )  # fmt: skip
        out = []
        for model, inputs in zip(models.values(), (self.maps[:24], images), strict=True):
            split = {"train": inputs[:16], "val": inputs[16:]}
            trained = train_segmenter(model, split, {"train": masks[:16], "val": masks[16:]}, names, recipe)
            out.extend(trained.model.state_dict().values())
        return out


def loops() -> dict[str, Callable[[], list[torch.Tensor]]]:
    """The loops by name, bound to one shared state; run them in order."""
    state = _Loops()
    return {
        "clip pretraining": state.clip_pretraining,
        "embedding": state.embedding,
        "frozen tower": state.frozen_tower,
        "few-shot heads": state.fewshot_heads,
        "logistic regression": state.logistic_regression,
        "vq-vae": state.vqvae,
        "segmentation": state.segmentation,
    }


def fingerprint() -> dict[str, str]:
    """{loop: sha256} on this machine, in a process whose CPU mode was set when clipprobe was imported."""
    start(0, THREADS)
    return {name: digest(run()) for name, run in loops().items()}


def mismatch_message(found: dict[str, str], golden: dict[str, str] = GOLDEN) -> str | None:
    """None when `found` is `golden`; else one message naming the CPU, the loops whose bytes moved, what to do."""
    moved = [name for name in golden if found.get(name) != golden[name]]
    if not moved:
        return None
    mode = (
        "on"
        if clipprobe.DETERMINISTIC_CPU
        else f"OFF ({NATIVE}=1, or torch or numpy imported before clipprobe)"
    )
    first = moved[0]
    return (
        f"golden fingerprint: {', '.join(moved)} gave other bytes on {describe_cpu()} with the deterministic "
        f"CPU mode {mode} ({first}: {found.get(first, 'missing')[:12]}, golden {golden[first][:12]}): this "
        "machine will not reproduce the committed results byte for byte. If you changed that loop on purpose, "
        "regenerate the results and GOLDEN (python -m clipprobe.cpu --update); otherwise report this line "
        "with the output of python -m clipprobe.cpu in an issue"
    )
