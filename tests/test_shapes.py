"""The shapes world generator and its captions: determinism, labels, masks, counts, positions, captions."""

import hashlib
import re

import numpy as np
import pytest

from clipprobe.contracts import load_meta, load_split
from clipprobe.data.captions import (
    DEFAULT_CAPTION_MIX,
    CaptionObject,
    count_caption,
    free_caption,
    sample_caption,
    validate_caption_mix,
)
from clipprobe.data.shapes import (
    BACKGROUND_RANGE,
    CLASS_NAMES,
    COLOUR_NAMES,
    COLOURS,
    JITTER,
    MASK_CLASS_NAMES,
    MIN_VISIBLE,
    SHAPES,
    ShapeObject,
    _background,
    generate_shapes,
    generate_shapes_dataset,
    render_objects,
    sample_scene,
)
from clipprobe.errors import ClipprobeError

ARRAYS = ("images", "labels", "masks", "counts", "positions")
COLOUR_RE = "|".join(COLOUR_NAMES)
SHAPE_RE = "|".join(SHAPES)
CLASS_LIKE = re.compile(rf"^a photo of a ({COLOUR_RE}) ({SHAPE_RE})\.$")
COUNT_ONLY = re.compile(r"^a photo of (one shape|(two|three|four) shapes)\.$")


def _obj(colour: str, shape: str, size: float, x: float, y: float, angle: float = 0.0) -> ShapeObject:
    return ShapeObject(SHAPES.index(shape), COLOUR_NAMES.index(colour), size, x, y, angle)


def _caption_kind(caption: str) -> str:
    if CLASS_LIKE.match(caption):
        return "class_like"
    return "count_only" if COUNT_ONLY.match(caption) else "free"


def _is_bare_class_phrase(caption: str) -> bool:
    """'a red circle.', 'a photo of a red circle.', 'an image of an orange star.': nothing but the class."""
    filler = {"a", "an", "photo", "image", "picture", "drawing", "of", "with"}
    content = [w for w in caption.rstrip(".").split() if w not in filler]
    return len(content) == 2 and content[0] in COLOURS and content[1] in SHAPES


def _on_region(region: np.ndarray, position: np.ndarray) -> bool:
    """Whether (x, y) in [0, 1] falls on a pixel of the (H, W) bool region (1e-3 px slack for float32)."""
    h, w = region.shape
    ys, xs = np.nonzero(region)
    px, py = position[0] * w, position[1] * h
    return bool((np.maximum(np.abs(xs + 0.5 - px), np.abs(ys + 0.5 - py)) <= 0.5 + 1e-3).any())


def _random_caption_objects(rng: np.random.Generator, count: int) -> list[CaptionObject]:
    large = rng.integers(count)
    return [
        CaptionObject(str(rng.choice(COLOUR_NAMES)), str(rng.choice(SHAPES)), k == large, *rng.random(2))
        for k in range(count)
    ]


@pytest.fixture(scope="module")
def small():
    return generate_shapes(300, 32, seed=7, caption_mix=DEFAULT_CAPTION_MIX, workers=1)


# ------------------------------------------------------------ determinism


def test_same_seed_same_output_for_any_workers():
    a = generate_shapes(520, 32, seed=3, caption_mix=DEFAULT_CAPTION_MIX, workers=1)
    b = generate_shapes(520, 32, seed=3, caption_mix=DEFAULT_CAPTION_MIX, workers=2)  # 3 chunks, 2 processes
    c = generate_shapes(20, 32, seed=4, caption_mix=DEFAULT_CAPTION_MIX, workers=1)
    for name in ARRAYS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.captions == b.captions
    assert len({image.tobytes() for image in a.images}) == len(a)  # chunks draw independent streams
    assert not np.array_equal(a.images[:20], c.images)
    assert a.captions[:20] != c.captions


@pytest.mark.parametrize("image_size", [32, 64, 96, 128])
def test_shapes_dtypes_and_ranges(image_size):
    split = generate_shapes(12, image_size, seed=0, caption_mix=DEFAULT_CAPTION_MIX, workers=1)
    assert split.images.shape == (12, image_size, image_size, 3) and split.images.dtype == np.uint8
    assert split.masks.shape == (12, image_size, image_size) and split.masks.dtype == np.uint8
    assert split.labels.dtype == np.int64 and split.counts.dtype == np.int64
    assert split.positions.shape == (12, 2) and split.positions.dtype == np.float32
    assert len(split.captions) == 12
    assert split.masks.max() < len(MASK_CLASS_NAMES) and (split.labels < len(CLASS_NAMES)).all()
    assert ((split.positions > 0) & (split.positions < 1)).all()


