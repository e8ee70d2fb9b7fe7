//! Item–item models whose trained state is a neighbour table, scored from the live history as
//! item_knn is (Σ over history items of weight × W[i][j]) and explained exactly by those terms:
//!
//! - **RP3beta** (Paudel et al. 2017, as evaluated by Dacrema et al. 2019): a three-step random
//!   walk item → user → item, W[i][j] = Σ_u P(u|i)^α · P(j|u)^α / pop(j)^β, where P(u|i) is
//!   uniform over the item's users, P(j|u) is the user's weights normalised to sum to one, and
//!   pop(j) is the item's number of users; top-k per item, the diagonal zero.
//! - **SLIM** (Ning & Karypis 2011), ElasticNet variant: for every item j, non-negative weights
//!   w (w_j = 0) minimising ½‖x_j − X w‖² + λ₁‖w‖₁ + ½λ₂‖w‖², with λ₁ = n_users·α·l1_ratio and
//!   λ₂ = n_users·α·(1 − l1_ratio) — scikit-learn's ElasticNet objective times n_users, so α
//!   and l1_ratio mean what they mean there. Solved by coordinate descent on the residual over
//!   the items that co-occur with j more than λ₁ (no other weight can leave zero), with an
//!   active set; the k largest weights of each item are kept.
//!
//! Both read only positive interaction weights: a zero or negative value (a dislike) is not a
//! step of the walk nor a target of the regression.

use crate::engine::format::{In, Out};
use crate::engine::interactions::{Csr, Interactions};
use crate::engine::knn::{item_rows, Neighbors};
use crate::engine::model::{Model, Request, Scored};
use crate::engine::neural::DeviceChoice;
use crate::engine::params::Params;
use crate::engine::recommender::{Recommender, Trainer};
use crate::engine::topk::top_k;
use crate::engine::{Progress, Result};

#[derive(Clone, Debug, PartialEq)]
pub struct Rp3Params {
    pub alpha: f64,
    pub beta: f64,
    pub k: usize,
    /// Rows of W scaled to sum to one (Dacrema's `normalize_similarity`).
    pub normalize: bool,
}

