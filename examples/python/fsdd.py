"""Free Spoken Digit Dataset: WAV audio through a cochlea-like filterbank into spikes, saved as
SHD-layout files, then trained on (takes 0-4 of each speaker are the test set).

    python examples/python/fsdd.py --root DATA/fsdd [--channels 64] [--epochs 10]

DATA/fsdd is the Free Spoken Digit Dataset, the folder that holds its recordings/ (not part of
the repository; see docs/data.md).
"""

import argparse
import os
import tempfile

import saltatory as sal
from saltatory import data
from saltatory.train import evaluate, train_epoch

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--root", required=True, help="FSDD folder (with recordings/)")
parser.add_argument("--channels", type=int, default=64)
parser.add_argument("--epochs", type=int, default=10)
parser.add_argument("--out", default=None, help="where the SHD-layout files go (default: a temp dir)")
args = parser.parse_args()

out = args.out or tempfile.mkdtemp(prefix="fsdd-spikes-")
cochlea = data.Cochlea(args.channels)  # ERB-spaced gammatone-shaped filters, integrate-and-fire
paths = data.fsdd_to_shd(args.root, out, cochlea)
print(f"wrote {paths['train']} and {paths['test']} ({os.path.getsize(paths['train']) >> 10} KiB)")
train = data.load_shd(paths["train"], n_steps=100, bin_width=1e-2)
test = data.load_shd(paths["test"], n_steps=100, bin_width=1e-2, capacity=train.capacity)

net = sal.Sequential(sal.LIF(args.channels, 256, capacity=50, seed=0), sal.Readout(256, 10, seed=1))
opt = sal.optim.Adam(net.parameters(), lr=5e-3)
loader = data.Loader(train, 64, shuffle=True, seed=0)
trace = {"loss": [], "activity": []}
for epoch in range(args.epochs):
    record = train_epoch(net, opt, loader, epoch, trace)
    print(f"epoch {epoch + 1}: loss {record['loss']:.2f}, test accuracy "
          f"{evaluate(net, data.Loader(test, 100)):.3f}, {record['samples_per_s']:.0f} samples/s")