def test_class_names_are_colour_major():
    assert len(CLASS_NAMES) == 48 and CLASS_NAMES[0] == "red circle" and CLASS_NAMES[7] == "green square"
    assert ["background", *SHAPES] == MASK_CLASS_NAMES
    assert _obj("green", "square", 0.5, 0.5, 0.5).label == 7


# ------------------------------------------------------------ hand-built scenes


def test_single_object_label_mask_and_position():
    scene = render_objects([_obj("red", "square", 0.5, 0.5, 0.5)], 64)
    assert scene.label == CLASS_NAMES.index("red square")
    assert set(np.unique(scene.mask)) == {0, 1 + SHAPES.index("square")}
    side = 0.5 * 64 / np.sqrt(2)  # circumscribed diameter 0.5 * H
    assert abs((scene.mask > 0).sum() - side**2) < 0.1 * side**2
    np.testing.assert_allclose(scene.position, (0.5, 0.5), atol=1 / 64)
    np.testing.assert_array_equal(scene.image[32, 32], COLOURS["red"])
    np.testing.assert_array_equal(scene.image[2, 2], (128, 128, 128))


def test_two_objects_label_the_larger_and_its_position():
    objects = [_obj("yellow", "star", 0.25, 0.78, 0.75), _obj("blue", "circle", 0.5, 0.3, 0.3)]
    scene = render_objects(objects, 64)
    assert scene.labelled == 1 and scene.label == CLASS_NAMES.index("blue circle")
    assert set(np.unique(scene.instances)) == {0, 1, 2}
    assert set(np.unique(scene.mask)) == {0, 1 + SHAPES.index("circle"), 1 + SHAPES.index("star")}
    np.testing.assert_allclose(scene.position, (0.3, 0.3), atol=1 / 64)


def test_occlusion_makes_the_uncovered_small_object_the_label():
    # the large triangle is drawn first and mostly hidden by the small square on top
    objects = [_obj("green", "triangle", 0.4, 0.5, 0.5), _obj("purple", "square", 0.34, 0.5, 0.5)]
    scene = render_objects(objects, 64)
    assert objects[0].large and not objects[1].large
    assert scene.labelled == 1 and scene.label == CLASS_NAMES.index("purple square")
    assert scene.visible[1] == 1.0 and scene.visible[0] < 0.5


def test_position_stays_on_a_ring_shaped_visible_region():
    # a small circle covers the centre of the large one: the ring's centroid is not on the ring
    objects = [_obj("white", "circle", 0.6, 0.5, 0.5), _obj("black", "circle", 0.34, 0.5, 0.5)]
    scene = render_objects(objects, 64)
    assert scene.labelled == 0
    assert _on_region(scene.instances == 1, np.array(scene.position))


def test_hidden_object_is_rejected():
    with pytest.raises(ValueError, match="not visible"):
        render_objects([_obj("red", "star", 0.2, 0.5, 0.5), _obj("blue", "square", 0.6, 0.5, 0.5)], 64)


# ------------------------------------------------------------ sampled scenes


def test_sampled_scenes_label_largest_visible_object_and_count():
    rng = np.random.default_rng(0)
    for count in [1, 2, 3, 4] * 40:
        objects, scene = sample_scene(rng, count, 48)
        shown = np.bincount(scene.instances.ravel(), minlength=count + 1)[1:]
        assert len(objects) == count and (shown > 0).all()  # every drawn object is visible
        assert (scene.visible >= MIN_VISIBLE).all()
        assert sum(o.large for o in objects) == 1
        assert scene.labelled == np.argmax(shown) and scene.label == objects[scene.labelled].label
        for k, obj in enumerate(objects):  # image, mask and instances agree pixel for pixel
            rgb = np.add(COLOURS[COLOUR_NAMES[obj.colour]], obj.jitter)
            assert (scene.image[scene.instances == k + 1] == rgb).all()
            assert (scene.mask[scene.instances == k + 1] == obj.shape + 1).all()
        assert (scene.mask[scene.instances == 0] == 0).all()
        labelled = scene.instances == scene.labelled + 1
        assert _on_region(labelled, np.array(scene.position))


