#!/usr/bin/env python3
"""Checks styleforge's 2-D feature maps against scikit-learn.

t-SNE: sklearn.manifold.trustworthiness of our embedding and of scikit-learn's own exact TSNE of
the same features (same perplexity, PCA init, learning rate "auto", 1000 iterations) must agree
within --tol (neighbourhood preservation is compared, not coordinates, which depend on the
optimiser's path). PCA: our coordinates must equal sklearn.decomposition.PCA's within --pca-atol,
each axis up to its sign.

Input files are the CSVs `styleforge embed` writes: features (`--save-features`: id, source,
class, f0, f1, ...) and maps (id, source, class, x, y).

Usage: tsne_check.py --features features.csv [--tsne embed-tsne.csv] [--pca embed-pca.csv]
                     [--perplexity 30] [--tol 0.02] [--neighbors 5,10]
Exit status 0 when every check passes, 1 otherwise (one line per check on stdout).
"""
import argparse
import csv
import sys

import numpy as np


def read_matrix(path, prefix):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    cols = [i for i, name in enumerate(header) if name.startswith(prefix)] if prefix else None
    return np.array([[float(r[i]) for i in cols] for r in body], dtype=np.float64)


def read_map(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return np.array([[float(r["x"]), float(r["y"])] for r in rows], dtype=np.float64)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--features", required=True)
    ap.add_argument("--tsne")
    ap.add_argument("--pca")
    ap.add_argument("--perplexity", type=float, default=30)
    ap.add_argument("--tol", type=float, default=0.02, help="largest |T_ours - T_sklearn|")
    ap.add_argument("--pca-atol", type=float, default=1e-5)
    ap.add_argument("--neighbors", default="5,10", help="trustworthiness n_neighbors values")
    ap.add_argument("--seed", type=int, default=0, help="random_state of sklearn's TSNE")
    a = ap.parse_args()

    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE, trustworthiness

    X = read_matrix(a.features, "f")
    ok = True
    print(f"features: {X.shape[0]} x {X.shape[1]} from {a.features}")
    if a.pca:
        ours = read_map(a.pca)
        ref = PCA(n_components=2, svd_solver="full").fit_transform(X)
        worst = 0.0
        for k in range(2):
            worst = max(worst, min(np.abs(ours[:, k] - ref[:, k]).max(), np.abs(ours[:, k] + ref[:, k]).max()))
        good = worst <= a.pca_atol
        ok &= good
        print(f"{'ok' if good else 'FAIL'}: PCA max |difference| up to sign {worst:.3g} (limit {a.pca_atol:g})")
    if a.tsne:
        ours = read_map(a.tsne)
        if ours.shape[0] != X.shape[0]:
            print(f"FAIL: {a.tsne} has {ours.shape[0]} points, the features {X.shape[0]}")
            return 1
        ref = TSNE(n_components=2, perplexity=a.perplexity, method="exact", init="pca", learning_rate="auto",
                   max_iter=1000, random_state=a.seed).fit_transform(X)
        for k in (int(v) for v in a.neighbors.split(",")):
            t_ours = trustworthiness(X, ours, n_neighbors=k)
            t_ref = trustworthiness(X, ref, n_neighbors=k)
            good = abs(t_ours - t_ref) <= a.tol
            ok &= good
            print(f"{'ok' if good else 'FAIL'}: t-SNE trustworthiness (n_neighbors={k}) ours {t_ours:.4f}, "
                  f"scikit-learn {t_ref:.4f}, difference {t_ours - t_ref:+.4f} (limit {a.tol:g})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
