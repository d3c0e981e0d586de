"""The shapes world: a seeded generator of captioned images of coloured shapes, with masks and labels.

Each image holds `min_objects..max_objects` objects (default 1-3, at most 4, counts uniform; 6 shapes x 8
colours, +-12 RGB jitter, any rotation) on a mid-tone, low-saturation background (noise, gradient or
blotches) that no object colour comes close to. One object is the large main object (0.38-0.6 of the image
side), the others are small distractors (0.15-0.34). Objects may occlude each other; a layout in which any
object is less than 35% visible is redrawn. Per image: the class of the largest *visible* object
(colour-major, `CLASS_NAMES`), a semantic shape mask, the object count, the centre of the labelled object's
visible pixels and a caption (captions.py).

Randomness comes from one numpy Generator per fixed-size chunk of images, seeded by (seed, chunk index), so
the output is the same for any number of worker processes.
"""

from __future__ import annotations

import cmath
import math
import multiprocessing
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageDraw

from clipprobe.data.captions import CaptionObject, sample_caption, validate_caption_mix
from clipprobe.data.store import DatasetMeta, Split, save_dataset
from clipprobe.errors import ClipprobeError
from clipprobe.progress import progress as progress_bar

SHAPES = ("circle", "square", "triangle", "star", "hexagon", "cross")
COLOURS = {
    "red": (215, 35, 35),
    "green": (30, 170, 50),
    "blue": (40, 80, 225),
    "yellow": (240, 220, 40),
    "orange": (240, 135, 25),
    "purple": (145, 30, 200),
    "white": (240, 240, 240),
    "black": (20, 20, 20),
}  # every channel within [JITTER, 255 - JITTER], so jittered colours need no clipping
COLOUR_NAMES = tuple(COLOURS)
# class index = colour index * 6 + shape index ("red circle", "red square", ...)
CLASS_NAMES = [f"{colour} {shape}" for colour in COLOUR_NAMES for shape in SHAPES]
MASK_CLASS_NAMES = ["background", *SHAPES]  # mask value = shape index + 1
SPLITS = ("pretrain", "train", "val", "test")
MAX_OBJECTS = 4  # the longest caption with 4 objects is 30 BPE tokens (context length 32)

MAIN_SIZE = (0.38, 0.6)  # main object: diameter of its circumscribed circle, as a fraction of the image side
DISTRACTOR_SIZE = (0.15, 0.34)
MIN_VISIBLE = 0.35  # redraw the layout if any object shows less than this share of its own area
JITTER = 12  # +- per RGB channel
BACKGROUND_RANGE = (75, 180)  # every background pixel stays in this per-channel range (far from all colours)

_CHUNK = 256  # images per seeded chunk: the unit of work and of randomness
_MAX_TRIES = 1000  # layouts tried per image before giving up (never reached at the allowed settings)


class ShapeObject(NamedTuple):
    """One object to draw; sizes and positions are fractions of the image side."""

    shape: int  # index into SHAPES
    colour: int  # index into COLOUR_NAMES
    size: float  # diameter of the circumscribed circle
    x: float  # centre, left to right
    y: float  # centre, top to bottom
    angle: float = 0.0  # rotation in radians
    jitter: tuple[int, int, int] = (0, 0, 0)  # added to the colour's RGB

    @property
    def label(self) -> int:
        return self.colour * len(SHAPES) + self.shape

    @property
    def large(self) -> bool:
        return self.size >= MAIN_SIZE[0]


@dataclass
class Scene:
    """A rendered image and everything derived from which object is visible where."""

    image: np.ndarray  # (H, W, 3) uint8
    instances: np.ndarray  # (H, W) uint8: 0 = background, k = objects[k - 1] is visible there
    mask: np.ndarray  # (H, W) uint8: 0 = background, shape index + 1
    visible: np.ndarray  # (K,) float: visible share of each object's own area
    labelled: int  # index of the largest visible object
    label: int  # its class index
    position: tuple[float, float]  # (x, y) in [0, 1]: centre of its visible pixels
    background: int = -1  # index into BACKGROUNDS of a sampled scene (-1: a given background)


# ---------------------------------------------------------------------------------------------- rendering


