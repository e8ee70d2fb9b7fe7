#!/usr/bin/env python3
"""Epoch time of pg_recsys's neural architectures re-built in PyTorch (CPU), on the same data and
machine, for `make bench`: NeuMF as `ncf` trains it (GMF + 3-layer MLP, 4 uniform unseen negatives
per positive, BCE, AdamW, batch 1024) and SASRec as `sequential` trains it (2 blocks, 1 head,
max_len 50, windows over long histories, full-softmax cross-entropy, dropout 0.2, AdamW, batch
128) and the two towers as `two_tower` trains them (hashed TF-IDF bags of each item's text summed
through a bucket embedding with an id embedding dropped for half the items each batch, two-layer
MLP towers, the user as the mean of their other items, full-softmax cross-entropy over the
catalogue, AdamW, batch 1024). Each epoch includes its sampling/batching, as ours does. Prints
JSON; exits 3 when torch is missing so the caller can skip."""
import argparse, csv, json, math, random, re, sys, time
from collections import defaultdict

try:
    import torch
    import torch.nn as nn
except ImportError:
    sys.exit(3)

ap = argparse.ArgumentParser()
ap.add_argument("--ncf-train", required=True, help="CSV with user,item columns")
ap.add_argument("--seq-train", required=True, help="CSV user,item,time (no header)")
ap.add_argument("--items", help="CSV item,text (no header) for two_tower; skipped when absent")
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--epochs", type=int, default=2, help="timed epochs (after one warm-up epoch)")
a = ap.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(42)
random.seed(42)


class NeuMF(nn.Module):
    def __init__(self, users, items, factors=32, hidden=64):
        super().__init__()
        half = hidden // 2
        self.ug, self.ig = nn.Embedding(users, factors), nn.Embedding(items, factors)
        self.um, self.im = nn.Embedding(users, half), nn.Embedding(items, half)
        self.mlp = nn.Sequential(nn.Linear(2 * half, hidden), nn.ReLU(), nn.Linear(hidden, hidden // 2), nn.ReLU(),
                                 nn.Linear(hidden // 2, hidden // 4), nn.ReLU())
        self.out = nn.Linear(factors + hidden // 4, 1)

    def forward(self, u, i):
        g = self.ug(u) * self.ig(i)
        h = self.mlp(torch.cat([self.um(u), self.im(i)], 1))
        return self.out(torch.cat([g, h], 1)).squeeze(1)


def ncf_epoch_seconds():
    with open(a.ncf_train, newline="") as fh:
        pairs = [(int(r["user"]), int(r["item"])) for r in csv.DictReader(fh)]
    users = {u: k for k, u in enumerate(sorted({u for u, _ in pairs}))}
    items = {i: k for k, i in enumerate(sorted({i for _, i in pairs}))}
    pos = [(users[u], items[i]) for u, i in pairs]
    seen = defaultdict(set)
    for u, i in pos:
        seen[u].add(i)
    model = NeuMF(len(users), len(items))
    opt = torch.optim.AdamW(model.parameters(), lr=0.002, weight_decay=0.0)
    loss_fn = nn.BCEWithLogitsLoss()
    n_items = len(items)

    def epoch():
        samples = []
        for u, i in pos:
            samples.append((u, i, 1.0))
            for _ in range(4):
                j = random.randrange(n_items)
                while j in seen[u]:
                    j = random.randrange(n_items)
                samples.append((u, j, 0.0))
        random.shuffle(samples)
        t = torch.tensor(samples)
        for b in range(0, len(samples), 1024):
            chunk = t[b:b + 1024]
            opt.zero_grad()
            loss = loss_fn(model(chunk[:, 0].long(), chunk[:, 1].long()), chunk[:, 2])
            loss.backward()
            opt.step()

    return timed(epoch)


class Block(nn.Module):
    def __init__(self, d, p):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d, eps=1e-8), nn.LayerNorm(d, eps=1e-8)
        self.attn = nn.MultiheadAttention(d, 1, dropout=p, batch_first=True)
        self.ffn = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, d), nn.Dropout(p))
        self.drop = nn.Dropout(p)

    def forward(self, x, mask, keep):
        q = self.ln1(x)
        out, _ = self.attn(q, x, x, attn_mask=mask, need_weights=False)
        y = self.ln2(q + self.drop(out))
        return (y + self.ffn(y)) * keep


class SASRec(nn.Module):
    def __init__(self, items, d=64, max_len=50, blocks=2, p=0.2):
        super().__init__()
        self.item = nn.Embedding(items + 1, d, padding_idx=0)
        self.pos = nn.Embedding(max_len, d)
        self.blocks = nn.ModuleList([Block(d, p) for _ in range(blocks)])
        self.ln = nn.LayerNorm(d, eps=1e-8)
        self.drop = nn.Dropout(p)
        self.mask = torch.triu(torch.ones(max_len, max_len, dtype=torch.bool), 1)
        self.d = d

    def forward(self, seqs):
        keep = (seqs > 0).unsqueeze(-1).float()
        x = self.item(seqs) * math.sqrt(self.d) + self.pos.weight.unsqueeze(0)
        x = self.drop(x) * keep
        for b in self.blocks:
            x = b(x, self.mask, keep)
        return self.ln(x)


def seq_epoch_seconds():
    rows = []
    with open(a.seq_train, newline="") as fh:
        for r in csv.reader(fh):
            rows.append((int(r[0]), int(r[1]), float(r[2]) if r[2] else float("-inf")))
    items = {i: k + 1 for k, i in enumerate(sorted({i for _, i, _ in rows}))}
    by_user = defaultdict(list)
    for u, i, t in sorted(rows, key=lambda r: (r[0], r[2], r[1])):
        by_user[u].append(items[i])
    L = 50
    windows = []
    for s in by_user.values():
        end = len(s)
        while end >= 2:
            start = max(0, end - L - 1)
            w = s[start:end]
            inp, tgt = w[:-1], w[1:]
            windows.append(([0] * (L - len(inp)) + inp, [0] * (L - len(tgt)) + tgt))
            if start == 0:
                break
            end = start + 1
    model = SASRec(len(items), max_len=L)
    opt = torch.optim.AdamW(model.parameters(), lr=0.001, weight_decay=0.0)
    loss_fn = nn.CrossEntropyLoss()

    def epoch():
        random.shuffle(windows)
        model.train()
        for b in range(0, len(windows), 128):
            chunk = windows[b:b + 128]
            inp = torch.tensor([w[0] for w in chunk])
            tgt = torch.tensor([w[1] for w in chunk]).reshape(-1)
            h = model(inp).reshape(-1, model.d)
            rows = tgt > 0
            logits = h[rows] @ model.item.weight[1:].t()
            opt.zero_grad()
            loss = loss_fn(logits, tgt[rows] - 1)
            loss.backward()
            opt.step()

    return timed(epoch)


class Towers(nn.Module):
    def __init__(self, items, buckets=16384, d=64):
        super().__init__()
        self.token = nn.EmbeddingBag(buckets, d, mode="sum")
        self.id = nn.Embedding(items, d)
        nn.init.normal_(self.token.weight, std=0.1)
        nn.init.normal_(self.id.weight, std=0.1)
        self.item = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, d))
        self.user = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, d))

    def items(self, bag_ids, bag_offsets, bag_weights, keep):
        x = self.token(bag_ids, bag_offsets, per_sample_weights=bag_weights) + self.id.weight * keep
        return self.item(x)


