"""Fashion-MNIST, latency-coded, with the training loop written out: the whole Python API in one page.

    python examples/python/fashion_mnist.py [--epochs 2] [--limit 20000]

Needs the Debian package dataset-fashion-mnist (or --root pointing at the IDX .gz files).
"""

import argparse
import time

import saltatory as sal
from saltatory import data

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--root", default=data.fashion_mnist.DEFAULT_ROOT)
parser.add_argument("--epochs", type=int, default=2)
parser.add_argument("--limit", type=int, default=20000, help="training images used")
args = parser.parse_args()

images, labels = data.load_fashion_mnist(args.root, "train")
test_images, test_labels = data.load_fashion_mnist(args.root, "test")
train = data.ImageDataset(images[: args.limit], labels[: args.limit], n_steps=50)  # latency code
test = data.ImageDataset(test_images[:5000], test_labels[:5000], n_steps=50, capacity=train.capacity)

# 784 inputs -> 256 LIF neurons listing at most 50 spikes per step -> 10 leaky readout neurons
net = sal.Sequential(sal.LIF(784, 256, capacity=50, seed=0), sal.Readout(256, 10, seed=1))
opt = sal.optim.Adam(net.parameters(), lr=5e-3)

for epoch in range(args.epochs):
    start, seen = time.perf_counter(), 0
    for spikes, y in data.Loader(train, 64, shuffle=True, seed=0).epoch(epoch):
        membrane = net(spikes)  # readout membrane [T, B, 10]
        loss, grad = sal.losses.membrane_cross_entropy(membrane, y)
        net.zero_grad()
        net.backward(grad)  # sparse BPTT: gathers and scatters over the spike lists
        opt.step()
        seen += len(y)
    rate = seen / (time.perf_counter() - start)
    correct = sum(int((sal.losses.predict(net(s)) == y).sum()) for s, y in data.Loader(test, 256))
    print(f"epoch {epoch + 1}: loss {loss:.3f}, test accuracy {correct / len(test):.4f}, "
          f"{rate:.0f} samples/s, hidden activity {net.spikes[0].activity():.3f}")