def _unit_outline(shape: str) -> np.ndarray:
    """(K,) complex polygon vertices (x + iy) of a shape with circumradius 1 around the origin."""
    if shape == "cross":  # a plus sign: one arm's three corners, repeated every quarter turn
        arm, half = 0.94, 0.32
        quarter = np.array([half - 1j * arm, half - 1j * half, arm - 1j * half])
        return (quarter * 1j ** np.arange(4)[:, None]).ravel()
    steps = {"circle": 48, "square": 4, "triangle": 3, "hexagon": 6, "star": 10}[shape]
    radii = np.tile([1.0, 0.45], 5) if shape == "star" else np.ones(steps)
    return radii * np.exp(2j * np.pi * np.arange(steps) / steps)


_OUTLINES = [_unit_outline(shape) for shape in SHAPES]
_RGB = list(COLOURS.values())


class _Drawn(NamedTuple):
    canvas: Image.Image  # 'L' instance image: 0 = background, k = objects[k - 1] visible
    shown: np.ndarray  # (K,) visible pixels of each object
    areas: np.ndarray  # (K,) pixels of each object drawn alone


def _draw_instances(objects: Sequence[ShapeObject], image_size: int) -> _Drawn:
    """Draw in painter's order (later objects on top) with fill = index + 1.

    Object k's own area is read from the histogram right after drawing it, when only it has the value k + 1.
    """
    canvas = Image.new("L", (image_size, image_size), 0)
    draw = ImageDraw.Draw(canvas)
    areas = np.empty(len(objects))
    for k, obj in enumerate(objects):
        scale = obj.size * image_size / 2 * cmath.exp(1j * obj.angle)  # rotation and size in one factor
        vertices = _OUTLINES[obj.shape] * scale + complex(obj.x, obj.y) * image_size
        draw.polygon(vertices.view(np.float64).tolist(), fill=k + 1)  # complex -> flat x0, y0, x1, y1, ...
        areas[k] = canvas.histogram()[k + 1]
    shown = np.array(canvas.histogram()[1 : len(objects) + 1], dtype=np.float64)
    return _Drawn(canvas, shown, areas)


def _visible_centre(instances: np.ndarray, k: int) -> tuple[float, float]:
    """Centroid of object k's visible pixels; snapped to the nearest such pixel if it falls outside them
    (an occluded object can be crescent-shaped), so the position always lies on the object."""
    region = instances == k + 1
    pixels = np.arange(len(region))
    n = region.sum()
    cx, cy = region.sum(0) @ pixels / n, region.sum(1) @ pixels / n
    if not region[int(cy + 0.5), int(cx + 0.5)]:
        ys, xs = np.nonzero(region)
        nearest = np.argmin((ys - cy) ** 2 + (xs - cx) ** 2)
        cy, cx = ys[nearest], xs[nearest]
    return (float(cx) + 0.5) / len(region), (float(cy) + 0.5) / len(region)


def _compose(objects: Sequence[ShapeObject], drawn: _Drawn, background: np.ndarray) -> Scene:
    """Paint each object's visible pixels over the background; derive mask, label and position."""
    instances = np.asarray(drawn.canvas)
    image = background.copy()
    shape_lut = np.zeros(256, np.uint8)
    for k, obj in enumerate(objects):
        image[instances == k + 1] = np.add(_RGB[obj.colour], obj.jitter)
        shape_lut[k + 1] = obj.shape + 1
    labelled = int(np.argmax(drawn.shown))
    return Scene(
        image=image,
        instances=instances,
        mask=shape_lut[instances],
        visible=drawn.shown / np.maximum(drawn.areas, 1),
        labelled=labelled,
        label=objects[labelled].label,
        position=_visible_centre(instances, labelled),
    )


def render_objects(
    objects: Sequence[ShapeObject], image_size: int, background: np.ndarray | None = None
) -> Scene:
    """Draw `objects` in order (later ones on top) over `background` ((H, W, 3) uint8; mid grey if None).

    Every object must stay at least partly visible; the label, mask and position follow from what is visible.
    """
    drawn = _draw_instances(objects, image_size)
    if not (drawn.shown > 0).all():
        raise ValueError(f"objects {np.flatnonzero(drawn.shown == 0).tolist()} are not visible")
    if background is None:
        background = np.full((image_size, image_size, 3), 128, np.uint8)
    return _compose(objects, drawn, background)


# ---------------------------------------------------------------------------------------------- sampling


