"""libFuzzer (atheris) target for the file readers: N-MNIST, SHD (HDF5) and checkpoints.

    python tests/fuzz/fuzz_readers.py {nmnist,shd,checkpoint} CORPUS... [-max_total_time=60]

Each input is written to a temporary file and read. A reader may refuse a file only with
ValueError (CheckpointError is one); any other exception, a crash or a hang is a finding.
"""

import os
import sys
import tempfile

import atheris

with atheris.instrument_imports():
    import saltatory
    from saltatory.data import read_nmnist_events, read_shd

READERS = {"nmnist": read_nmnist_events, "shd": read_shd, "checkpoint": saltatory.read_checkpoint}
TARGET = sys.argv.pop(1) if len(sys.argv) > 1 and sys.argv[1] in READERS else None
FOLDER = tempfile.mkdtemp(prefix="saltatory-fuzz-")
PATH = os.path.join(FOLDER, "input")


def one_input(data: bytes) -> None:
    with open(PATH, "wb") as f:
        f.write(data)
    try:
        READERS[TARGET](PATH)
    except ValueError:
        pass


if __name__ == "__main__":
    if TARGET is None:
        sys.exit(f"usage: {sys.argv[0]} {{{','.join(READERS)}}} CORPUS... [libFuzzer options]")
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