def test_generated_label_matches_mask_and_pixels_at_position(small):
    size = small.images.shape[1]
    for image, mask, label, position in zip(
        small.images, small.masks, small.labels, small.positions, strict=True
    ):
        colour, shape = divmod(int(label), len(SHAPES))
        region = mask == shape + 1
        assert region.any() and _on_region(region, position)
        # the pixel under the position has the label's colour (within the jitter)
        x, y = np.minimum((position * size).astype(int), size - 1)
        if region[y, x]:
            assert np.abs(image[y, x].astype(int) - COLOURS[COLOUR_NAMES[colour]]).max() <= JITTER


def test_counts_in_range_and_roughly_uniform(small):
    assert set(np.unique(small.counts)) == {1, 2, 3}
    assert (np.abs(np.bincount(small.counts)[1:] - 100) < 30).all()
    distinct_shapes = [(np.unique(m) > 0).sum() for m in small.masks]
    assert (np.array(distinct_shapes) <= small.counts).all()
    split = generate_shapes(40, 32, seed=1, caption_mix={"count_only": 1.0}, min_objects=2, max_objects=4)
    assert set(np.unique(split.counts)) == {2, 3, 4}
    words = {2: "two shapes", 3: "three shapes", 4: "four shapes"}
    assert all(c == f"a photo of {words[n]}." for c, n in zip(split.captions, split.counts, strict=True))


def test_backgrounds_stay_mid_tone_grey_far_from_every_colour():
    rng = np.random.default_rng(0)
    drawn = [_background(rng, 32) for _ in range(150)]
    assert {kind for _, kind in drawn} == {0, 1, 2}  # noise, gradient, blotches: each image's mode
    pixels = np.concatenate([image.reshape(-1, 3) for image, _ in drawn]).astype(float)
    assert pixels.min() >= BACKGROUND_RANGE[0] and pixels.max() <= BACKGROUND_RANGE[1]
    assert (pixels.max(1) - pixels.min(1)).max() <= 45  # low saturation
    for rgb in COLOURS.values():
        nearest = np.clip(pixels, np.subtract(rgb, JITTER), np.add(rgb, JITTER))  # closest jittered colour
        assert np.sqrt(((pixels - nearest) ** 2).sum(1)).min() > 60
    assert all(JITTER <= v <= 255 - JITTER for rgb in COLOURS.values() for v in rgb)


# ------------------------------------------------------------ captions


def test_caption_mix_proportions():
    rng = np.random.default_rng(0)
    probs = validate_caption_mix(DEFAULT_CAPTION_MIX)
    kinds = []
    for _ in range(1500):
        objects = _random_caption_objects(rng, int(rng.integers(1, 4)))
        kinds.append(_caption_kind(sample_caption(objects, 0, probs, rng)))
    for kind, share in DEFAULT_CAPTION_MIX.items():
        assert abs(kinds.count(kind) / len(kinds) - share) < 0.04, kind


def test_bare_class_phrase_only_in_class_like_captions(small):
    rng = np.random.default_rng(1)
    for _ in range(2000):
        caption = free_caption(_random_caption_objects(rng, int(rng.integers(1, 5))), rng)
        assert not _is_bare_class_phrase(caption), caption
    for caption, label in zip(small.captions, small.labels, strict=True):
        kind = _caption_kind(caption)
        assert _is_bare_class_phrase(caption) == (kind == "class_like"), caption
        if kind == "class_like":  # names the labelled object only
            assert caption == f"a photo of a {CLASS_NAMES[label]}."


def test_count_only_captions_are_grammatical():
    assert count_caption(1) == "a photo of one shape."
    assert count_caption(2) == "a photo of two shapes."
    assert count_caption(3) == "a photo of three shapes."


def test_free_captions_group_identical_objects_and_vary():
    rng = np.random.default_rng(2)
    objects = [
        CaptionObject("red", "circle", False, 0.2, 0.2),
        CaptionObject("blue", "cross", True, 0.6, 0.6),
        CaptionObject("red", "circle", False, 0.8, 0.3),
    ]
    captions = [free_caption(objects, rng) for _ in range(600)]
    assert any("two small red circles" in c for c in captions)
    assert any("two red circles" in c for c in captions)  # sizes dropped
    assert any("a large blue cross" in c for c in captions) and any("crosses" not in c for c in captions)
    assert any(c.startswith("three shapes: ") for c in captions)
    assert any(c.startswith("there are three shapes: ") for c in captions)
    assert sum("small" in c for c in captions) > len(captions) / 2
    assert len(set(captions)) > 100


