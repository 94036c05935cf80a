"""Datasets, readers and encoders.

Readers: N-MNIST binary files, SHD/SSC HDF5, tonic-style event arrays, FSDD WAV audio, Fashion-MNIST
IDX files, and the Randman generator. Encoders: latency and rate codes for images, a cochlea-like
filterbank for audio. ``Loader`` batches any dataset into SpikeTensors, shuffled and prefetched.
"""

from .audio import Cochlea, encode_audio_files, fsdd_files, fsdd_to_shd, load_fsdd, read_wav
from .encode import latency_encode, rate_encode
from .events import CAMERA_EVENT_DTYPE, EventDataset, events_to_units, from_tonic
from .fashion_mnist import load_fashion_mnist, load_idx
from .loader import DenseDataset, ImageDataset, Loader
from .nmnist import load_nmnist, read_nmnist_events, write_nmnist_events
from .randman import Randman, make_randman, train_test_split
from .shd import load_shd, read_shd, write_shd

__all__ = ["make_randman", "Randman", "train_test_split", "load_fashion_mnist", "load_idx",
           "latency_encode", "rate_encode", "CAMERA_EVENT_DTYPE", "EventDataset", "events_to_units",
           "from_tonic", "load_nmnist", "read_nmnist_events", "write_nmnist_events", "load_shd",
           "read_shd", "write_shd", "Cochlea", "read_wav", "encode_audio_files", "fsdd_files",
           "load_fsdd", "fsdd_to_shd", "DenseDataset", "ImageDataset", "Loader"]
