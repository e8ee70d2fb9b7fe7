"""The shared splits as the Python peers read them (benches/peers.py, benches/frontier.py)."""
import csv
import os

import numpy as np
import scipy.sparse as sp


def read(path):
    with open(path, newline="") as fh:
        return [(int(r["user"]), int(r["item"])) for r in csv.DictReader(fh)]


def load(shared, name):
    """(train, test, users, items, uix, iix, X): the pairs, the sorted ids and their indices, and
    the binary users × items matrix of train (float32)."""
    base = os.path.join(shared, "eval", "splits", name)
    train, test = read(base + "_train.csv"), read(base + "_test.csv")
    users = sorted({u for u, _ in train}); items = sorted({i for _, i in train})
    uix = {u: k for k, u in enumerate(users)}; iix = {i: k for k, i in enumerate(items)}
    X = sp.csr_matrix((np.ones(len(train), dtype=np.float32),
                       ([uix[u] for u, _ in train], [iix[i] for _, i in train])), shape=(len(users), len(items)))
    X.data[:] = 1.0
    return train, test, users, items, uix, iix, X
