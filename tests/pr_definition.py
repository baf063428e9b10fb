#!/usr/bin/env python3
"""Improved precision and recall (Kynkaanniemi et al. 2019), written from the paper's definition
as an independent check of styleforge's pr metric. Reads two feature files (int64 rows, int64
columns, then float32 rows, little-endian) and a neighbourhood size; prints precision and recall.

For a set Phi and a point x: x is inside the manifold of Phi when ||x - phi|| <= NND_k(phi) for
some phi in Phi, NND_k(phi) being the distance from phi to its k-th nearest neighbour in Phi
(phi itself excluded). precision = share of generated points inside the manifold of the reals;
recall = share of real points inside the manifold of the generated ones.
Usage: pr_definition.py REAL.bin GEN.bin K
"""
import sys

import numpy as np


def load(path):
    with open(path, 'rb') as f:
        n, d = np.frombuffer(f.read(16), dtype='<i8')
        return np.frombuffer(f.read(), dtype='<f4').reshape(int(n), int(d)).astype(np.float64)


def inside_share(manifold, probes, k):
    radii = []
    for i, phi in enumerate(manifold):
        others = np.delete(manifold, i, axis=0)
        d = np.sqrt(((others - phi) ** 2).sum(axis=1))
        radii.append(np.sort(d)[k - 1])
    radii = np.array(radii)
    count = 0
    for x in probes:
        d = np.sqrt(((manifold - x) ** 2).sum(axis=1))
        count += bool(np.any(d <= radii))
    return count / len(probes)


def main():
    real, gen, k = load(sys.argv[1]), load(sys.argv[2]), int(sys.argv[3])
    print('%.12f %.12f' % (inside_share(real, gen, k), inside_share(gen, real, k)))


if __name__ == '__main__':
    main()
