"""open_clip models by (arch, pretrained): tiny configs, tag / checkpoint-file routes, save/load, offline errors."""

import json

import huggingface_hub
import open_clip
import pytest
import torch
from fakes import put_in_hf_cache
from helpers import one_line
from open_clip.transformer import QuickGELU

from clipprobe.errors import ClipprobeError
from clipprobe.models.clip import (
    TINY_MEAN,
    TINY_STD,
    create_clip,
    image_size,
    load_clip,
    mean_std,
    save_clip,
)
from clipprobe.models.registry import TINY_ARCHS, has_attnpool_map, list_archs
from clipprobe.stage import run_stage

CAPTIONS = ["a large red circle", "two small blue squares and a green star"]


@pytest.fixture
def offline(monkeypatch):
    """No network, whatever the environment: huggingface_hub reads HF_HUB_OFFLINE once, at import."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


@pytest.fixture
def fake_tags(monkeypatch):
    """Two open_clip tags for the tiny RN (one QuickGELU, like every `openai` tag), served from an HF cache."""
    pretrained = open_clip.pretrained
    tags = {
        "plain": pretrained._pcfg(hf_hub="clipprobe/tiny-rn-plain/"),
        "quick": pretrained._pcfg(hf_hub="clipprobe/tiny-rn-quick/", quick_gelu=True),
    }
    monkeypatch.setitem(pretrained._PRETRAINED, "clipprobe-tiny-rn", tags)


def _outputs(model, tokenizer) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    size = image_size(model)
    images = torch.randn(2, 3, size, size, generator=generator)
    with torch.no_grad():
        return model.encode_image(images), model.encode_text(tokenizer(CAPTIONS))


def _scratch(arch: str = "clipprobe-tiny-rn", seed: int = 0):
    torch.manual_seed(seed)
    return create_clip(arch, "scratch")


def test_torch_free_registry_lists_exactly_what_open_clip_builds():
    assert set(TINY_ARCHS) == {"clipprobe-tiny-rn", "clipprobe-tiny-vit"}
    assert list_archs() == sorted(open_clip.list_models())  # the tiny configs are registered by models.clip
    resnets = {arch for arch in list_archs() if has_attnpool_map(arch)}
    assert {"RN50", "RN101", "clipprobe-tiny-rn"} <= resnets
    assert not resnets & {"ViT-B-32", "clipprobe-tiny-vit", "convnext_base"}


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_tiny_model_builds_and_runs(arch):
    model, tokenizer = _scratch(arch)
    assert not model.training
    assert image_size(model) == 64
    assert mean_std(model) == (TINY_MEAN, TINY_STD)
    assert tokenizer(CAPTIONS).shape == (2, 32)
    image_features, text_features = _outputs(model, tokenizer)
    assert image_features.shape == text_features.shape == (2, 128)
    assert torch.isfinite(image_features).all() and torch.isfinite(text_features).all()


def test_tiny_rn_has_attnpool_and_a_512_channel_layer4_map():
    model, _ = _scratch("clipprobe-tiny-rn")
    visual = model.visual
    assert isinstance(visual.attnpool, open_clip.modified_resnet.AttentionPool2d)
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        x = visual.layer3(visual.layer2(visual.layer1(visual.stem(x))))
        fmap = visual.layer4(x)  # (B, C, H/32, W/32) pre-attnpool
    assert fmap.shape == (3, 512, 2, 2)
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(8.10e6, rel=0.01)  # the prototype's


def test_checkpoint_file_route_gives_identical_outputs(tmp_path):
    source, tokenizer = _scratch(seed=1)
    torch.save(source.state_dict(), tmp_path / "ckpt.pt")
    loaded, _ = _scratch(seed=2)  # a different init, to show the file's weights replace it
    assert not torch.equal(_outputs(loaded, tokenizer)[0], _outputs(source, tokenizer)[0])
    loaded, _ = create_clip("clipprobe-tiny-rn", str(tmp_path / "ckpt.pt"))
    for got, want in zip(_outputs(loaded, tokenizer), _outputs(source, tokenizer), strict=True):
        assert torch.equal(got, want)


def test_save_load_round_trip_is_exact(tmp_path):
    model, tokenizer = _scratch("clipprobe-tiny-vit", seed=3)
    save_clip(model, "clipprobe-tiny-vit", "scratch", tmp_path / "clip")
    state = torch.load(tmp_path / "clip" / "weights.pt", weights_only=True)
    assert state.keys() == model.state_dict().keys()
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    info = json.loads((tmp_path / "clip" / "model.json").read_text())
    assert info == {
        "arch": "clipprobe-tiny-vit",
        "pretrained": "scratch",
        "image_size": 64,
        "mean": list(TINY_MEAN),
        "std": list(TINY_STD),
    }
    loaded, loaded_tokenizer, loaded_info = load_clip(tmp_path / "clip")
    assert loaded_info == info and not loaded.training
    assert torch.equal(loaded_tokenizer(CAPTIONS), tokenizer(CAPTIONS))
    for got, want in zip(_outputs(loaded, loaded_tokenizer), _outputs(model, tokenizer), strict=True):
        assert torch.equal(got, want)
    written = sorted(p.name for p in (tmp_path / "clip").iterdir())
    assert written == ["model.json", "weights.pt"]  # no temp files left behind


def test_cached_tag_loads_offline_and_keeps_quick_gelu_through_save_load(offline, fake_tags, tmp_path):
    source, tokenizer = _scratch(seed=4)
    put_in_hf_cache(tmp_path / "cache", "clipprobe/tiny-rn-quick", source.state_dict())
    put_in_hf_cache(tmp_path / "cache", "clipprobe/tiny-rn-plain", source.state_dict())
    plain, _ = create_clip("clipprobe-tiny-rn", "plain", cache_dir=tmp_path / "cache")
    quick, _ = create_clip("clipprobe-tiny-rn", "quick", cache_dir=tmp_path / "cache")
    assert torch.equal(_outputs(plain, tokenizer)[1], _outputs(source, tokenizer)[1])
    assert not any(isinstance(m, QuickGELU) for m in plain.modules())
    assert any(isinstance(m, QuickGELU) for m in quick.modules())  # the tag's activation, not the config's
    assert not torch.equal(_outputs(quick, tokenizer)[1], _outputs(plain, tokenizer)[1])
    assert mean_std(quick) == (TINY_MEAN, TINY_STD)
    save_clip(quick, "clipprobe-tiny-rn", "quick", tmp_path / "clip")
    reloaded, _, _ = load_clip(tmp_path / "clip")
    assert torch.equal(_outputs(reloaded, tokenizer)[1], _outputs(quick, tokenizer)[1])


def test_uncached_tag_offline_is_one_line_naming_the_file(offline, tmp_path, capfd):
    with pytest.raises(SystemExit) as exit_info:
        run_stage("clip", lambda: create_clip("ViT-B-32", "openai", cache_dir=tmp_path / "cache"))
    assert exit_info.value.code == 2
    lines = capfd.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    message = lines[0]
    assert "Traceback" not in message and "clip.pretrained" in message and str(tmp_path / "cache") in message
    assert "open_clip_model.safetensors" in message
    assert "https://huggingface.co/timm/vit_base_patch32_clip_224.openai" in message
    assert "ViT-B-32-quickgelu" in message  # the OpenAI weights need QuickGELU when given as a file


@pytest.mark.parametrize(
    ("arch", "pretrained", "expected"),
    [
        ("ViT-Z-99", "scratch", "clip.arch: unknown arch 'ViT-Z-99'; use one of clipprobe-tiny-rn"),
        (
            "RN50",
            "laion-nonsense",
            "clip.pretrained: 'laion-nonsense' is not a tag of RN50; allowed: scratch, ",
        ),
        ("clipprobe-tiny-rn", "openai", "'openai' is not a tag of clipprobe-tiny-rn; allowed: scratch, a"),
        ("RN50", "missing/rn50.pt", "checkpoint file missing/rn50.pt not found"),
    ],
)
def test_bad_arch_or_pretrained(offline, arch, pretrained, expected):
    with pytest.raises(ClipprobeError, match=expected.replace("(", r"\(")):
        create_clip(arch, pretrained)


def test_errors_name_the_group_the_choice_came_from(offline):
    with pytest.raises(ClipprobeError, match=r"^tower\.pretrained: 'nope' is not a tag of RN50"):
        create_clip("RN50", "nope", key="tower")


def test_checkpoint_of_another_arch_or_garbage_is_an_error(tmp_path):
    vit, _ = _scratch("clipprobe-tiny-vit")
    torch.save(vit.state_dict(), tmp_path / "vit.pt")
    (tmp_path / "garbage.pt").write_text("not a checkpoint")
    for name in ("vit.pt", "garbage.pt"):
        expected = f"{name} is not a loadable clipprobe-tiny-rn checkpoint"
        with pytest.raises(ClipprobeError, match=expected) as err:
            create_clip("clipprobe-tiny-rn", str(tmp_path / name))
        one_line(err)


def test_load_clip_names_the_missing_file(tmp_path):
    with pytest.raises(
        ClipprobeError, match=r"model\.json: expected a file, found nothing there \(written by the clip stage"
    ):
        load_clip(tmp_path / "nothing")
    model, _ = _scratch()
    save_clip(model, "clipprobe-tiny-rn", "scratch", tmp_path / "clip")
    (tmp_path / "clip" / "weights.pt").unlink()
    with pytest.raises(
        ClipprobeError, match=r"weights\.pt: expected a file, found nothing there \(written by the clip stage"
    ):
        load_clip(tmp_path / "clip")
