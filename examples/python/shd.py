"""Spiking Heidelberg Digits (or any SHD-layout HDF5 file): a recurrent network on 700 channels.

    python examples/python/shd.py --train shd_train.h5 --test shd_test.h5 [--epochs 20]

The files come from https://zenkelab.org/datasets (not bundled). Events are binned into 100 steps
of 10 ms; capacity per list defaults to the largest list in the training file.
"""

import argparse

import saltatory as sal
from saltatory import data
from saltatory.train import evaluate, train_epoch

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--train", required=True)
parser.add_argument("--test", required=True)
parser.add_argument("--epochs", type=int, default=20)
args = parser.parse_args()

train = data.load_shd(args.train, n_steps=100, bin_width=1e-2)
test = data.load_shd(args.test, n_steps=100, bin_width=1e-2, capacity=train.capacity)
n_classes = int(max(train.labels.max(), test.labels.max())) + 1

net = sal.Sequential(sal.RecurrentLIF(train.n_units, 256, capacity=26, seed=0),
                     sal.Readout(256, n_classes, seed=1))
opt = sal.optim.Adam(net.parameters(), lr=2e-3)
schedule = sal.Theta2Schedule(net)  # the paper's: theta2 from -100 towards 0.9
loader = data.Loader(train, 64, shuffle=True, seed=0)
trace = {"loss": [], "activity": []}
for epoch in range(args.epochs):
    record = train_epoch(net, opt, loader, epoch, trace, schedule)
    print(f"epoch {epoch + 1}: loss {record['loss']:.2f}, test accuracy "
          f"{evaluate(net, data.Loader(test, 100)):.3f}, {record['samples_per_s']:.0f} samples/s")
