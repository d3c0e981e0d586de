"""Datasets: the shapes world generator, CIFAR through torchvision, and the uniform on-disk store."""
