"""numpy's side of `make bench-dense`: EASE (the primal inverse, and the dual Woodbury form when
the catalogue has more items than users) and PureSVD (randomized, the same rank, oversampling and
power iterations as pg_recsys, QR between steps) on the rows of a CSV (user,item), timed fit
only. Prints one JSON object."""
import json
import sys
import time

import numpy as np
from scipy.sparse import csr_matrix


def load(path):
    rows = np.loadtxt(path, delimiter=",", dtype=np.int64, ndmin=2)
    users, u = np.unique(rows[:, 0], return_inverse=True)
    items, i = np.unique(rows[:, 1], return_inverse=True)
    return csr_matrix((np.ones(len(u), dtype=np.float64), (u, i)), shape=(len(users), len(items)))


def ease_primal(x, lam):
    g = (x.T @ x).toarray()
    g[np.diag_indices_from(g)] += lam
    p = np.linalg.inv(g)
    b = p / -np.diag(p)
    b[np.diag_indices_from(b)] = 0.0
    return b


def ease_dual(x, lam):
    # P = (X'X + lam I)^-1 = (I - X' (lam I + X X')^-1 X) / lam: a users x users inverse.
    xd = x.toarray()
    k = xd @ xd.T
    k[np.diag_indices_from(k)] += lam
    p = (np.eye(x.shape[1]) - xd.T @ np.linalg.solve(k, xd)) / lam
    b = p / -np.diag(p)
    b[np.diag_indices_from(b)] = 0.0
    return b


def pure_svd(x, k, oversample=10, power=4, seed=42):
    l = min(k + oversample, *x.shape)
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(x @ rng.standard_normal((x.shape[1], l)))
    for _ in range(power):
        z, _ = np.linalg.qr(x.T @ q)
        q, _ = np.linalg.qr(x @ z)
    b = (x.T @ q).T
    _, s, vt = np.linalg.svd(b, full_matrices=False)
    return s[:k], vt[:k].T


def timed(f, *a):
    t = time.perf_counter()
    f(*a)
    return time.perf_counter() - t


if __name__ == "__main__":
    x = load(sys.argv[1])
    lam, k = float(sys.argv[2]), int(sys.argv[3])
    out = {"users": x.shape[0], "items": x.shape[1], "rows": int(x.nnz), "svd": timed(pure_svd, x, k)}
    if x.shape[1] <= 16000:
        out["ease_primal"] = timed(ease_primal, x, lam)
    if x.shape[1] > x.shape[0]:
        out["ease_dual"] = timed(ease_dual, x, lam)
    print(json.dumps(out))
