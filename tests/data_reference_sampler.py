#!/usr/bin/python3
"""Prints the index stream of the reference InfiniteSampler semantics (numpy RandomState) for
comparison with sharding::InfiniteSampler.

usage: data_reference_sampler.py N RANK WORLD SEED COUNT [WINDOW]
"""
import sys

import numpy as np


def stream(n, rank, world, seed, window_size):
    order = np.arange(n)
    rnd = np.random.RandomState(seed)
    rnd.shuffle(order)
    window = int(np.rint(order.size * window_size))
    idx = 0
    while True:
        i = idx % order.size
        if idx % world == rank:
            yield order[i]
        if window >= 2:
            j = (i - rnd.randint(window)) % order.size
            order[i], order[j] = order[j], order[i]
        idx += 1


def main():
    n, rank, world, seed, count = (int(x) for x in sys.argv[1:6])
    window = float(sys.argv[6]) if len(sys.argv) > 6 else 0.5
    it = stream(n, rank, world, seed, window)
    print(" ".join(str(next(it)) for _ in range(count)))


if __name__ == "__main__":
    main()
