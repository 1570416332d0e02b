"""Dataset readers (CIFAR-10, MNIST idx, image folders, built-in shapes) and `load(--data spec)`."""

from .base import Dataset, Split
from .registry import default_name, load

__all__ = ["Dataset", "Split", "load", "default_name"]
