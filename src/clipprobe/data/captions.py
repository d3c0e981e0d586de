"""Captions for the shapes world: free-form descriptions, class-like prompts and count-only prompts.

The caption mix is an experimental knob (shared/anchors/shapes-prototype.md): class-like captions
("a photo of a red circle.") teach the zero-shot prompt, count-only captions ("a photo of two shapes.") teach
zero-shot counting, and free captions carry everything else (counts, colours, sizes, relations). Only the
class-like share ever equals the bare class phrase; free captions always say something more.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np

from clipprobe.errors import ClipprobeError

CAPTION_KINDS = ("free", "class_like", "count_only")
DEFAULT_CAPTION_MIX = {"free": 0.6, "class_like": 0.3, "count_only": 0.1}
NUMBER_WORDS = ("zero", "one", "two", "three", "four")  # indexed by count, up to shapes.MAX_OBJECTS

# share of free captions that leave out small/large (only when they still say more than the class)
_DROP_SIZES_P = 0.3
_NEXT_TO_P = 0.25  # share of side-by-side relations said as "next to" instead of left/right
_PLURALS = {"cross": "crosses"}  # every other shape takes a plain "s"

# (template, style): "list" names the objects, "count" also says how many, "relation" relates two of them.
_FREE_TEMPLATES = (
    ("{objects}.", "list"),
    ("a photo of {objects}.", "list"),
    ("an image of {objects}.", "list"),
    ("a picture with {objects}.", "list"),
    ("a drawing of {objects}.", "list"),
    ("{count}: {objects}.", "count"),
    ("there {verb} {count}: {objects}.", "count"),
    ("a photo of {count}, {objects}.", "count"),
    ("{objects}.", "relation"),
    ("a picture of {objects}.", "relation"),
)


class CaptionObject(NamedTuple):
    """What a caption may say about one object."""

    colour: str
    shape: str
    large: bool  # the main object ("large") or a distractor ("small")
    x: float  # centre in [0, 1], left to right
    y: float  # centre in [0, 1], top to bottom


def validate_caption_mix(mix: Mapping[str, float]) -> np.ndarray:
    """Probabilities in CAPTION_KINDS order; missing kinds count as 0, unknown kinds are an error."""
    unknown = sorted(set(mix) - set(CAPTION_KINDS))
    if unknown:
        raise ClipprobeError(
            f"caption_mix: allowed keys are {', '.join(CAPTION_KINDS)} (got {', '.join(unknown)})"
        )
    probs = np.array([float(mix.get(kind, 0.0)) for kind in CAPTION_KINDS])
    if (probs < 0).any() or abs(probs.sum() - 1.0) > 1e-6:
        raise ClipprobeError(f"caption_mix: shares must be >= 0 and sum to 1 (got {dict(mix)})")
    return probs / probs.sum()


def sample_caption(
    objects: Sequence[CaptionObject], labelled: int, probs: np.ndarray, rng: np.random.Generator
) -> str:
    """One caption of a kind drawn with `probs` (from validate_caption_mix); `labelled` indexes `objects`."""
    kind = CAPTION_KINDS[int(np.searchsorted(np.cumsum(probs)[:-1], rng.random(), side="right"))]
    if kind == "class_like":
        return class_caption(objects[labelled].colour, objects[labelled].shape)
    if kind == "count_only":
        return count_caption(len(objects))
    return free_caption(objects, rng)


def class_caption(colour: str, shape: str) -> str:
    """The literal single zero-shot prompt (article kept as 'a' so it matches "a photo of a {}.")."""
    return f"a photo of a {colour} {shape}."


def count_caption(count: int) -> str:
    return f"a photo of {_count_phrase(count)}."


def free_caption(objects: Sequence[CaptionObject], rng: np.random.Generator) -> str:
    """A free-form caption: shuffled objects, identical ones grouped, varied templates and joiners."""
    template, style = _FREE_TEMPLATES[rng.integers(len(_FREE_TEMPLATES))]
    shuffled = [objects[i] for i in rng.permutation(len(objects))]
    # a single object named by a plain list template must keep its size, or it would be the bare class phrase
    says_more = len(objects) > 1 or style != "list"
    sizes = not (says_more and rng.random() < _DROP_SIZES_P)
    if style == "relation":
        body = _relation_body(shuffled, sizes, rng)
    else:
        body = _join(_grouped_phrases(shuffled, sizes), rng)
    verb = "is" if len(objects) == 1 else "are"
    return template.format(objects=body, count=_count_phrase(len(objects)), verb=verb)


def _count_phrase(count: int) -> str:
    return f"{NUMBER_WORDS[count]} shape" + ("" if count == 1 else "s")


def _phrase(obj: CaptionObject, sizes: bool, count: int = 1) -> str:
    """'a small red circle', 'an orange star', 'two large blue crosses'."""
    shape = obj.shape if count == 1 else _PLURALS.get(obj.shape, obj.shape + "s")
    words = " ".join(([("large" if obj.large else "small")] if sizes else []) + [obj.colour, shape])
    if count > 1:
        return f"{NUMBER_WORDS[count]} {words}"
    return ("an " if words[0] in "aeiou" else "a ") + words


def _grouped_phrases(objects: Sequence[CaptionObject], sizes: bool) -> list[str]:
    """Identical objects (same colour, shape and, when said, size) become one phrase, in first-seen order."""
    groups: dict[tuple, list[CaptionObject]] = {}
    for obj in objects:
        groups.setdefault((obj.colour, obj.shape, obj.large if sizes else None), []).append(obj)
    return [_phrase(members[0], sizes, len(members)) for members in groups.values()]


def _join(items: Sequence[str], rng: np.random.Generator) -> str:
    if len(items) == 1:
        return items[0]
    style = rng.integers(4)
    if style == 0:
        return ", ".join(items[:-1]) + " and " + items[-1]
    if style == 1:
        rest = items[1:]
        return items[0] + " with " + (", ".join(rest[:-1]) + " and " + rest[-1] if len(rest) > 1 else rest[0])
    if style == 2:
        return ", ".join(items)
    return " plus ".join(items)


def _relation_body(objects: Sequence[CaptionObject], sizes: bool, rng: np.random.Generator) -> str:
    """'a red circle above a small blue star' (+ the other objects), or where a lone object sits."""
    first = _phrase(objects[0], sizes)
    if len(objects) == 1:
        return f"{first} {_location(objects[0])}"
    related = f"{first} {_relation(objects[0], objects[1], rng)} {_phrase(objects[1], sizes)}"
    return _join([related, *_grouped_phrases(objects[2:], sizes)], rng)


def _relation(a: CaptionObject, b: CaptionObject, rng: np.random.Generator) -> str:
    """Where a is relative to b, from their centres (y grows downwards)."""
    dx, dy = b.x - a.x, b.y - a.y
    if abs(dx) >= abs(dy):
        if rng.random() < _NEXT_TO_P:
            return "next to"
        return "to the left of" if dx > 0 else "to the right of"
    return "above" if dy > 0 else "below"


def _location(obj: CaptionObject) -> str:
    """'in the top left', 'on the right', 'at the bottom', 'in the centre' (thirds-ish of the image)."""
    col = "left" if obj.x < 0.4 else "right" if obj.x > 0.6 else ""
    row = "top" if obj.y < 0.4 else "bottom" if obj.y > 0.6 else ""
    if row and col:
        return f"in the {row} {col}"
    if row:
        return f"at the {row}"
    if col:
        return f"on the {col}"
    return "in the centre"