def _background(rng: np.random.Generator, image_size: int) -> tuple[np.ndarray, int]:
    """(H, W, 3) uint8 mid-tone, low-saturation noise, gradient or blotches, clipped to BACKGROUND_RANGE."""
    h = image_size
    tint = rng.uniform(-10, 10, 3).astype(np.float32)
    kind = rng.integers(3)
    if kind == 0:  # fine noise around a flat grey
        img = rng.uniform(100, 155) + tint + 9 * rng.standard_normal((h, h, 1), dtype=np.float32)
    elif kind == 1:  # linear gradient between two greys, any direction
        g0, g1 = rng.uniform(85, 170, 2)
        theta = rng.uniform(0, 2 * np.pi)
        ramp = (
            np.cos(theta) * np.arange(h, dtype=np.float32)
            + np.sin(theta) * np.arange(h, dtype=np.float32)[:, None]
        )
        ramp = (ramp - ramp.min()) / (ramp.max() - ramp.min())
        img = (g0 + (g1 - g0) * ramp)[..., None] + tint
    else:  # blotchy low-frequency noise: a coarse random grid, upsampled smoothly
        cells = int(rng.integers(2, 6))
        grid = rng.uniform(100, 155) + 25 * rng.standard_normal((cells, cells, 1)) + tint
        grid = grid + 4 * rng.standard_normal((cells, cells, 3))
        small = Image.fromarray(np.clip(grid, 0, 255).astype(np.uint8))
        img = np.asarray(small.resize((h, h), Image.Resampling.BICUBIC))
    lo, hi = BACKGROUND_RANGE
    return np.clip(img, lo, hi).astype(np.uint8), int(kind)


def _sample_layout(rng: np.random.Generator, count: int) -> list[ShapeObject]:
    """One large main object and count - 1 small distractors in random painter's order, fully inside."""
    main = int(rng.integers(count))
    objects = []
    for k, u in enumerate(rng.random((count, 9)).tolist()):  # one block of uniforms: fewer rng calls
        lo, hi = MAIN_SIZE if k == main else DISTRACTOR_SIZE
        size = lo + u[0] * (hi - lo)
        objects.append(
            ShapeObject(
                shape=int(u[1] * len(SHAPES)),
                colour=int(u[2] * len(COLOURS)),
                size=size,
                x=size / 2 + u[3] * (1 - size),  # the whole object stays inside the image
                y=size / 2 + u[4] * (1 - size),
                angle=u[5] * 2 * math.pi,
                jitter=tuple(int(v * (2 * JITTER + 1)) - JITTER for v in u[6:9]),
            )
        )
    return objects


def sample_scene(rng: np.random.Generator, count: int, image_size: int) -> tuple[list[ShapeObject], Scene]:
    """Draw layouts of `count` objects until every object is at least MIN_VISIBLE visible, then render."""
    for _ in range(_MAX_TRIES):
        objects = _sample_layout(rng, count)
        drawn = _draw_instances(objects, image_size)
        if (drawn.shown >= MIN_VISIBLE * drawn.areas).all() and (drawn.areas > 0).all():
            background, kind = _background(rng, image_size)
            scene = _compose(objects, drawn, background)
            scene.background = kind
            return objects, scene
    raise RuntimeError(f"no layout of {count} objects at {image_size} px within {_MAX_TRIES} tries")


# ---------------------------------------------------------------------------------------------- generation


class _Chunk(NamedTuple):
    seed: int
    index: int  # chunk number: its images are index * _CHUNK ... + n
    n: int
    image_size: int
    caption_probs: np.ndarray
    min_objects: int
    max_objects: int


def _generate_chunk(chunk: _Chunk) -> Split:
    rng = np.random.default_rng([chunk.seed, chunk.index])
    out = _empty_split(chunk.n, chunk.image_size)
    for i in range(chunk.n):
        count = int(rng.integers(chunk.min_objects, chunk.max_objects + 1))
        objects, scene = sample_scene(rng, count, chunk.image_size)
        out.images[i], out.masks[i], out.labels[i] = scene.image, scene.mask, scene.label
        out.counts[i], out.positions[i] = count, scene.position
        out.backgrounds[i], out.sizes[i] = scene.background, objects[scene.labelled].size
        described = [
            CaptionObject(COLOUR_NAMES[o.colour], SHAPES[o.shape], o.large, o.x, o.y) for o in objects
        ]
        out.captions[i] = sample_caption(described, scene.labelled, chunk.caption_probs, rng)
    return out


def _empty_split(n: int, image_size: int) -> Split:
    return Split(
        images=np.empty((n, image_size, image_size, 3), np.uint8),
        labels=np.empty(n, np.int64),
        captions=[""] * n,
        masks=np.empty((n, image_size, image_size), np.uint8),
        counts=np.empty(n, np.int64),
        positions=np.empty((n, 2), np.float32),
        backgrounds=np.empty(n, np.int64),
        sizes=np.empty(n, np.float32),
    )


