"""Numbers that come from elsewhere: always shown as labelled references, never mixed with measured ones."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Reference:
    value: float  # accuracy in [0, 1]
    source: str  # short label shown beside the number
    setting: str  # dataset and model the number belongs to


CIFAR100_VITB32 = "CIFAR-100, ViT-B/32 (openai)"

# Keyed like the probe readouts of results/summary.json. Sources: shared anchors (fewshot-anchors.md, §0-§2).
# Each sits beside the readout of its own prompt convention; `source` says where it differs.
PROBE_REFERENCES: dict[str, list[Reference]] = {
    "zeroshot_report": [Reference(0.6168, "seed report (its prompt exactly)", CIFAR100_VITB32)],
    "zeroshot_single": [],
    "zeroshot_ensemble": [
        Reference(0.651, "CLIP paper, Table 11 (18 templates, cleaned names)", CIFAR100_VITB32),
        Reference(0.6453, "CLIP_benchmark (18 templates, raw names: `aquarium_fish`)", CIFAR100_VITB32),
    ],
    "linear_probe": [
        Reference(0.7992, "seed report (sklearn, C=0.316)", CIFAR100_VITB32),
        Reference(0.805, "CLIP paper, Table 10 (C swept)", CIFAR100_VITB32),
    ],
}

# Shared anchors, decoders-anchors.md §5: segmentation_models.pytorch's binary Pets example
# (border merged into the pet); shown only for the paper preset with data.pets.border: foreground.
PETS_REFERENCE = Reference(
    0.914,
    "FPN-ResNet34, ImageNet encoder, 256 px, 10 epochs (smp example)",
    "Oxford-IIIT Pet, pet IoU (test)",
)


def references_apply(dataset: str, arch: str, pretrained: str) -> bool:
    """Reference markers are drawn on a figure only when the run is the setting they were measured in."""
    return dataset == "cifar100" and arch == "ViT-B-32" and pretrained == "openai"
