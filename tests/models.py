#!/usr/bin/env python3
"""The model file from Python (tests/client_models.sh): what a user does with export_model's
file and numpy, and factors trained by implicit written for import_model.

  models.py check FILE ROWS RECS        numpy's top 10 from FILE's factors == RECS
  models.py implicit ROWS FILE RECS     train implicit ALS on ROWS, write FILE, its top 10 to RECS
  models.py foldin FILE ITEMS RECS      numpy's fold-in of a new user with ITEMS == RECS

ROWS: user,item CSV; RECS: user,item,score CSV (each user's rows in rank order)."""
import csv
import json
import sys

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file


def read_rows(path):
    seen = {}
    with open(path) as f:
        for u, i in csv.reader(f):
            seen.setdefault(int(u), set()).add(int(i))
    return seen


def read_recs(path):
    recs = {}
    with open(path) as f:
        for u, i, s in csv.reader(f):
            recs.setdefault(int(u), []).append((int(i), float(s)))
    return recs


def top10(user_vector, item_ids, item_factors, seen):
    scores = item_factors @ user_vector
    order = sorted((i for i in range(len(item_ids)) if int(item_ids[i]) not in seen), key=lambda i: (-scores[i], item_ids[i]))
    return [(int(item_ids[i]), float(scores[i])) for i in order[:10]]


def same(name, want, got):
    for u in sorted(want):
        w, g = want[u], got.get(u, [])
        if [p[0] for p in w] != [p[0] for p in g] or any(abs(a[1] - b[1]) > 1e-4 * max(1.0, abs(a[1])) for a, b in zip(w, g)):
            sys.exit(f"FAIL: {name}: user {u}: numpy {w}\n  recommend {g}")


def check(path, rows, recs):
    with safe_open(path, framework="np") as f:
        meta = f.metadata()
        t = {k: f.get_tensor(k) for k in f.keys()}
    assert meta["format"] == "pg_recsys" and meta["algorithm"] == "als", meta
    params = json.loads(meta["params"])
    items, users = t["item_factors"], t["user_factors"]
    assert items.shape == (len(t["item_ids"]), params["factors"]) and users.shape == (len(t["user_ids"]), params["factors"]), (items.shape, users.shape)
    seen, got = read_rows(rows), read_recs(recs)
    row = {int(u): r for r, u in enumerate(t["user_ids"])}
    want = {u: top10(users[row[u]], t["item_ids"], items, seen[u]) for u in got}
    same("exported ALS", want, got)
    print(f"python: the exported ALS file ({len(t)} tensors, format {meta['format_version']}) gives numpy the same top 10 as recommend() for {len(want)} users")


def implicit_factors(rows, path, recs):
    from implicit.als import AlternatingLeastSquares
    from scipy.sparse import csr_matrix

    seen = read_rows(rows)
    users = sorted(seen)
    items = sorted({i for s in seen.values() for i in s})
    ui, ii = {u: r for r, u in enumerate(users)}, {i: c for c, i in enumerate(items)}
    r, c = zip(*[(ui[u], ii[i]) for u in users for i in seen[u]])
    m = AlternatingLeastSquares(factors=16, regularization=0.05, alpha=2.0, iterations=15, random_state=7)
    m.fit(csr_matrix((np.ones(len(r), dtype=np.float32), (r, c)), shape=(len(users), len(items))), show_progress=False)
    uf, itf = np.asarray(m.user_factors, dtype=np.float32), np.asarray(m.item_factors, dtype=np.float32)
    # Written in an order of our own (newest users first), as another system might.
    order = np.argsort(-np.array(users))
    # implicit's confidence for a binary row is alpha (2); pg_recsys folds in with 1 + alpha * w.
    meta = {"format": "pg_recsys", "format_version": "2", "algorithm": "als",
            "params": json.dumps({"factors": 16, "regularization": 0.05, "alpha": 1.0})}
    save_file({"item_ids": np.array(items, dtype=np.int64), "item_factors": itf,
               "user_ids": np.array(users, dtype=np.int64)[order], "user_factors": uf[order]}, path, metadata=meta)
    with open(recs, "w") as f:
        for u in users[:40]:
            for i, s in top10(uf[ui[u]], items, itf, seen[u]):
                f.write(f"{u},{i},{s}\n")
    print(f"python: implicit ALS trained on {len(r)} rows ({len(users)} users, {len(items)} items), factors written to a safetensors file")


def foldin(path, history, recs):
    with safe_open(path, framework="np") as f:
        meta, t = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    p = json.loads(meta["params"])
    ids, y = t["item_ids"], t["item_factors"].astype(np.float64)
    h = [int(x) for x in history.split(",")]
    rows = [int(np.searchsorted(ids, i)) for i in h]
    # The implicit-ALS fold-in: (YtY + sum (c - 1) y y' + lambda I) x = sum c y, c = 1 + alpha * w.
    c = 1.0 + p["alpha"]
    a = y.T @ y + (c - 1.0) * y[rows].T @ y[rows] + p["regularization"] * np.eye(y.shape[1])
    x = np.linalg.solve(a, c * y[rows].sum(axis=0))
    got = read_recs(recs)
    want = {u: top10(x.astype(np.float32), ids, t["item_factors"], set(h)) for u in got}
    same("fold-in of a new user", want, got)
    print(f"python: a user the imported factors never saw ({len(h)} rows) is folded in as numpy solves it")


if __name__ == "__main__":
    {"check": check, "implicit": implicit_factors, "foldin": foldin}[sys.argv[1]](*sys.argv[2:])
