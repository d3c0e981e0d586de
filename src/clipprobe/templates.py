"""Named prompt-template sets for zero-shot classifiers; `{}` is where the class name goes."""

from __future__ import annotations

from clipprobe.errors import ClipprobeError

TEMPLATES: dict[str, list[str]] = {
    "single": ["a photo of a {}."],  # the CLIP repo's single prompt, with cleaned class names
    # the seed report's exact prompt: f"a photo of a {c}" with no full stop, filled with the data set's raw
    # class names (torchvision's CIFAR-100 `aquarium_fish`): see RAW_NAMES
    "report": ["a photo of a {}"],
    # the 18 CIFAR-10/100 templates of the CLIP paper (openai/CLIP data/prompts.md)
    "cifar": [
        "a photo of a {}.",
        "a blurry photo of a {}.",
        "a black and white photo of a {}.",
        "a low contrast photo of a {}.",
        "a high contrast photo of a {}.",
        "a bad photo of a {}.",
        "a good photo of a {}.",
        "a photo of a small {}.",
        "a photo of a big {}.",
        "a photo of the {}.",
        "a blurry photo of the {}.",
        "a black and white photo of the {}.",
        "a low contrast photo of the {}.",
        "a high contrast photo of the {}.",
        "a bad photo of the {}.",
        "a good photo of the {}.",
        "a photo of the small {}.",
        "a photo of the big {}.",
    ],
    # shapes world: phrased like its captions ("a photo of a red circle.", "a large red circle next to ...")
    "shapes": [
        "a photo of a {}.",
        "a {}.",
        "a picture of a {}.",
        "an image of a {}.",
        "a drawing of a {}.",
        "a large {}.",
        "a photo of a large {}.",
        "a {} on a background.",
    ],
}


RAW_NAMES = ("report",)  # template sets filled with the raw class names, not the cleaned ones


def get_templates(name: str) -> list[str]:
    """A copy of the named template set, so callers cannot edit the registry."""
    if name not in TEMPLATES:
        raise ClipprobeError(f"templates: unknown set {name!r}; choose one of {sorted(TEMPLATES)}")
    return list(TEMPLATES[name])
