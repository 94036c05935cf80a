"""Randman (Zenke & Vogels 2021): spike-timing classes on random manifolds, no files needed.
Trains the sparse network and the dense baseline on the same data and seed, and compares them.

    python examples/python/randman.py [--epochs 3]
"""

import argparse

import saltatory as sal
from saltatory import data
from saltatory.train import evaluate, train_epoch

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--epochs", type=int, default=3)
args = parser.parse_args()

spikes, labels = data.make_randman(n_classes=10, n_units=100, n_steps=50, n_samples_per_class=200, seed=0)
train_x, train_y, test_x, test_y = data.train_test_split(spikes, labels, 0.2, seed=0)
train, test = data.DenseDataset(train_x, train_y), data.DenseDataset(test_x, test_y)

for mode in ("sparse", "dense"):
    net = sal.Sequential(sal.LIF(100, 256, capacity=50, seed=0), sal.Readout(256, 10, seed=1), mode=mode)
    opt = sal.optim.Adam(net.parameters(), lr=5e-3)
    loader = data.Loader(train, 64, shuffle=True, seed=0)
    trace = {"loss": [], "activity": []}
    records = [train_epoch(net, opt, loader, epoch, trace, progress=False) for epoch in range(args.epochs)]
    print(f"{mode}: test accuracy {evaluate(net, data.Loader(test, 100)):.3f}, "
          f"{sum(r['samples_per_s'] for r in records) / len(records):.0f} samples/s")