@pytest.mark.parametrize(
    ("a_xy", "b_xy", "true_relations"),
    [
        ((0.2, 0.5), (0.8, 0.55), {"to the left of", "next to"}),
        ((0.5, 0.2), (0.45, 0.8), {"above"}),
    ],
)
def test_relations_follow_positions(a_xy, b_xy, true_relations):
    rng = np.random.default_rng(3)
    a, b = CaptionObject("red", "circle", True, *a_xy), CaptionObject("blue", "star", False, *b_xy)
    inverse = {"to the left of": "to the right of", "next to": "next to", "above": "below"}
    relation = re.compile(r"(red circle|blue star) (to the left of|to the right of|above|below|next to) ")
    seen = set()
    for _ in range(300):
        match = relation.search(free_caption([a, b], rng))
        if match:
            first, said = match.groups()
            allowed = true_relations if first == "red circle" else {inverse[r] for r in true_relations}
            assert said in allowed
            seen.add(said)
    assert seen


def test_single_object_relation_captions_say_where_it_is():
    rng = np.random.default_rng(4)
    obj = CaptionObject("orange", "hexagon", True, 0.25, 0.8)
    captions = {free_caption([obj], rng) for _ in range(300)}
    assert any("in the bottom left" in c for c in captions)
    assert any("an orange hexagon" in c or "a large orange hexagon" in c for c in captions)


def test_captions_fit_the_context_length():
    from open_clip.tokenizer import SimpleTokenizer

    tokenizer = SimpleTokenizer()
    rng = np.random.default_rng(5)
    # worst case: four different objects with the longest words (hexagon is 2 BPE tokens, hexagons 3)
    objects = [
        CaptionObject(c, "hexagon", c == "purple", *rng.random(2)) for c in ("white", "black", "yellow")
    ]
    objects.append(CaptionObject("purple", "hexagon", True, 0.5, 0.5))
    lengths = [len(tokenizer.encode(free_caption(objects, rng))) for _ in range(500)]
    split = generate_shapes(200, 32, seed=2, caption_mix=DEFAULT_CAPTION_MIX, max_objects=4, workers=1)
    lengths += [len(tokenizer.encode(c)) for c in split.captions]
    assert max(lengths) <= 30  # + start and end tokens = context length 32


# ------------------------------------------------------------ dataset


def test_dataset_splits_pretrain_has_no_labels_and_splits_are_disjoint(tmp_path):
    sizes = {"pretrain": 60, "train": 40, "val": 20, "test": 20}
    root = generate_shapes_dataset(tmp_path, 32, sizes, seed=0, caption_mix=DEFAULT_CAPTION_MIX, workers=1)
    assert root == tmp_path / "shapes"
    meta = load_meta(tmp_path, "shapes")
    assert meta.class_names == CLASS_NAMES and meta.mask_class_names == MASK_CLASS_NAMES
    assert meta.source == "generated" and meta.image_size == (32, 32) and meta.splits == sizes
    pretrain = load_split(tmp_path, "shapes", "pretrain")
    assert len(pretrain) == 60 and len(pretrain.captions) == 60
    assert pretrain.labels is None and pretrain.masks is None
    assert pretrain.counts is None and pretrain.positions is None
    hashes = {}
    for name, n in sizes.items():
        split = load_split(tmp_path, "shapes", name)
        assert len(split) == n
        if name != "pretrain":
            assert all(getattr(split, field) is not None for field in ARRAYS)
        hashes[name] = {hashlib.sha1(image.tobytes()).hexdigest() for image in split.images}
    names = list(sizes)
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            assert not hashes[first] & hashes[second], (first, second)


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"caption_mix": {"free": 0.5, "class_like": 0.3}}, "caption_mix"),
        ({"caption_mix": {"free": 0.9, "bare": 0.1}}, "caption_mix"),
        ({"max_objects": 5}, "max_objects"),
        ({"min_objects": 3, "max_objects": 2}, "min_objects"),
        ({"image_size": 8}, "image_size"),
        ({"workers": 0}, "workers"),
    ],
)
def test_bad_arguments_name_the_parameter(kwargs, key):
    args = {"n": 4, "image_size": 32, "seed": 0, "caption_mix": DEFAULT_CAPTION_MIX, **kwargs}
    with pytest.raises(ClipprobeError, match=f"^{key}: "):
        generate_shapes(**args)


def test_dataset_needs_all_splits(tmp_path):
    with pytest.raises(ClipprobeError, match="^sizes: "):
        generate_shapes_dataset(tmp_path, 32, {"train": 4}, seed=0, caption_mix=DEFAULT_CAPTION_MIX)
