"""The within-class modes the shapes world records for every image (torch-free constants, read by the
generator and, for the report's wording, by the summary)."""

BACKGROUNDS = ("noise", "gradient", "blotches")  # background kinds, by the index stored in backgrounds.npy
