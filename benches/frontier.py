#!/usr/bin/env python3
"""Peers of `make bench-frontier`, and its REPORT.md section (markdown on stdout).

RP3beta: numpy/scipy, as Dacrema et al.'s RP3betaRecommender computes it (P_ui row-normalised
weights and P_iu row-normalised binary transposed, both raised to alpha, times popularity^-beta,
zero diagonal, top-k per item, rows L1-normalised when `normalize`). SLIM: scikit-learn's
ElasticNet per item (positive, no intercept, the item's own column zeroed, top-k kept), as their
SLIMElasticNetRecommender does. DLAE (Steck 2020): numpy, B = (G + Λ)⁻¹G with G = XᵀX and
Λ = diag(p/(1−p)·diag(G) + λ), by a dense solve. Each peer gets the hyper-parameters pg_recsys's recsys.tune chose
on validation (ours.csv), and is scored by the reference scorer on the same split."""
import argparse, csv, datetime, json, os, sys, time, warnings
from collections import defaultdict

import numpy as np
import scipy.sparse as sp

ap = argparse.ArgumentParser()
ap.add_argument("--shared", required=True)
ap.add_argument("--ours", required=True)
ap.add_argument("--dir", required=True)
ap.add_argument("--cores", default="?")
a = ap.parse_args()
sys.path.insert(0, os.path.join(a.shared, "eval"))
from evaluate_topn import evaluate  # noqa: E402  the reference scorer itself
from peer_data import load as load_split  # noqa: E402  (benches/peer_data.py)


def load(split):
    return load_split(a.shared, split)


def ndcg_of(X, W, users, items, uix, test, train):
    td, trd = defaultdict(set), defaultdict(set)
    for u, i in test: td[str(u)].add(str(i))
    for u, i in train: trd[str(u)].add(str(i))
    tusers = sorted({u for u, _ in test if u in uix}); rows = np.array([uix[u] for u in tusers])
    S = X[rows] @ W
    S = np.asarray(S.todense() if sp.issparse(S) else S, dtype=np.float64)
    S[X[rows].nonzero()] = -np.inf
    top = np.argsort(-S, axis=1, kind="stable")[:, :10]
    recs = {str(users[r]): [str(items[j]) for j in l] for r, l in zip(rows, top)}
    return evaluate(recs, td, k=10, train=trd)["ndcg@10"]


def rp3beta(X, alpha, beta, k, normalize):
    Pui = sp.csr_matrix(X.multiply(1.0 / np.maximum(np.asarray(X.sum(1)), 1e-12)))
    Pui.data **= alpha
    Xt = sp.csr_matrix(X.T); Xt.data[:] = 1.0
    Piu = sp.csr_matrix(Xt.multiply(1.0 / np.maximum(np.asarray(Xt.sum(1)), 1e-12)))
    Piu.data **= alpha
    deg = np.asarray(Xt.sum(1)).ravel(); d = np.where(deg > 0, np.power(np.maximum(deg, 1e-12), -beta), 0.0)
    W = (Piu @ Pui).toarray() * d[None, :]
    np.fill_diagonal(W, 0.0)
    if k < W.shape[1]:
        drop = np.argpartition(-W, k, axis=1)[:, k:]
        np.put_along_axis(W, drop, 0.0, axis=1)
    if normalize:
        W = W / np.maximum(W.sum(1, keepdims=True), 1e-12)
    return W


def slim(X, alpha, l1_ratio, k):
    from sklearn.linear_model import ElasticNet
    warnings.filterwarnings("ignore")
    Xc = sp.csc_matrix(X, dtype=np.float64); n = Xc.shape[1]
    m = ElasticNet(alpha=alpha, l1_ratio=l1_ratio, positive=True, fit_intercept=False, copy_X=False,
                   precompute=True, selection="random", max_iter=100, tol=1e-4, random_state=42)
    rows, cols, vals = [], [], []
    for j in range(n):
        y = Xc[:, j].toarray().ravel()
        s, e = Xc.indptr[j], Xc.indptr[j + 1]; saved = Xc.data[s:e].copy(); Xc.data[s:e] = 0.0
        m.fit(Xc, y); Xc.data[s:e] = saved
        c = m.coef_; nz = np.flatnonzero(c)
        if len(nz) > k:
            nz = nz[np.argpartition(-c[nz], k)[:k]]
        rows.extend(nz); cols.extend([j] * len(nz)); vals.extend(c[nz])
    return sp.csr_matrix((vals, (rows, cols)), shape=(n, n))


def dlae(X, lam, p):
    Xd = X.toarray() if sp.issparse(X) else np.asarray(X)
    G = Xd.T @ Xd
    A = G.copy(); A[np.diag_indices_from(A)] += p / (1 - p) * np.diag(G) + lam
    W = np.linalg.solve(A, G)
    np.fill_diagonal(W, 0.0)
    return W


