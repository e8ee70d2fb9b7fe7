#!/usr/bin/env python3
"""Peers on the shared splits, same protocol as pg_recsys: implicit (ItemKNN, ALS, BPR), a numpy
EASE, popularity; Surprise RMSE on the ML-100K u1..u5 folds. Writes one JSON file.
Hyper-parameters are the ones in shared/eval/PEERS.md."""
import argparse, csv, json, os, sys, time
from collections import defaultdict

import numpy as np
import scipy.sparse as sp

ap = argparse.ArgumentParser()
ap.add_argument("--shared", required=True)
ap.add_argument("--splits", nargs="+", required=True)
ap.add_argument("--scale", help="CSV of user,item pairs: time implicit's ALS fit on it")
ap.add_argument("--out", required=True)
a = ap.parse_args()
sys.path.insert(0, os.path.join(a.shared, "eval"))
from evaluate_topn import evaluate  # noqa: E402  the reference scorer itself
from peer_data import load  # noqa: E402  (benches/peer_data.py)


def run_split(name):
    train, test, users, items, uix, iix, X = load(a.shared, name)
    test_d = defaultdict(set); train_d = defaultdict(set)
    for u, i in test: test_d[str(u)].add(str(i))
    for u, i in train: train_d[str(u)].add(str(i))
    tusers = sorted({u for u, _ in test})
    rows = np.array([uix[u] for u in tusers if u in uix])

    def score(recs_idx, fit_s, rec_s):
        recs = {str(users[r]): [str(items[j]) for j in lst] for r, lst in zip(rows, recs_idx)}
        m = evaluate(recs, test_d, k=10, train=train_d)
        return {"ndcg": m["ndcg@10"], "precision": m["precision@10"], "recall": m["recall@10"], "map": m["map@10"],
                "hitrate": m["hitrate@10"], "coverage": m["coverage@10"], "fit_s": fit_s, "recommend_s": rec_s}

    def topk_dense(S):
        S = np.asarray(S, dtype=np.float64)
        S[X[rows].nonzero()] = -np.inf
        return np.argsort(-S, axis=1, kind="stable")[:, :10]

    out = {}
    t = time.perf_counter(); pop = np.asarray(X.sum(axis=0)).ravel(); f = time.perf_counter() - t
    t = time.perf_counter(); r = topk_dense(np.tile(pop, (len(rows), 1))); out["popularity"] = score(r, f, time.perf_counter() - t)

    from implicit.nearest_neighbours import CosineRecommender
    from implicit.cpu.als import AlternatingLeastSquares
    from implicit.cpu.bpr import BayesianPersonalizedRanking
    for label, model in [("item_knn", CosineRecommender(K=100)),
                         ("als", AlternatingLeastSquares(factors=64, regularization=0.05, iterations=15, alpha=5.0, random_state=42)),
                         ("bpr", BayesianPersonalizedRanking(factors=64, learning_rate=0.01, regularization=0.01, iterations=50, random_state=42))]:
        t = time.perf_counter(); model.fit(X, show_progress=False) if label != "item_knn" else model.fit(X); f = time.perf_counter() - t
        t = time.perf_counter(); ids, _ = model.recommend(rows, X[rows], N=10, filter_already_liked_items=True); rs = time.perf_counter() - t
        out[label] = score(ids, f, rs)

    t = time.perf_counter()
    G = (X.T @ X).toarray().astype(np.float64); G[np.diag_indices_from(G)] += 500.0
    P = np.linalg.inv(G); B = -P / np.diag(P); B[np.diag_indices_from(B)] = 0.0
    f = time.perf_counter() - t
    t = time.perf_counter(); r = topk_dense(X[rows] @ B); out["ease"] = score(r, f, time.perf_counter() - t)
    return out


def surprise_folds():
    from surprise import SVD, SVDpp, BaselineOnly, Dataset, KNNBaseline, Reader, accuracy
    reader = Reader(line_format="user item rating timestamp", sep="\t", rating_scale=(1, 5))
    res = {}
    for label, make in [("BaselineOnly", lambda: BaselineOnly(verbose=False)),
                        ("KNNBaseline item pearson_baseline k=40",
                         lambda: KNNBaseline(k=40, sim_options={"name": "pearson_baseline", "user_based": False}, verbose=False)),
                        ("SVD (100 factors, 20 epochs)", lambda: SVD(random_state=42)),
                        ("SVD++ (20 factors, 20 epochs)", lambda: SVDpp(random_state=42))]:
        rmse, mae, fit = [], [], []
        for k in range(1, 6):
            d = os.path.join(a.shared, "data", "ml-100k")
            data = Dataset.load_from_folds([(f"{d}/u{k}.base", f"{d}/u{k}.test")], reader)
            from surprise.model_selection import PredefinedKFold
            trainset, testset = next(PredefinedKFold().split(data))
            algo = make(); t = time.perf_counter(); algo.fit(trainset); fit.append(time.perf_counter() - t)
            pred = algo.test(testset)
            rmse.append(accuracy.rmse(pred, verbose=False)); mae.append(accuracy.mae(pred, verbose=False))
        res[label] = {"rmse": float(np.mean(rmse)), "mae": float(np.mean(mae)), "fit_s": float(np.mean(fit))}
    return res


def scale(path):
    from implicit.cpu.als import AlternatingLeastSquares
    pairs = np.loadtxt(path, delimiter=",", dtype=np.int64)
    users, uinv = np.unique(pairs[:, 0], return_inverse=True)
    items, iinv = np.unique(pairs[:, 1], return_inverse=True)
    X = sp.csr_matrix((np.ones(len(pairs), dtype=np.float32), (uinv, iinv)), shape=(len(users), len(items)))
    model = AlternatingLeastSquares(factors=64, regularization=0.05, iterations=15, alpha=5.0, random_state=42)
    t = time.perf_counter(); model.fit(X, show_progress=False); f = time.perf_counter() - t
    return {"users": len(users), "items": len(items), "interactions": int(X.nnz), "fit_s": f}


result = {"topn": {s: run_split(s) for s in a.splits}, "rating": surprise_folds()}
if a.scale:
    result["scale"] = scale(a.scale)
import implicit, surprise  # noqa: E402
result["versions"] = {"implicit": implicit.__version__, "scikit-surprise": surprise.__version__, "numpy": np.__version__}
json.dump(result, open(a.out, "w"), indent=2)
