"""Embedding: the uint8 fast path must give open_clip's own PIL-preprocessed features, on random weights."""

import warnings

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from clipprobe.errors import ClipprobeError
from clipprobe.features.embed import embed_images, embed_texts
from clipprobe.preprocess import preprocess_uint8
from clipprobe.templates import TEMPLATES, get_templates

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def vit():
    torch.manual_seed(0)
    return open_clip.create_model("ViT-B-32", pretrained=None).eval()  # random weights, 224 px


@pytest.fixture(scope="module")
def tiny_rn(tiny_clip):
    return tiny_clip  # ModifiedResNet, 64 px


def _images(n: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """Smooth blobs plus noise: real structure to resample, not only white noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    centres = rng.random((n, 1, 1, 3))
    smooth = 255 * np.exp(
        -((x[None, ..., None] - centres) ** 2 + (y[None, ..., None] - centres[..., ::-1]) ** 2) * 8
    )
    noisy = smooth + rng.normal(0, 40, (n, height, width, 3))
    return np.clip(noisy, 0, 255).astype(np.uint8)


def _pil_reference(model, images: np.ndarray) -> torch.Tensor:
    """open_clip's usual path: its eval transform on PIL images, then encode_image in float32."""
    cfg = open_clip.get_model_preprocess_cfg(model)
    transform = open_clip.image_transform(
        cfg["size"], is_train=False, mean=cfg.get("mean"), std=cfg.get("std")
    )
    pixels = torch.stack([transform(Image.fromarray(image)) for image in images])
    with torch.no_grad():
        return model.encode_image(pixels)


# ---- templates


def test_template_sets():
    assert get_templates("single") == ["a photo of a {}."]
    cifar = get_templates("cifar")
    assert len(cifar) == len(set(cifar)) == 18
    assert cifar[0] == "a photo of a {}." and cifar[-1] == "a photo of the big {}."
    assert 5 <= len(get_templates("shapes")) <= 8
    assert all(t.count("{}") == 1 for templates in TEMPLATES.values() for t in templates)
    get_templates("cifar").append("edited")
    assert len(get_templates("cifar")) == 18  # callers get a copy


def test_unknown_template_set_lists_the_names():
    with pytest.raises(
        ClipprobeError, match=r"templates: unknown set 'imagenet'.*'cifar'.*'shapes'.*'single'"
    ):
        get_templates("imagenet")


# ---- preprocessing


@pytest.mark.parametrize("size", [(32, 32), (40, 28), (28, 50), (300, 300), (64, 64)])
def test_preprocess_matches_pil_transform_to_one_grey_level(size):
    images = _images(3, *size)
    mean, std = (0.48, 0.46, 0.41), (0.27, 0.26, 0.28)
    transform = open_clip.image_transform(64, is_train=False, mean=mean, std=std)
    expected = torch.stack([transform(Image.fromarray(image)) for image in images])
    got = preprocess_uint8(torch.from_numpy(images), 64, mean, std)
    assert got.shape == expected.shape == (3, 3, 64, 64)
    levels = (got - expected).abs() * torch.tensor(std).view(1, 3, 1, 1) * 255  # in grey levels
    assert levels.max() <= 2 + 1e-3  # PIL's fixed-point weights shift a rare near-tie by one level per pass
    assert (levels > 0.5).float().mean() < 0.01


# ---- image features


@pytest.fixture(scope="module")
def vit_run(vit):
    """One ViT-B-32 run (the slow model here): 32 px images through a real upsampling resize to 224."""
    images = _images(3, 32, 32)
    expected = _pil_reference(vit, images)
    return expected, embed_images(vit, images, device=CPU, batch_size=2, pre_projection=True)


def _assert_parity(got: torch.Tensor, expected: torch.Tensor) -> None:
    assert got.shape == expected.shape and got.dtype == torch.float32
    assert F.cosine_similarity(got, expected).min() >= 0.999
    # and far closer than two different images are, so the cosine above cannot pass by accident
    spread = (expected - expected.mean(0)).norm(dim=1).min()
    assert (got - expected).norm(dim=1).max() < 0.01 * spread


def test_vit_fast_path_matches_open_clip_pil_path(vit_run):
    expected, features = vit_run
    _assert_parity(features["image"], expected)


@pytest.mark.parametrize("size", [(48, 48), (40, 28)], ids=["upsample", "non-square"])
def test_resnet_fast_path_matches_open_clip_pil_path(size, tiny_rn):
    model = tiny_rn[0]
    images = _images(5, *size)
    expected = _pil_reference(model, images)
    _assert_parity(embed_images(model, images, device=CPU, batch_size=2)["image"], expected)


def test_vit_pre_projection_projects_to_image_features(vit, vit_run):
    features = vit_run[1]
    assert features["image_pre"].shape == (3, 768)  # width of ViT-B-32, before proj
    torch.testing.assert_close(features["image_pre"] @ vit.visual.proj.detach(), features["image"])


def test_resnet_pre_projection_is_the_attnpool_output_before_c_proj(tiny_rn):
    model = tiny_rn[0]
    images = _images(4, 64, 64)
    features = embed_images(model, images, device=CPU, batch_size=4, pre_projection=True)
    c_proj = model.visual.attnpool.c_proj
    assert features["image_pre"].shape == (4, c_proj.in_features)
    with torch.no_grad():
        torch.testing.assert_close(c_proj(features["image_pre"]), features["image"])
    plain = embed_images(model, images, device=CPU, batch_size=4)
    torch.testing.assert_close(features["image"], plain["image"], rtol=1e-5, atol=1e-6)


def test_normalised_features_and_batch_size_invariance(tiny_rn, tmp_path):
    model = tiny_rn[0]
    np.save(tmp_path / "images.npy", _images(7, 64, 64))
    images = np.load(tmp_path / "images.npy", mmap_mode="r")  # read-only memmap, as the embed stage reads it
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. torch's "non-writable NumPy array" warning
        runs = [
            embed_images(model, images, device=CPU, batch_size=b, pre_projection=True) for b in (1, 3, 7, 64)
        ]
    first = runs[0]
    torch.testing.assert_close(first["image_norm"].norm(dim=1), torch.ones(7))
    torch.testing.assert_close(first["image_norm"], F.normalize(first["image"], dim=-1))
    for run in runs[1:]:  # float kernels may sum in another order for another batch size: close, not equal
        for key in ("image", "image_norm", "image_pre"):
            torch.testing.assert_close(run[key], first[key], rtol=1e-5, atol=1e-6)
    again = embed_images(model, images, device=CPU, batch_size=3, pre_projection=True)
    assert all(torch.equal(again[key], runs[1][key]) for key in again)  # same inputs: identical outputs


def test_features_are_ordinary_tensors(tiny_rn):
    features = embed_images(tiny_rn[0], _images(2, 64, 64), device=CPU, batch_size=2)
    assert not any(value.is_inference() for value in features.values())  # usable as trainable inits
    assert all(value.device == CPU for value in features.values())


@pytest.mark.parametrize(
    "images, batch_size, match",
    [
        (np.zeros((2, 8, 8, 3), np.float32), 2, "images: need a non-empty uint8"),
        (np.zeros((2, 8, 8), np.uint8), 2, "images: need a non-empty uint8"),
        (np.zeros((0, 8, 8, 3), np.uint8), 2, "images: need a non-empty uint8"),
        (np.zeros((2, 8, 8, 3), np.uint8), 0, "batch_size: must be >= 1"),
    ],
)
def test_bad_image_input(images, batch_size, match, tiny_rn):
    with pytest.raises(ClipprobeError, match=match):
        embed_images(tiny_rn[0], images, device=CPU, batch_size=batch_size)


def test_pre_projection_needs_a_known_tower():
    model = torch.nn.Module()
    model.visual = torch.nn.Identity()
    with pytest.raises(
        ClipprobeError, match="pre_projection: supported for VisionTransformer and ModifiedResNet"
    ):
        embed_images(model, _images(1, 8, 8), device=CPU, batch_size=1, pre_projection=True)


@pytest.mark.gpu
@pytest.mark.parametrize("arch", ["vit", "tiny_rn"])
def test_cuda_bf16_fast_path_matches_cpu_float32(arch, vit, tiny_rn):
    model = vit if arch == "vit" else tiny_rn[0]
    images = _images(37, 32, 32)
    cpu = embed_images(model, images, device=CPU, batch_size=16, pre_projection=True)
    cuda = embed_images(model, images, device=torch.device("cuda"), batch_size=16, pre_projection=True)
    model.to(CPU)  # module-scoped fixture: leave it where the other tests expect it
    for key in ("image", "image_pre"):
        assert cuda[key].device == CPU and cuda[key].dtype == torch.float32
        assert F.cosine_similarity(cuda[key], cpu[key]).min() >= 0.999


# ---- text features


def test_text_embeddings_are_template_major(tiny_rn):
    model, tokenizer = tiny_rn
    classes, templates = ["red circle", "blue star", "green cross"], get_templates("shapes")[:3]
    text = embed_texts(model, tokenizer, classes, templates, device=CPU, batch_size=4)
    with torch.no_grad():
        expected = model.encode_text(tokenizer([templates[2].replace("{}", "blue star"), "a blue star."]))
    assert text.shape == (3, 3, expected.shape[1]) and text.dtype == torch.float32
    torch.testing.assert_close(text[2, 1], expected[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(text[1, 1], expected[1], rtol=1e-5, atol=1e-5)  # shapes[1] is "a {}."
    assert not torch.allclose(text[0, 0], text[0, 1])


@pytest.mark.parametrize("templates", [[], ["a photo of a cat."], ["a {} and a {}."]])
def test_bad_templates(templates, tiny_rn):
    model, tokenizer = tiny_rn
    with pytest.raises(ClipprobeError, match=r"templates: need at least one, each with exactly one '\{\}'"):
        embed_texts(model, tokenizer, ["cat"], templates, device=CPU)