def _pool_context() -> multiprocessing.context.BaseContext:
    """fork where available: spawned workers re-import the caller's main module (stage scripts import
    torch: seconds per worker). Forked workers only run numpy and PIL, never torch/OpenMP or BLAS."""
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def _check_args(n: int, image_size: int, seed: int, min_objects: int, max_objects: int, workers: int) -> None:
    checks = [
        (n >= 0, f"n: must be >= 0 (got {n})"),
        (16 <= image_size <= 512, f"image_size: must be in [16, 512] pixels (got {image_size})"),
        (seed >= 0, f"seed: must be >= 0 (got {seed})"),
        (1 <= min_objects <= max_objects, f"min_objects: must be in [1, max_objects] (got {min_objects})"),
        (
            max_objects <= MAX_OBJECTS,
            f"max_objects: must be in [min_objects, {MAX_OBJECTS}] (got {max_objects})",
        ),
        (workers >= 1, f"workers: must be >= 1 (got {workers})"),
    ]
    for ok, message in checks:
        if not ok:
            raise ClipprobeError(message)


def generate_shapes(
    n: int,
    image_size: int,
    seed: int,
    caption_mix: Mapping[str, float],
    min_objects: int = 1,
    max_objects: int = 3,
    workers: int = 2,
    progress: bool = False,
) -> Split:
    """Generate `n` images with labels, captions, masks, counts and positions.

    Returns a Split: images (N, H, W, 3) uint8, labels (N,) int64, captions list[str], masks (N, H, W) uint8,
    counts (N,) int64, positions (N, 2) float32. Identical for any `workers` (seeded per chunk of images).
    """
    _check_args(n, image_size, seed, min_objects, max_objects, workers)
    probs = validate_caption_mix(caption_mix)
    chunks = [
        _Chunk(seed, i, min(_CHUNK, n - start), image_size, probs, min_objects, max_objects)
        for i, start in enumerate(range(0, n, _CHUNK))
    ]
    out = _empty_split(n, image_size)
    bar = progress_bar(total=n, desc=f"shapes {image_size}px", enabled=progress)
    with ExitStack() as stack:
        mapper = map
        if workers > 1 and len(chunks) > 1:
            mapper = stack.enter_context(_pool_context().Pool(min(workers, len(chunks)))).imap
        for chunk, part in zip(chunks, mapper(_generate_chunk, chunks), strict=True):
            rows = slice(chunk.index * _CHUNK, chunk.index * _CHUNK + chunk.n)
            for name in (
                "images",
                "labels",
                "captions",
                "masks",
                "counts",
                "positions",
                "backgrounds",
                "sizes",
            ):
                getattr(out, name)[rows] = getattr(part, name)
            bar.update(chunk.n)
    bar.close()
    return out


def shapes_meta(image_size: int) -> DatasetMeta:
    return DatasetMeta(
        name="shapes",
        class_names=list(CLASS_NAMES),
        image_size=(image_size, image_size),
        splits={},
        source="generated",
        mask_class_names=list(MASK_CLASS_NAMES),
    )


def split_seed(seed: int, split: str) -> int:
    """An independent seed per split, so splits never share a random stream (nor, in practice, an image)."""
    return int(np.random.SeedSequence([seed, SPLITS.index(split)]).generate_state(1)[0])


def generate_shapes_dataset(
    root: str | Path,
    image_size: int,
    sizes: Mapping[str, int],
    seed: int,
    caption_mix: Mapping[str, float],
    min_objects: int = 1,
    max_objects: int = 3,
    workers: int = 2,
) -> Path:
    """Generate the pretrain/train/val/test splits (`sizes[split]` images each); save them in root/shapes.

    `pretrain` keeps images and captions only: the CLIP pretraining must never see labels.
    """
    if sorted(sizes) != sorted(SPLITS) or min(sizes.values()) < 1:
        raise ClipprobeError(f"sizes: needs >= 1 image for each of {', '.join(SPLITS)} (got {dict(sizes)})")
    splits = {}
    for name in SPLITS:
        split = generate_shapes(
            sizes[name],
            image_size,
            split_seed(seed, name),
            caption_mix,
            min_objects,
            max_objects,
            workers,
            progress=True,
        )
        splits[name] = Split(images=split.images, captions=split.captions) if name == "pretrain" else split
    meta = shapes_meta(image_size)
    meta.extra = {
        "seed": seed,
        "min_objects": min_objects,
        "max_objects": max_objects,
        "caption_mix": dict(caption_mix),
    }
    return save_dataset(root, meta, splits)
