//! Item-based nearest neighbours: the top-k most similar items of every item, computed from
//! co-occurrence in user histories (sparse, one pass per item, parallel over items in chunks).

use rayon::prelude::*;
use serde_json::Value;

use crate::engine::format::{corrupt, In, Out};
use crate::engine::interactions::{Csr, Interactions};
use crate::engine::model::{similar_from, Model, Request, Scored};
use crate::engine::neural::DeviceChoice;
use crate::engine::params::Params;
use crate::engine::recommender::{Recommender, Trainer};
use crate::engine::topk::top_k;
use crate::engine::{Progress, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Similarity {
    Cosine,
    Jaccard,
    /// Pearson correlation over the users who rated both items.
    Pearson,
    /// Cosine of the ratings minus each user's mean, over the users who rated both.
    AdjustedCosine,
    /// Pearson correlation of the residuals from baselines μ + b_u + b_i, shrunk by
    /// (n − 1) / (n − 1 + shrink) for n common users (Koren 2010; Surprise's KNNBaseline).
    PearsonBaseline,
}

pub const SIMILARITIES: &[&str] = &["cosine", "jaccard", "pearson", "adjusted_cosine", "pearson_baseline"];

impl Similarity {
    /// Rating similarities: they need a rating column, and the model predicts ratings.
    pub fn for_ratings(self) -> bool {
        matches!(self, Similarity::Pearson | Similarity::AdjustedCosine | Similarity::PearsonBaseline)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ItemKnnParams {
    /// Top-N similarities: neighbours kept per item. Rating similarities: the neighbours used
    /// per prediction (the most similar items the user rated).
    pub k: usize,
    pub similarity: Similarity,
    /// Cosine/jaccard: added to the denominator. Rating similarities: (n−1)/(n−1+shrink).
    pub shrink: f32,
    /// Pairs with fewer common users get no similarity.
    pub min_support: usize,
    /// Neighbours stored per item (rating similarities; top-N models store k).
    pub keep: usize,
}

impl ItemKnnParams {
    pub fn from_params(p: &mut Params) -> Result<Self> {
        let similarity = match p.choice("similarity", "cosine", SIMILARITIES)? {
            "jaccard" => Similarity::Jaccard,
            "pearson" => Similarity::Pearson,
            "adjusted_cosine" => Similarity::AdjustedCosine,
            "pearson_baseline" => Similarity::PearsonBaseline,
            _ => Similarity::Cosine,
        };
        let ratings = similarity.for_ratings();
        let k = p.int("k", if ratings { 40 } else { 100 }, 1, 10_000)? as usize;
        let shrink = p.float("shrink", if similarity == Similarity::PearsonBaseline { 100.0 } else { 0.0 }, 0.0, 1e9)? as f32;
        let min_support = p.int("min_support", 1, 1, 1_000_000)? as usize;
        let keep = if ratings { p.int("keep", 1000, 1, 100_000)? as usize } else { k };
        Ok(ItemKnnParams { k, similarity, shrink, min_support, keep })
    }
}

/// Top-k neighbours per item as CSR rows, each sorted by score desc then index asc.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Neighbors {
    pub indptr: Vec<usize>,
    pub indices: Vec<u32>,
    pub scores: Vec<f32>,
}

/// A neighbour table in external ids, as `recsys.item_neighbor_lists` / `user_neighbor_lists`
/// store it: row r is `ids[r]`'s neighbours `neighbors[indptr[r]..indptr[r + 1]]`, best first.
/// Rows without neighbours are left out.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NeighborLists {
    pub ids: Vec<i64>,
    pub indptr: Vec<usize>,
    pub neighbors: Vec<i64>,
    pub scores: Vec<f32>,
}

impl Neighbors {
    /// The table with row r and index j named `ids[r]` and `ids[j]`.
    pub fn with_ids(&self, ids: &[i64]) -> NeighborLists {
        let mut out = NeighborLists { indptr: vec![0], ..Default::default() };
        for r in 0..self.indptr.len() - 1 {
            let (idx, s) = self.row(r);
            if idx.is_empty() {
                continue;
            }
            out.ids.push(ids[r]);
            out.neighbors.extend(idx.iter().map(|&j| ids[j as usize]));
            out.scores.extend_from_slice(s);
            out.indptr.push(out.neighbors.len());
        }
        out
    }

    pub fn row(&self, item: usize) -> (&[u32], &[f32]) {
        let (a, b) = (self.indptr[item], self.indptr[item + 1]);
        (&self.indices[a..b], &self.scores[a..b])
    }

    /// weight × similarity of each history item that has `i` among its neighbours: the parts of
    /// `score_history`'s score of `i`.
    pub fn contributions(&self, history: &[(u32, f32)], i: usize) -> Vec<(u32, f32)> {
        history
            .iter()
            .filter_map(|&(j, w)| {
                let (idx, s) = self.row(j as usize);
                idx.iter().position(|&x| x as usize == i).map(|p| (j, w * s[p]))
            })
            .collect()
    }

    /// The larger of the two directions' scores of each pair of `items`, scaled so the most
    /// similar pair is 1 (negative scores count as 0), row-major.
    pub fn pair_similarities(&self, items: &[u32]) -> Vec<f32> {
        let n = items.len();
        let position: std::collections::HashMap<u32, usize> = items.iter().enumerate().map(|(k, &i)| (i, k)).collect();
        let mut sim = vec![0f32; n * n];
        for (a, &i) in items.iter().enumerate() {
            let (idx, s) = self.row(i as usize);
            for (&j, &v) in idx.iter().zip(s) {
                if let Some(&b) = position.get(&j) {
                    let v = v.max(0.0);
                    sim[a * n + b] = sim[a * n + b].max(v);
                    sim[b * n + a] = sim[b * n + a].max(v);
                }
            }
        }
        let top = sim.iter().copied().fold(0f32, f32::max);
        if top > 0.0 {
            sim.iter_mut().for_each(|v| *v /= top);
        }
        sim
    }

    /// Adds `weight × similarity` of each history item's neighbours into `scores`,
    /// marking every item reached.
    pub fn score_history(&self, history: &[(u32, f32)], scores: &mut [f32], reached: &mut [bool]) {
        for &(item, weight) in history {
            let (ns, ss) = self.row(item as usize);
            for (&n, &s) in ns.iter().zip(ss) {
                scores[n as usize] += weight * s;
                reached[n as usize] = true;
            }
        }
    }
}

/// Rating baselines b_ui = μ + b_u + b_i, fitted by alternating least squares (Koren 2010;
/// Surprise's defaults: 10 epochs, reg_i 10, reg_u 15).
#[derive(Clone, Debug, PartialEq)]
pub struct Baselines {
    pub mean: f32,
    pub item_bias: Vec<f32>,
    pub reg_u: f32,
    /// Observed rating range: predictions are clipped to it.
    pub range: (f32, f32),
}

const REG_I: f64 = 10.0;
const REG_U: f64 = 15.0;

impl Baselines {
    pub fn fit(by_user: &Csr, by_item: &Csr) -> (Baselines, Vec<f32>) {
        let nnz = by_user.nnz().max(1) as f64;
        let mean = by_user.values.iter().map(|&v| v as f64).sum::<f64>() / nnz;
        let mut bu = vec![0f64; by_user.n_rows()];
        let mut bi = vec![0f64; by_item.n_rows()];
        for _ in 0..10 {
            for (i, b) in bi.iter_mut().enumerate() {
                let (users, r) = by_item.row(i);
                let dev: f64 = users.iter().zip(r).map(|(&u, &r)| r as f64 - mean - bu[u as usize]).sum();
                *b = dev / (REG_I + users.len() as f64);
            }
            for (u, b) in bu.iter_mut().enumerate() {
                let (items, r) = by_user.row(u);
                let dev: f64 = items.iter().zip(r).map(|(&i, &r)| r as f64 - mean - bi[i as usize]).sum();
                *b = dev / (REG_U + items.len() as f64);
            }
        }
        let lo = by_user.values.iter().copied().fold(f32::INFINITY, f32::min);
        let hi = by_user.values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let b = Baselines { mean: mean as f32, item_bias: bi.iter().map(|&v| v as f32).collect(), reg_u: REG_U as f32, range: (lo, hi) };
        (b, bu.iter().map(|&v| v as f32).collect())
    }

    /// A user's bias from their (live) history, as the last ALS step computes it.
    pub fn user_bias(&self, history: &[(u32, f32)]) -> f32 {
        let dev: f32 = history.iter().map(|&(i, r)| r - self.mean - self.item_bias[i as usize]).sum();
        dev / (self.reg_u + history.len() as f32)
    }
}

/// An item-kNN model on ratings: neighbours by a rating similarity, and baselines, predicting
/// r̂_ui = b_ui + Σ_j s_ij (r_uj − b_uj) / Σ_j s_ij over the k most similar items j the user rated.
#[derive(Clone, Debug, PartialEq)]
pub struct RatingKnn {
    pub neighbors: Neighbors,
    pub baselines: Baselines,
    pub k: usize,
}

impl RatingKnn {
    /// The prediction for item i and the (item, weight) terms it used, weights summing to 1.
    /// `rated[j]` is the user's rating of j (NaN if none); `bu` the user's bias.
    pub fn predict(&self, i: usize, rated: &[f32], bu: f32) -> (f32, Vec<(u32, f32)>) {
        let b = &self.baselines;
        let base = |j: usize| b.mean + bu + b.item_bias[j];
        let (idx, sims) = self.neighbors.row(i);
        let mut used = Vec::new();
        let (mut num, mut den) = (0f32, 0f32);
        for (&j, &s) in idx.iter().zip(sims) {
            let r = rated[j as usize];
            if r.is_nan() {
                continue;
            }
            num += s * (r - base(j as usize));
            den += s;
            used.push((j, s * (r - base(j as usize))));
            if used.len() == self.k {
                break;
            }
        }
        if den <= 0.0 {
            return (base(i).clamp(b.range.0, b.range.1), Vec::new());
        }
        used.iter_mut().for_each(|u| u.1 /= den);
        ((base(i) + num / den).clamp(b.range.0, b.range.1), used)
    }

    /// The user's ratings by item index (NaN where unrated) and bias, from a live history.
    pub fn user_state(&self, history: &[(u32, f32)], n_items: usize) -> (Vec<f32>, f32) {
        let mut rated = vec![f32::NAN; n_items];
        history.iter().for_each(|&(j, r)| rated[j as usize] = r);
        (rated, self.baselines.user_bias(history))
    }
}

/// Bytes the fit needs beyond the interactions: transpose and residuals, per-thread
/// accumulators, output.
pub fn memory_estimate(n_items: usize, nnz: usize, p: &ItemKnnParams, threads: usize) -> usize {
    nnz * 16 + threads * n_items * 56 + n_items * p.keep.min(n_items) * 8
}

const CHUNKS: usize = 50;

/// Per-thread accumulators over the items co-rated with the current item.
struct Acc {
    prod: Vec<f64>,
    sq_i: Vec<f64>,
    sq_j: Vec<f64>,
    sum_i: Vec<f64>,
    sum_j: Vec<f64>,
    count: Vec<u32>,
    touched: Vec<u32>,
}

impl Acc {
    fn new(n: usize) -> Acc {
        Acc {
            prod: vec![0.0; n],
            sq_i: vec![0.0; n],
            sq_j: vec![0.0; n],
            sum_i: vec![0.0; n],
            sum_j: vec![0.0; n],
            count: vec![0; n],
            touched: Vec::new(),
        }
    }
}

/// An item × item table computed row by row in parallel on `pool` (`row(state, i)` gives item
/// i's entries, sorted; `init` makes one state per worker), in chunks between which `progress`
/// is told, so a cancel stops it within a chunk.
pub fn item_rows<S, I, F>(n: usize, pool: &rayon::ThreadPool, progress: &mut dyn Progress, init: I, row: F) -> Result<Neighbors>
where
    S: Send,
    I: Fn() -> S + Sync + Send,
    F: Fn(&mut S, usize) -> Vec<(u32, f32)> + Sync + Send,
{
    let mut indptr = Vec::with_capacity(n + 1);
    indptr.push(0);
    let (mut indices, mut scores) = (Vec::new(), Vec::new());
    let chunk = n.div_ceil(CHUNKS).max(64);
    let mut start = 0;
    while start < n {
        let end = (start + chunk).min(n);
        let rows: Vec<Vec<(u32, f32)>> = pool.install(|| (start..end).into_par_iter().map_init(&init, &row).collect());
        for r in rows {
            for (j, s) in r {
                indices.push(j);
                scores.push(s);
            }
            indptr.push(indices.len());
        }
        progress.step(end, n)?;
        start = end;
    }
    Ok(Neighbors { indptr, indices, scores })
}

pub enum Fitted {
    TopN(Neighbors),
    Ratings(RatingKnn),
}

pub fn fit(data: &Interactions, params: &ItemKnnParams, pool: &rayon::ThreadPool, progress: &mut dyn Progress) -> Result<Fitted> {
    let n = data.n_items();
    // The values the similarity compares: raw weights, or rating residuals.
    let mut by_user = data.matrix.clone();
    let raw_by_item = data.matrix.transpose();
    let baselines = params.similarity.for_ratings().then(|| Baselines::fit(&data.matrix, &raw_by_item));
    match (params.similarity, &baselines) {
        (Similarity::PearsonBaseline, Some((b, bu))) => {
            for u in 0..by_user.n_rows() {
                for p in by_user.indptr[u]..by_user.indptr[u + 1] {
                    by_user.values[p] -= b.mean + bu[u] + b.item_bias[by_user.indices[p] as usize];
                }
            }
        }
        (Similarity::AdjustedCosine, _) => {
            for u in 0..by_user.n_rows() {
                let (a, z) = (by_user.indptr[u], by_user.indptr[u + 1]);
                let mean = by_user.values[a..z].iter().sum::<f32>() / (z - a).max(1) as f32;
                by_user.values[a..z].iter_mut().for_each(|v| *v -= mean);
            }
        }
        _ => {}
    }
    let by_item = by_user.transpose();
    let norms: Vec<f64> = (0..n)
        .map(|i| {
            let (_, vals) = by_item.row(i);
            match params.similarity {
                Similarity::Jaccard => vals.len() as f64,
                _ => vals.iter().map(|&v| v as f64 * v as f64).sum::<f64>().sqrt(),
            }
        })
        .collect();

    let keep = if params.similarity.for_ratings() { params.keep } else { params.k };
    let neighbors = item_rows(n, pool, progress, || Acc::new(n), |acc, i| neighbours_of(i, &by_user, &by_item, &norms, params, keep, acc))?;
    Ok(match baselines {
        Some((baselines, _)) => Fitted::Ratings(RatingKnn { neighbors, baselines, k: params.k }),
        None => Fitted::TopN(neighbors),
    })
}

fn neighbours_of(i: usize, by_user: &Csr, by_item: &Csr, norms: &[f64], params: &ItemKnnParams, keep: usize, acc: &mut Acc) -> Vec<(u32, f32)> {
    let (users, weights) = by_item.row(i);
    let sums = params.similarity == Similarity::Pearson;
    for (&u, &wi) in users.iter().zip(weights) {
        let (items, wj) = by_user.row(u as usize);
        let wi = wi as f64;
        for (&j, &w) in items.iter().zip(wj) {
            let j = j as usize;
            if acc.count[j] == 0 {
                acc.touched.push(j as u32);
            }
            let w = w as f64;
            acc.count[j] += 1;
            acc.prod[j] += wi * w;
            if params.similarity.for_ratings() {
                acc.sq_i[j] += wi * wi;
                acc.sq_j[j] += w * w;
                if sums {
                    acc.sum_i[j] += wi;
                    acc.sum_j[j] += w;
                }
            }
        }
    }
    let shrink = params.shrink as f64;
    let sims = acc.touched.iter().filter(|&&j| j as usize != i).filter_map(|&j| {
        let j = j as usize;
        let n = acc.count[j] as f64;
        if (acc.count[j] as usize) < params.min_support {
            return None;
        }
        let dot = if params.similarity == Similarity::Jaccard { n } else { acc.prod[j] };
        let s = match params.similarity {
            Similarity::Cosine => {
                let d = norms[i] * norms[j] + shrink;
                if d > 0.0 { dot / d } else { 0.0 }
            }
            Similarity::Jaccard => {
                let d = norms[i] + norms[j] - dot + shrink;
                if d > 0.0 { dot / d } else { 0.0 }
            }
            Similarity::Pearson | Similarity::AdjustedCosine | Similarity::PearsonBaseline => {
                let (num, vi, vj) = if sums {
                    (dot - acc.sum_i[j] * acc.sum_j[j] / n, acc.sq_i[j] - acc.sum_i[j].powi(2) / n, acc.sq_j[j] - acc.sum_j[j].powi(2) / n)
                } else {
                    (dot, acc.sq_i[j], acc.sq_j[j])
                };
                let d = (vi * vj).sqrt();
                let rho = if d > 0.0 { num / d } else { 0.0 };
                if shrink > 0.0 { rho * (n - 1.0) / (n - 1.0 + shrink) } else { rho }
            }
        };
        // Rounding can push a cosine of parallel vectors just past 1.
        Some((j as u32, s.min(1.0) as f32))
    });
    let best = top_k(sims.filter(|&(_, s)| s > 0.0 && s.is_finite()), keep);
    for &j in acc.touched.iter() {
        let j = j as usize;
        acc.prod[j] = 0.0;
        acc.sq_i[j] = 0.0;
        acc.sq_j[j] = 0.0;
        acc.sum_i[j] = 0.0;
        acc.sum_j[j] = 0.0;
        acc.count[j] = 0;
    }
    acc.touched.clear();
    best
}

impl RatingKnn {
    pub fn load(r: &In, n_items: usize) -> Result<RatingKnn> {
        let neighbors = r.neighbors("neighbors", n_items)?;
        let item_bias = r.f32s("baselines.item_bias", Some(&[n_items]))?;
        let range = range_of(r)?;
        let k = r.usize("k")?;
        if k == 0 {
            return Err(corrupt("rating kNN k is 0"));
        }
        Ok(RatingKnn {
            neighbors,
            baselines: Baselines {
                mean: r.f32("mean")?,
                item_bias,
                reg_u: r.f32("reg_u")?,
                range,
            },
            k,
        })
    }
}

/// A stored `range` pair (lowest, highest observed rating).
pub fn range_of(r: &In) -> Result<(f32, f32)> {
    match r
        .get("range")?
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect::<Vec<_>>())
        .as_deref()
    {
        Some(&[lo, hi]) => Ok((lo as f32, hi as f32)),
        _ => Err(corrupt("state \"range\" is not [low, high]")),
    }
}

