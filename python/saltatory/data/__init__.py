"""Datasets and encoders: Randman, Fashion-MNIST (Debian package), latency and rate coding."""

from .encode import latency_encode, rate_encode
from .fashion_mnist import load_fashion_mnist, load_idx
from .randman import Randman, make_randman, train_test_split

__all__ = ["make_randman", "Randman", "train_test_split", "load_fashion_mnist", "load_idx",
           "latency_encode", "rate_encode"]
