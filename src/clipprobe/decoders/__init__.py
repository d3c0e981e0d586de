"""Decoders trained on frozen CLIP ResNet features: the VQ-VAE and the segmentation decoder."""