impl Rp3Params {
    pub fn from_params(p: &mut Params) -> Result<Self> {
        Ok(Rp3Params {
            alpha: p.float("alpha", 0.8, 0.0, 10.0)?,
            beta: p.float("beta", 0.6, 0.0, 10.0)?,
            k: p.int("k", 400, 1, 10_000)? as usize,
            normalize: p.choice("normalize", "true", &["true", "false"])? == "true",
        })
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct SlimParams {
    pub alpha: f64,
    pub l1_ratio: f64,
    pub k: usize,
    pub max_iter: usize,
    pub tol: f64,
}

impl SlimParams {
    pub fn from_params(p: &mut Params) -> Result<Self> {
        Ok(SlimParams {
            alpha: p.float("alpha", 0.1, 1e-9, 1e6)?,
            l1_ratio: p.float("l1_ratio", 0.01, 0.0, 1.0)?,
            k: p.int("k", 100, 1, 10_000)? as usize,
            max_iter: p.int("max_iter", 100, 1, 10_000)? as usize,
            tol: p.float("tol", 1e-4, 0.0, 1.0)?,
        })
    }
}

/// A trained rp3beta or slim model: its neighbour table.
#[derive(Clone, Debug, PartialEq)]
pub struct ItemGraph {
    pub algorithm: &'static str,
    pub neighbors: Neighbors,
}

impl ItemGraph {
    pub fn load(algorithm: &'static str, r: &In, n_items: usize) -> Result<ItemGraph> {
        Ok(ItemGraph { algorithm, neighbors: r.neighbors("neighbors", n_items)? })
    }
}

/// The interactions with only their positive weights, by user and by item.
fn positive(data: &Interactions) -> (Csr, Csr) {
    let by_user = data.matrix.filtered(|v| v > 0.0);
    let by_item = by_user.transpose();
    (by_user, by_item)
}

/// Per-worker accumulator over the items reached from the current item.
struct Dense {
    acc: Vec<f64>,
    touched: Vec<u32>,
}

impl Dense {
    fn new(n: usize) -> Dense {
        Dense { acc: vec![0.0; n], touched: Vec::new() }
    }

    fn add(&mut self, j: u32, v: f64) {
        if self.acc[j as usize] == 0.0 {
            self.touched.push(j);
        }
        self.acc[j as usize] += v;
    }

    /// The entries accumulated, clearing the accumulator.
    fn drain(&mut self) -> Vec<(u32, f64)> {
        let out = self.touched.iter().map(|&j| (j, self.acc[j as usize])).collect();
        self.touched.iter().for_each(|&j| self.acc[j as usize] = 0.0);
        self.touched.clear();
        out
    }
}

/// Rows sorted by score descending, then index ascending (as every neighbour table is).
fn sorted(mut row: Vec<(u32, f32)>) -> Vec<(u32, f32)> {
    row.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    row
}

pub fn fit_rp3(data: &Interactions, p: &Rp3Params, pool: &rayon::ThreadPool, progress: &mut dyn Progress) -> Result<Neighbors> {
    let n = data.n_items();
    let (mut by_user, mut by_item) = positive(data);
    // P(j|u)^α: the user's weights normalised to sum to one; P(u|i)^α: uniform over the item's users.
    for u in 0..by_user.n_rows() {
        let (a, z) = (by_user.indptr[u], by_user.indptr[u + 1]);
        let total: f64 = by_user.values[a..z].iter().map(|&v| v as f64).sum();
        by_user.values[a..z].iter_mut().for_each(|v| *v = ((*v as f64 / total).powf(p.alpha)) as f32);
    }
    for i in 0..n {
        let (a, z) = (by_item.indptr[i], by_item.indptr[i + 1]);
        let step = (1.0 / (z - a).max(1) as f64).powf(p.alpha) as f32;
        by_item.values[a..z].iter_mut().for_each(|v| *v = step);
    }
    let damp: Vec<f64> = (0..n)
        .map(|j| {
            let pop = (by_item.indptr[j + 1] - by_item.indptr[j]) as f64;
            if pop > 0.0 { pop.powf(-p.beta) } else { 0.0 }
        })
        .collect();
    item_rows(n, pool, progress, || Dense::new(n), |d, i| {
        let (users, piu) = by_item.row(i);
        for (&u, &a) in users.iter().zip(piu) {
            let (items, puj) = by_user.row(u as usize);
            for (&j, &b) in items.iter().zip(puj) {
                d.add(j, a as f64 * b as f64);
            }
        }
        let walk = d.drain().into_iter().filter(|&(j, _)| j as usize != i).map(|(j, s)| (j, (s * damp[j as usize]) as f32));
        let mut row = top_k(walk.filter(|&(_, s)| s > 0.0 && s.is_finite()), p.k);
        if p.normalize {
            let total: f32 = row.iter().map(|r| r.1).sum();
            if total > 0.0 {
                row.iter_mut().for_each(|r| r.1 /= total);
            }
        }
        row
    })
}

/// Per-worker state of the SLIM regressions: the residual over users and the co-occurrence
/// accumulator.
struct Regression {
    residual: Vec<f64>,
    gram: Dense,
}

pub fn fit_slim(data: &Interactions, p: &SlimParams, pool: &rayon::ThreadPool, progress: &mut dyn Progress) -> Result<Neighbors> {
    let n = data.n_items();
    let n_users = data.n_users();
    let (by_user, by_item) = positive(data);
    let l1 = n_users as f64 * p.alpha * p.l1_ratio;
    let l2 = n_users as f64 * p.alpha * (1.0 - p.l1_ratio);
    let sq: Vec<f64> = (0..n).map(|k| by_item.row(k).1.iter().map(|&v| v as f64 * v as f64).sum()).collect();
    // Rows here are the targets j (the weights that reconstruct j); transposed below.
    let columns = item_rows(n, pool, progress, || Regression { residual: vec![0.0; n_users], gram: Dense::new(n) }, |st, j| {
        let (users, y) = by_item.row(j);
        for (&u, &yu) in users.iter().zip(y) {
            let (items, x) = by_user.row(u as usize);
            for (&k, &xk) in items.iter().zip(x) {
                st.gram.add(k, xk as f64 * yu as f64);
            }
            st.residual[u as usize] = yu as f64;
        }
        // Non-negative weights with a non-negative X: c_k ≤ Gram[k][j], so a weight can leave
        // zero only where the co-occurrence exceeds λ₁.
        let candidates: Vec<u32> = st.gram.drain().into_iter().filter(|&(k, g)| k as usize != j && g > l1).map(|(k, _)| k).collect();
        let mut w = vec![0f64; candidates.len()];
        // One coordinate step on candidate c; the change of its weight.
        let step = |c: usize, w: &mut [f64], r: &mut [f64]| -> f64 {
            let k = candidates[c] as usize;
            let (us, xs) = by_item.row(k);
            let rho = us.iter().zip(xs).map(|(&u, &x)| x as f64 * r[u as usize]).sum::<f64>() + sq[k] * w[c];
            let new = ((rho - l1).max(0.0)) / (sq[k] + l2);
            let delta = new - w[c];
            if delta != 0.0 {
                us.iter().zip(xs).for_each(|(&u, &x)| r[u as usize] -= delta * x as f64);
                w[c] = new;
            }
            delta
        };
        let mut iterations = 0;
        loop {
            // A full pass over every candidate, then passes over the non-zero ones until they
            // settle; done when a full pass changes nothing beyond the tolerance.
            let mut full_change = 0f64;
            for c in 0..candidates.len() {
                full_change = full_change.max(step(c, &mut w, &mut st.residual).abs());
            }
            iterations += 1;
            let top = w.iter().copied().fold(0.0, f64::max);
            if full_change <= p.tol * top.max(1e-12) || iterations >= p.max_iter {
                break;
            }
            let active: Vec<usize> = (0..candidates.len()).filter(|&c| w[c] > 0.0).collect();
            while iterations < p.max_iter {
                let mut change = 0f64;
                for &c in &active {
                    change = change.max(step(c, &mut w, &mut st.residual).abs());
                }
                iterations += 1;
                if change <= p.tol * w.iter().copied().fold(0.0, f64::max).max(1e-12) {
                    break;
                }
            }
        }
        // Back to a zero residual for the next target: only the target's users and the users
        // of items with a weight were changed.
        users.iter().for_each(|&u| st.residual[u as usize] = 0.0);
        for (c, &k) in candidates.iter().enumerate() {
            if w[c] != 0.0 {
                by_item.row(k as usize).0.iter().for_each(|&u| st.residual[u as usize] = 0.0);
            }
        }
        top_k(candidates.iter().zip(&w).filter(|(_, &v)| v > 0.0).map(|(&k, &v)| (k, v as f32)), p.k)
    })?;
    Ok(transpose(&columns, n))
}

/// The table with rows and columns swapped, rows sorted.
fn transpose(nb: &Neighbors, n: usize) -> Neighbors {
    let mut rows: Vec<Vec<(u32, f32)>> = vec![Vec::new(); n];
    for j in 0..n {
        let (idx, s) = nb.row(j);
        for (&i, &v) in idx.iter().zip(s) {
            rows[i as usize].push((j as u32, v));
        }
    }
    let mut out = Neighbors { indptr: Vec::with_capacity(n + 1), indices: Vec::new(), scores: Vec::new() };
    out.indptr.push(0);
    for row in rows {
        for (j, s) in sorted(row) {
            out.indices.push(j);
            out.scores.push(s);
        }
        out.indptr.push(out.indices.len());
    }
    out
}

/// Bytes beyond the interactions: the positive copy and its transpose, the per-worker
/// accumulators, the table.
fn graph_memory(data: &Interactions, k: usize, per_worker: usize, threads: usize) -> usize {
    let n = data.n_items();
    data.nnz() * 24 + threads * per_worker + n * k.min(n) * 16
}

impl Trainer for Rp3Params {
    fn memory_estimate(&self, data: &Interactions, threads: usize) -> usize {
        graph_memory(data, self.k, data.n_items() * 12, threads)
    }

    fn fit(&self, data: &Interactions, _: DeviceChoice, pool: &rayon::ThreadPool, progress: &mut dyn Progress) -> Result<Box<dyn Recommender>> {
        Ok(Box::new(ItemGraph { algorithm: "rp3beta", neighbors: fit_rp3(data, self, pool, progress)? }))
    }
}

impl Trainer for SlimParams {
    fn memory_estimate(&self, data: &Interactions, threads: usize) -> usize {
        graph_memory(data, self.k, data.n_items() * 28 + data.n_users() * 8, threads)
    }

    fn fit(&self, data: &Interactions, _: DeviceChoice, pool: &rayon::ThreadPool, progress: &mut dyn Progress) -> Result<Box<dyn Recommender>> {
        Ok(Box::new(ItemGraph { algorithm: "slim", neighbors: fit_slim(data, self, pool, progress)? }))
    }
}

/// Scored, explained and listed as item_knn's neighbour table is (its `Recommender`); only the
/// name differs.
impl Recommender for ItemGraph {
    fn name(&self) -> &'static str {
        self.algorithm
    }

    fn score(&self, m: &Model, req: &Request, history: &[(u32, f32)]) -> Result<Option<Scored>> {
        self.neighbors.score(m, req, history)
    }

    fn contributions(&self, m: &Model, req: &Request, history: &[(u32, f32)], i: usize) -> Result<Vec<(u32, f32)>> {
        Recommender::contributions(&self.neighbors, m, req, history, i)
    }

    fn similar_items(&self, m: &Model, item: Option<usize>, n: usize) -> Result<Vec<(u32, f32)>> {
        self.neighbors.similar_items(m, item, n)
    }

    fn item_neighbors(&self) -> Option<&Neighbors> {
        Some(&self.neighbors)
    }

    fn store<'a>(&'a self, out: &mut Out<'_, 'a>) -> Result<()> {
        self.neighbors.store(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::NoProgress;

    fn pool() -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap()
    }

    // users 1..3; items 10, 20, 30. Item 10: {1,2}, item 20: {1,2,3}, item 30: {3}
    fn data() -> Interactions {
        Interactions::from_triplets(&[1, 1, 2, 2, 3, 3], &[10, 20, 10, 20, 20, 30], &[1.0; 6]).unwrap()
    }

    #[test]
    fn rp3beta_hand_computed() {
        let p = Rp3Params { alpha: 1.0, beta: 0.5, k: 10, normalize: false };
        let nb = fit_rp3(&data(), &p, &pool(), &mut NoProgress).unwrap();
        // From item 10 (users 1, 2, each 1/2): user 1 and 2 each go to 20 with 1/2:
        // W[10][20] = 2 · ½ · ½ / sqrt(3); nothing else but the diagonal (zeroed).
        assert_eq!(nb.row(0).0, &[1]);
        assert!((nb.row(0).1[0] - 0.5 / 3f32.sqrt()).abs() < 1e-6);
        // From item 20 (3 users, 1/3 each): to 10 via users 1, 2 (½ each): (2/6)/sqrt(2);
        // to 30 via user 3 (½): (1/6)/1.
        let (idx, s) = nb.row(1);
        assert_eq!(idx, &[0, 2]);
        assert!((s[0] - (1.0 / 3.0) / 2f32.sqrt()).abs() < 1e-6);
        assert!((s[1] - 1.0 / 6.0).abs() < 1e-6);
        // normalize: rows sum to one; k = 1 keeps the best
        let nb = fit_rp3(&data(), &Rp3Params { k: 1, normalize: true, ..p }, &pool(), &mut NoProgress).unwrap();
        assert_eq!(nb.row(1).0, &[0]);
        assert!((nb.row(1).1[0] - 1.0).abs() < 1e-6);
    }

    /// Brute-force objective of one SLIM column, for checking the coordinate descent.
    fn objective(x: &[Vec<f64>], j: usize, w: &[f64], l1: f64, l2: f64) -> f64 {
        let mut loss = 0.0;
        for row in x {
            let pred: f64 = row.iter().zip(w).map(|(a, b)| a * b).sum();
            loss += 0.5 * (row[j] - pred).powi(2);
        }
        loss + l1 * w.iter().sum::<f64>() + 0.5 * l2 * w.iter().map(|v| v * v).sum::<f64>()
    }

    #[test]
    fn slim_is_optimal_non_negative_and_zero_diagonal() {
        let d = crate::engine::synthetic::generate(&crate::engine::synthetic::SyntheticParams { users: 60, items: 12, interactions: 300, seed: 4 }).unwrap();
        let users: Vec<i64> = d.iter().map(|r| r.user_id).collect();
        let items: Vec<i64> = d.iter().map(|r| r.item_id).collect();
        let m = Interactions::from_triplets(&users, &items, &vec![1.0; users.len()]).unwrap();
        let p = SlimParams { alpha: 0.02, l1_ratio: 0.1, k: 100, max_iter: 1000, tol: 1e-10 };
        let nb = fit_slim(&m, &p, &pool(), &mut NoProgress).unwrap();
        let n = m.n_items();
        let mut x = vec![vec![0f64; n]; m.n_users()];
        for (u, row) in x.iter_mut().enumerate() {
            m.matrix.row(u).0.iter().for_each(|&i| row[i as usize] = 1.0);
        }
        let nu = m.n_users() as f64;
        let (l1, l2) = (nu * p.alpha * p.l1_ratio, nu * p.alpha * (1.0 - p.l1_ratio));
        let mut nonzero = 0;
        for j in 0..n {
            let mut w = vec![0f64; n];
            for i in 0..n {
                let (idx, s) = nb.row(i);
                assert!(!idx.contains(&(i as u32)), "diagonal");
                assert!(s.iter().all(|&v| v > 0.0));
                if let Some(p) = idx.iter().position(|&x| x as usize == j) {
                    w[i] = s[p] as f64;
                }
            }
            nonzero += w.iter().filter(|&&v| v > 0.0).count();
            // No single coordinate move (either way, staying non-negative) lowers the objective.
            let base = objective(&x, j, &w, l1, l2);
            for i in (0..n).filter(|&i| i != j) {
                for delta in [1e-3, -1e-3] {
                    let mut v = w.clone();
                    v[i] = (v[i] + delta).max(0.0);
                    assert!(objective(&x, j, &v, l1, l2) >= base - 1e-7, "item {j}: moving w[{i}] by {delta} lowers the objective");
                }
            }
        }
        assert!(nonzero > n, "the test data gives weights");
        // parallel equals serial
        let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        assert_eq!(nb, fit_slim(&m, &p, &one, &mut NoProgress).unwrap());
    }

    #[test]
    fn negative_weights_take_no_part() {
        let d = Interactions::from_triplets(&[1, 1, 2, 2, 3, 3], &[10, 20, 10, 20, 20, 30], &[1.0, 1.0, 1.0, 1.0, 1.0, -1.0]).unwrap();
        let p = Rp3Params { alpha: 1.0, beta: 0.5, k: 10, normalize: false };
        let nb = fit_rp3(&d, &p, &pool(), &mut NoProgress).unwrap();
        assert!(nb.row(2).0.is_empty() && !nb.row(1).0.contains(&2));
    }
}
