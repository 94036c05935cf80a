"""N-MNIST event-camera digits: read the original binary files, bin the events, train.

    python examples/python/nmnist.py --root DATA/nmnist-small [--epochs 5]

--root holds <n>.bs2/.bin files with train*.txt/test*.txt lists, or the official Train/ and
Test/ folder trees; DATA/nmnist-small is such a subset of N-MNIST (not part of the repository;
see docs/data.md). Events are binned into 100 steps of 3 ms over 2312 inputs (34 x 34 x 2).
"""

import argparse

import saltatory as sal
from saltatory import data
from saltatory.train import evaluate, train_epoch

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--root", required=True)
parser.add_argument("--epochs", type=int, default=5)
parser.add_argument("--limit", type=int, default=None, help="training samples used")
args = parser.parse_args()

train = data.load_nmnist(args.root, "train", n_steps=100, bin_width=3e-3, limit=args.limit)
test = data.load_nmnist(args.root, "test", n_steps=100, bin_width=3e-3, capacity=train.capacity)
print(f"{len(train)} train / {len(test)} test recordings, input capacity {train.capacity}")

net = sal.Sequential(sal.LIF(train.n_units, 256, capacity=50, seed=0), sal.Readout(256, 10, seed=1))
opt = sal.optim.Adam(net.parameters(), lr=5e-3)
loader = data.Loader(train, 64, shuffle=True, seed=0)
trace = {"loss": [], "activity": []}
for epoch in range(args.epochs):
    record = train_epoch(net, opt, loader, epoch, trace)
    print(f"epoch {epoch + 1}: loss {record['loss']:.2f}, train accuracy {record['train_acc']:.3f}, "
          f"test accuracy {evaluate(net, data.Loader(test, 100)):.3f}, "
          f"{record['samples_per_s']:.0f} samples/s, late or dropped events {record['dropped_input']}")