impl Trainer for ItemKnnParams {
    fn needs_ratings(&self) -> bool {
        self.similarity.for_ratings()
    }

    fn memory_estimate(&self, data: &Interactions, threads: usize) -> usize {
        memory_estimate(data.n_items(), data.nnz(), self, threads)
    }

    fn fit(&self, data: &Interactions, _: DeviceChoice, pool: &rayon::ThreadPool, progress: &mut dyn Progress) -> Result<Box<dyn Recommender>> {
        Ok(match fit(data, self, pool, progress)? {
            Fitted::TopN(nb) => Box::new(nb),
            Fitted::Ratings(r) => Box::new(r),
        })
    }
}

/// Item-kNN on a co-occurrence similarity: the neighbour lists are the model.
impl Recommender for Neighbors {
    fn name(&self) -> &'static str {
        "item_knn"
    }

    fn score(&self, m: &Model, _: &Request, history: &[(u32, f32)]) -> Result<Option<Scored>> {
        let (mut scores, mut reached) = (vec![0f32; m.n_items()], vec![false; m.n_items()]);
        self.score_history(history, &mut scores, &mut reached);
        Ok(Some(Scored::reached(scores, reached)))
    }

    /// weight × similarity of each history item that has `i` among its neighbours.
    fn contributions(&self, _: &Model, _: &Request, history: &[(u32, f32)], i: usize) -> Result<Vec<(u32, f32)>> {
        Ok(Neighbors::contributions(self, history, i))
    }

    fn similar_items(&self, _: &Model, item: Option<usize>, n: usize) -> Result<Vec<(u32, f32)>> {
        Ok(similar_from(self, item, n))
    }

    fn item_neighbors(&self) -> Option<&Neighbors> {
        Some(self)
    }

    fn store<'a>(&'a self, out: &mut Out<'_, 'a>) -> Result<()> {
        out.neighbors("neighbors", self);
        Ok(())
    }
}

