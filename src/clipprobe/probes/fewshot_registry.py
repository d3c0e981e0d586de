"""The few-shot methods: one entry per method, its report label and the class that implements it.

Torch-free, so params.py validates `fewshot.inits` and the report labels methods without importing the
methods. A method class takes (prior, cfg: FewshotParams); a trained method has `init`, `logits`, `penalty`,
`optimizer` and `select` (see `fewshot_train.TrainedMethod`), a training-free one has `run`. Adding a method
is one entry here plus its class. The order fixes each method's random stream: append, never reorder.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class MethodInfo:
    label: str  # how figures and tables name it
    implementation: str  # "<module in clipprobe.probes>:<class>", imported when the method runs


METHODS: dict[str, MethodInfo] = {
    "random": MethodInfo("random init (report's baseline)", "fewshot_methods:RandomHead"),
    "zeroshot": MethodInfo("zero-shot init (report's proposal)", "fewshot_methods:ZeroshotHead"),
    "clap": MethodInfo("CLAP", "fewshot_methods:Clap"),
    "lpp": MethodInfo("LP++", "fewshot_methods:LinearProbePP"),
    "tip": MethodInfo("Tip-Adapter", "fewshot_closed:TipAdapter"),
    "gda": MethodInfo("GDA", "fewshot_closed:GaussianDiscriminant"),
    "prolip": MethodInfo("ProLIP", "fewshot_methods:ProLIP"),
}


def method_class(name: str) -> Any:
    """The class implementing method `name`."""
    module, cls = METHODS[name].implementation.split(":")
    return getattr(importlib.import_module(f"clipprobe.probes.{module}"), cls)