def fnv1a(word, buckets):
    h = 0xcbf29ce484222325
    for b in word.encode():
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h % buckets


def two_tower_epoch_seconds():
    texts = {}
    with open(a.items, newline="", encoding="utf-8") as fh:
        for r in csv.reader(fh):
            texts[int(r[0])] = r[1]
    with open(a.ncf_train, newline="") as fh:
        pairs = [(int(r["user"]), int(r["item"])) for r in csv.DictReader(fh)]
    items = {i: k for k, i in enumerate(sorted({i for _, i in pairs}))}
    users = {u: k for k, u in enumerate(sorted({u for u, _ in pairs}))}
    buckets, n_items = 16384, len(items)
    words = lambda t: [w.lower() for w in re.split(r"[^\w]|_", t) if w]
    docs = [words(texts.get(i, "")) for i in sorted(items)]
    df = defaultdict(int)
    for d in docs:
        for b in {fnv1a(w, buckets) for w in d}:
            df[b] += 1
    ids, offsets, weights = [], [], []
    for d in docs:
        counts = defaultdict(float)
        for w in d:
            counts[fnv1a(w, buckets)] += 1.0
        v = {b: c * (math.log((1 + n_items) / (1 + df[b])) + 1) for b, c in counts.items()}
        norm = math.sqrt(sum(x * x for x in v.values())) or 1.0
        offsets.append(len(ids))
        for b in sorted(v):
            ids.append(b)
            weights.append(v[b] / norm)
    bag_ids, bag_offsets, bag_weights = torch.tensor(ids), torch.tensor(offsets), torch.tensor(weights)
    rows = defaultdict(list)
    for u, i in pairs:
        rows[users[u]].append(items[i])
    inter = [(u, i) for u, its in rows.items() for i in its]
    model = Towers(n_items)
    opt = torch.optim.AdamW(model.parameters(), lr=0.005, weight_decay=0.0)
    loss_fn = nn.CrossEntropyLoss()

    def epoch():
        random.shuffle(inter)
        for b in range(0, len(inter), 1024):
            chunk = inter[b:b + 1024]
            averaging = torch.zeros(len(chunk), n_items)
            for r, (u, target) in enumerate(chunk):
                others = [j for j in rows[u] if j != target]
                if others:
                    averaging[r, others] = 1.0 / len(others)
            labels = torch.tensor([t for _, t in chunk])
            keep = (torch.rand(n_items, 1) >= 0.5).float()
            item_vecs = model.items(bag_ids, bag_offsets, bag_weights, keep)
            user_vecs = model.user(averaging @ item_vecs)
            loss = loss_fn(user_vecs @ item_vecs.t(), labels)
            opt.zero_grad()
            loss.backward()
            opt.step()

    return timed(epoch)


def timed(epoch):
    epoch()  # warm-up
    t = time.perf_counter()
    for _ in range(a.epochs):
        epoch()
    return (time.perf_counter() - t) / a.epochs


out = {"torch": torch.__version__, "threads": a.threads,
       "ncf_epoch_s": ncf_epoch_seconds(), "sequential_epoch_s": seq_epoch_seconds()}
if a.items:
    out["two_tower_epoch_s"] = two_tower_epoch_seconds()
print(json.dumps(out))