impl Recommender for RatingKnn {
    fn name(&self) -> &'static str {
        "item_knn"
    }

    /// With no known history the user's bias is 0: the baselines are the prediction.
    fn scores_unknown_history(&self) -> bool {
        true
    }

    fn score(&self, m: &Model, _: &Request, history: &[(u32, f32)]) -> Result<Option<Scored>> {
        let (rated, bu) = self.user_state(history, m.n_items());
        let scored = Scored::all((0..m.n_items()).map(|i| self.predict(i, &rated, bu).0).collect());
        Ok(Some(Scored { placed: !history.is_empty(), ..scored }))
    }

    fn predict(&self, m: &Model, _: &Request, history: &[(u32, f32)], i: usize) -> Result<Option<f32>> {
        let (rated, bu) = self.user_state(history, m.n_items());
        Ok(Some(RatingKnn::predict(self, i, &rated, bu).0))
    }

    fn contributions(&self, m: &Model, _: &Request, history: &[(u32, f32)], i: usize) -> Result<Vec<(u32, f32)>> {
        let (rated, bu) = self.user_state(history, m.n_items());
        Ok(RatingKnn::predict(self, i, &rated, bu).1)
    }

    fn similar_items(&self, _: &Model, item: Option<usize>, n: usize) -> Result<Vec<(u32, f32)>> {
        Ok(similar_from(&self.neighbors, item, n))
    }

    fn item_neighbors(&self) -> Option<&Neighbors> {
        Some(&self.neighbors)
    }

    fn predicts_ratings(&self) -> bool {
        true
    }

    /// Its part of the model file: `neighbors.*`, `baselines.item_bias`; state: mean, reg_u,
    /// range, k.
    fn store<'a>(&'a self, out: &mut Out<'_, 'a>) -> Result<()> {
        out.set("ratings", true);
        out.neighbors("neighbors", &self.neighbors);
        let b = &self.baselines;
        out.f32s("baselines.item_bias", &[b.item_bias.len()], &b.item_bias);
        out.set("mean", b.mean);
        out.set("reg_u", b.reg_u);
        out.set("range", vec![b.range.0, b.range.1]);
        out.set("k", self.k);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::NoProgress;

    fn params(k: usize, similarity: Similarity, shrink: f32) -> ItemKnnParams {
        ItemKnnParams { k, similarity, shrink, min_support: 1, keep: k }
    }

    fn top_n(f: Fitted) -> Neighbors {
        match f {
            Fitted::TopN(nb) => nb,
            Fitted::Ratings(_) => panic!("a top-N similarity gave a rating model"),
        }
    }

    #[test]
    fn rating_similarities_hand_computed() {
        // Items 1 and 2 rated by users 1..4; item 3 by users 1..2.
        let u = [1, 2, 3, 4, 1, 2, 3, 4, 1, 2];
        let i = [1, 1, 1, 1, 2, 2, 2, 2, 3, 3];
        let r = [5.0, 4.0, 2.0, 1.0, 4.0, 5.0, 1.0, 2.0, 1.0, 2.0];
        let data = Interactions::from_triplets(&u, &i, &r).unwrap();
        let p = ItemKnnParams { k: 40, similarity: Similarity::Pearson, shrink: 0.0, min_support: 1, keep: 10 };
        let Fitted::Ratings(m) = fit(&data, &p, &pool(), &mut NoProgress).unwrap() else { panic!() };
        // pearson(item1, item2) over users 1..4: x = (5,4,2,1), y = (4,5,1,2): 0.8
        let (idx, s) = m.neighbors.row(0);
        assert_eq!(idx[0], 1);
        assert!((s[0] - 0.8).abs() < 1e-6, "{s:?}");
        // min_support 3 drops the pairs with item 3 (2 common users)
        let p3 = ItemKnnParams { min_support: 3, ..p.clone() };
        let Fitted::Ratings(m3) = fit(&data, &p3, &pool(), &mut NoProgress).unwrap() else { panic!() };
        assert!(m3.neighbors.row(2).0.is_empty());
        // prediction = baseline + weighted residuals, clipped to the observed range
        let (rated, bu) = m.user_state(&[(1, 5.0)], 3);
        let (pred, used) = m.predict(0, &rated, bu);
        assert!((1.0..=5.0).contains(&pred));
        assert_eq!(used.len(), 1);
        let b = &m.baselines;
        let want = (b.mean + bu + b.item_bias[0] + (5.0 - b.mean - bu - b.item_bias[1])).clamp(1.0, 5.0);
        assert!((pred - want).abs() < 1e-5);
    }

    fn pool() -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap()
    }

    fn data() -> Interactions {
        // users 1..3; items 10, 20, 30. Item 10: {1,2}, item 20: {1,2,3}, item 30: {3}
        Interactions::from_triplets(&[1, 1, 2, 2, 3, 3], &[10, 20, 10, 20, 20, 30], &[1.0; 6]).unwrap()
    }

    #[test]
    fn cosine_neighbours_hand_computed() {
        let p = params(10, Similarity::Cosine, 0.0);
        let nb = top_n(fit(&data(), &p, &pool(), &mut NoProgress).unwrap());
        // cos(10,20) = 2/(sqrt2*sqrt3); cos(20,30) = 1/sqrt3; cos(10,30) = 0 (not stored)
        let (idx, s) = nb.row(0);
        assert_eq!(idx, &[1]);
        assert!((s[0] - 2.0 / (2f32.sqrt() * 3f32.sqrt())).abs() < 1e-6);
        let (idx, s) = nb.row(1);
        assert_eq!(idx, &[0, 2]);
        assert!((s[1] - 1.0 / 3f32.sqrt()).abs() < 1e-6);
    }

    #[test]
    fn jaccard_and_shrink_and_k() {
        let p = params(1, Similarity::Jaccard, 0.0);
        let nb = top_n(fit(&data(), &p, &pool(), &mut NoProgress).unwrap());
        // J(20,10) = 2/3, J(20,30) = 1/3; k = 1 keeps the best
        assert_eq!(nb.row(1).0, &[0]);
        assert!((nb.row(1).1[0] - 2.0 / 3.0).abs() < 1e-6);
        let p = params(5, Similarity::Jaccard, 1.0);
        let nb = top_n(fit(&data(), &p, &pool(), &mut NoProgress).unwrap());
        assert!((nb.row(1).1[0] - 2.0 / 4.0).abs() < 1e-6);
    }

    #[test]
    fn parallel_equals_serial() {
        let d = crate::engine::synthetic::generate(&crate::engine::synthetic::SyntheticParams {
            users: 200, items: 150, interactions: 4000, seed: 9,
        })
        .unwrap();
        let users: Vec<i64> = d.iter().map(|r| r.user_id).collect();
        let items: Vec<i64> = d.iter().map(|r| r.item_id).collect();
        let m = Interactions::from_triplets(&users, &items, &vec![1.0; users.len()]).unwrap();
        let p = params(20, Similarity::Cosine, 0.0);
        let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        assert_eq!(top_n(fit(&m, &p, &one, &mut NoProgress).unwrap()), top_n(fit(&m, &p, &pool(), &mut NoProgress).unwrap()));
    }
}
