"""The few-shot methods by name: one entry per method, in `readouts.FEWSHOT_METHODS`' order (which fixes
each method's random stream). A method class takes (prior, cfg: FewshotParams); a trained method has `init`,
`logits`, `penalty`, `optimizer` and `select` (`train.TrainedMethod`), a training-free one has `run`.
Adding a method is one entry here, its label in readouts.py, and its class."""

from __future__ import annotations

from clipprobe.probes.fewshot.closed import GaussianDiscriminant, TipAdapter
from clipprobe.probes.fewshot.methods import (
    Clap,
    LinearProbePP,
    ProLIP,
    RandomHead,
    RandomSwept,
    ZeroshotHead,
    ZeroshotSwept,
)

METHODS: dict[str, type] = {
    "random": RandomHead,
    "zeroshot": ZeroshotHead,
    "clap": Clap,
    "lpp": LinearProbePP,
    "tip": TipAdapter,
    "gda": GaussianDiscriminant,
    "prolip": ProLIP,
    "random_swept": RandomSwept,
    "zeroshot_swept": ZeroshotSwept,
}