ours = list(csv.DictReader(open(a.ours)))
names = {"ml100k_implicit_all": "ML-100K all", "ml100k_implicit_pos4": "ML-100K pos4", "mllatestsmall_implicit_all": "ml-latest-small"}
print("## RP3beta, SLIM, DLAE and `auto` — pg_recsys vs numpy RP3beta, scikit-learn SLIM and numpy DLAE\n")
print(f"`make bench-frontier`, {datetime.date.today()}, this machine ({a.cores} cores). Hyper-parameters of `slim`, "
      "`rp3beta` and `dlae` (`ease` with `dropout`): chosen by `recsys.tune(..., search => 'random', trials => 12)` on a validation split carved from train "
      "(seed 42); the peers run with the same values. `auto`: `recsys.tune(model, train, 'auto')` (every portfolio "
      "algorithm's defaults and 7 random points of its space, then hybrids of every pair of the best three at weights 0.3, 0.5 and 0.7; 0.1 of each user's rows held out), deploying the validation "
      "winner. NDCG@10 on the test split by `recsys.evaluate` (ours, equal to the reference scorer's) and by the reference "
      "scorer (peers); fit seconds of the final fit (ours: the engine; peers: the fit in Python).\n")
print("| split | model | params (tuned on validation) | NDCG@10 | fit s | peer NDCG@10 | peer fit s | ratio |")
print("|---|---|---|---:|---:|---:|---:|---:|")
loaded = {}
for r in ours:
    split, model, alg = r["split"], r["model"], r["algorithm"]
    params = json.loads(r["params"])
    peer = pfit = None
    if model in ("slim", "rp3beta", "dlae", "defaults_slim", "defaults_rp3beta"):
        if split not in loaded:
            loaded[split] = load(split)
        train, test, users, items, uix, iix, X = loaded[split]
        t = time.perf_counter()
        if model == "dlae":
            W = dlae(X, params["lambda"], params["dropout"])
        elif alg == "rp3beta":
            W = rp3beta(X, params["alpha"], params["beta"], params["k"], params.get("normalize") == "true")
        else:
            W = slim(X, params["alpha"], params["l1_ratio"], params["k"])
        pfit = time.perf_counter() - t
        peer = ndcg_of(X, W, users, items, uix, test, train)
    shown = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in params.items() if k not in ("weighting", "members", "keep", "neighbors")}
    if alg == "hybrid":
        shown = " + ".join(f"{m['algorithm']} × {m['weight']:.1f}" for m in params["members"])
    label = model.replace("defaults_", "") + (" (defaults)" if model.startswith("defaults_") else "") + (f" → {alg}" if model == "auto" else "")
    ratio = f"{float(r['ndcg']) / peer:.3f}" if peer else ""
    print(f"| {names.get(split, split)} | {label} | `{json.dumps(shown) if not isinstance(shown, str) else shown}` | "
          f"{float(r['ndcg']):.4f} | {float(r['fit_s']):.2f} | {f'{peer:.4f}' if peer else '—'} | {f'{pfit:.2f}' if pfit else ''} | {ratio} |")

print("\n`auto`'s leaderboard (validation NDCG@10, the best of each algorithm and the hybrids), per split:\n")
for split in names:
    path = os.path.join(a.dir, f"leaderboard_{split}.json")
    if not os.path.exists(path) or not open(path).read().strip():
        continue
    board = json.load(open(path)); best = {}
    for e in board:
        key = e["algorithm"] if e["algorithm"] != "hybrid" else "hybrid " + " + ".join(m["algorithm"] for m in e["params"]["members"]) + f" ({e['params']['members'][0]['weight']:.1f})"
        metric = next(v for k, v in e.items() if k.startswith("ndcg@"))
        if key not in best or metric > best[key]:
            best[key] = metric
    print(f"- {names[split]}: " + ", ".join(f"{k} {v:.4f}" for k, v in sorted(best.items(), key=lambda kv: -kv[1])))

# Diversity: NDCG@10 and intra-list similarity (mean pairwise cosine of the recommended items'
# binary user vectors in train — one yardstick for every model and λ).
split = "ml100k_implicit_all"
files = sorted((f for f in os.listdir(a.dir) if f.startswith("div_")), key=lambda f: (f[:-4].split("_", 2)[1], float(f[:-4].split("_", 2)[2])))
if files:
    train, test, users, items, uix, iix, X = loaded.get(split) or load(split)
    Xc = sp.csc_matrix(X); norms = np.sqrt(np.asarray(Xc.multiply(Xc).sum(0)).ravel())
    td, trd = defaultdict(set), defaultdict(set)
    for u, i in test: td[str(u)].add(str(i))
    for u, i in train: trd[str(u)].add(str(i))
    print("\nDiversity on ML-100K all: `recommend(user, 10, model, diversity => λ)` (maximal marginal relevance with the "
          "model's own item similarity), NDCG@10 by the reference scorer, intra-list similarity = mean pairwise cosine of "
          "the 10 items' user vectors in train (lower is more diverse), coverage@10.\n")
    print("| model | λ | NDCG@10 | intra-list similarity | coverage@10 |")
    print("|---|---:|---:|---:|---:|")
    for f in files:
        _, model, lam = f[:-4].split("_", 2)
        recs = defaultdict(list)
        for r in csv.DictReader(open(os.path.join(a.dir, f))):
            recs[r["user"]].append((int(r["rank"]), r["item"]))
        recs = {u: [i for _, i in sorted(v)] for u, v in recs.items()}
        m = evaluate(recs, td, k=10, train=trd)
        ils = []
        for lst in recs.values():
            idx = [iix[int(i)] for i in lst if int(i) in iix]
            if len(idx) < 2:
                continue
            V = Xc[:, idx]; G = (V.T @ V).toarray() / np.outer(norms[idx], norms[idx])
            ils.append((G.sum() - np.trace(G)) / (len(idx) * (len(idx) - 1)))
        print(f"| {model} | {lam} | {m['ndcg@10']:.4f} | {np.mean(ils):.4f} | {m['coverage@10']:.4f} |")
