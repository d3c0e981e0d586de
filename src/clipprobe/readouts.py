"""The names of every experiment's readouts: the keys each per-seed stage writes and the summary and the
report read. Torch-free, so the summary and report stages import it without the experiments' code."""

PROBE = ("zeroshot_report", "zeroshot_single", "zeroshot_ensemble", "linear_probe")
COUNTING = ("zeroshot", "pooled_probe", "prepool_probe", "majority")
VQVAE_MODELS = (
    "plain",
    "clip",
    "random_tower",
    "pooled",
)  # VQ-VAEs reading pixels, the map, ..., the embedding
VQVAE_FLOORS = ("thumbnail", "mean_colour")  # untrained predictors the VQ-VAEs are read against

# The few-shot methods (classes: probes.fewshot.registry.METHODS; labels: report.fewshot.LABELS). The order
# fixes each method's random stream: append, never reorder.
FEWSHOT_METHODS = (
    "random",
    "zeroshot",
    "clap",
    "lpp",
    "tip",
    "gda",
    "prolip",
    "random_swept",
    "zeroshot_swept",
)
