"""clipprobe: measure what frozen CLIP features know."""

__version__ = "0.1.0"
