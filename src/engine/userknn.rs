//! User-based nearest neighbours. A user's neighbours are the k training users most similar to
//! their history (cosine, jaccard or pearson over co-interacted items); an item's score is
//! Σ over neighbours of similarity × the neighbour's weight for the item. Serving computes the
//! neighbours from the live history, so new behaviour and new users count at once; training runs
//! the same computation for every known user to fill `recsys.user_neighbors`.

use crate::engine::format::{check_ids, corrupt, In, Out};
use crate::engine::interactions::{index_of, Csr, Interactions};
use crate::engine::knn::{item_rows, NeighborLists, Neighbors};
use crate::engine::model::{Model, Request, Scored};
use crate::engine::neural::DeviceChoice;
use crate::engine::params::Params;
use crate::engine::recommender::{Recommender, Trainer};
use crate::engine::topk::top_k;
use crate::engine::{Progress, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserSimilarity {
    Cosine,
    Jaccard,
    Pearson,
}

pub const USER_SIMILARITIES: &[&str] = &["cosine", "jaccard", "pearson"];

#[derive(Clone, Debug, PartialEq)]
pub struct UserKnnParams {
    pub k: usize,
    pub similarity: UserSimilarity,
    pub shrink: f32,
    pub min_support: usize,
}

impl UserKnnParams {
    pub fn from_params(p: &mut Params) -> Result<Self> {
        let similarity = match p.choice("similarity", "cosine", USER_SIMILARITIES)? {
            "jaccard" => UserSimilarity::Jaccard,
            "pearson" => UserSimilarity::Pearson,
            _ => UserSimilarity::Cosine,
        };
        Ok(UserKnnParams {
            k: p.int("k", 50, 1, 10_000)? as usize,
            similarity,
            shrink: p.float("shrink", 0.0, 0.0, 1e9)? as f32,
            min_support: p.int("min_support", 1, 1, 1_000_000)? as usize,
        })
    }
}

pub fn memory_estimate(n_users: usize, nnz: usize, p: &UserKnnParams, threads: usize) -> usize {
    nnz * 24 + threads * n_users * 48 + n_users * p.k.min(n_users) * 8
}

#[derive(Clone, Debug, PartialEq)]
pub struct UserKnn {
    pub params: UserKnnParams,
    /// Training users, ascending; row r of `by_user` is `user_ids[r]`.
    pub user_ids: Vec<i64>,
    pub by_user: Csr,
    /// Derived: the transpose, and each user's norm (cosine) or item count (jaccard).
    pub by_item: Csr,
    pub norms: Vec<f64>,
    /// Top-k neighbours of every training user (rows = users).
    pub neighbors: Neighbors,
}

/// Per-thread accumulators over the training users that share items with a history.
pub struct Scratch {
    dot: Vec<f64>,
    sum_h: Vec<f64>,
    sum_v: Vec<f64>,
    sq_h: Vec<f64>,
    sq_v: Vec<f64>,
    count: Vec<u32>,
    touched: Vec<u32>,
}

impl Scratch {
    pub fn new(n_users: usize) -> Scratch {
        Scratch {
            dot: vec![0.0; n_users],
            sum_h: vec![0.0; n_users],
            sum_v: vec![0.0; n_users],
            sq_h: vec![0.0; n_users],
            sq_v: vec![0.0; n_users],
            count: vec![0; n_users],
            touched: Vec::new(),
        }
    }
}

impl UserKnn {
    pub fn new(params: UserKnnParams, user_ids: Vec<i64>, by_user: Csr, neighbors: Neighbors) -> UserKnn {
        let by_item = by_user.transpose();
        let norms = (0..by_user.n_rows())
            .map(|u| {
                let (_, v) = by_user.row(u);
                match params.similarity {
                    UserSimilarity::Jaccard => v.len() as f64,
                    _ => v.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt(),
                }
            })
            .collect();
        UserKnn { params, user_ids, by_user, by_item, norms, neighbors }
    }

    /// The k training users most similar to `history` (item index, weight), excluding `exclude`.
    pub fn similar(&self, history: &[(u32, f32)], exclude: Option<u32>, s: &mut Scratch) -> Vec<(u32, f32)> {
        let pearson = self.params.similarity == UserSimilarity::Pearson;
        for &(j, w) in history {
            let (users, x) = self.by_item.row(j as usize);
            for (&v, &xv) in users.iter().zip(x) {
                let v = v as usize;
                if s.count[v] == 0 {
                    s.touched.push(v as u32);
                }
                s.count[v] += 1;
                let (w, xv) = (w as f64, xv as f64);
                s.dot[v] += w * xv;
                if pearson {
                    s.sum_h[v] += w;
                    s.sum_v[v] += xv;
                    s.sq_h[v] += w * w;
                    s.sq_v[v] += xv * xv;
                }
            }
        }
        let norm_h = history.iter().map(|&(_, w)| w as f64 * w as f64).sum::<f64>().sqrt();
        let shrink = self.params.shrink as f64;
        let sims = s.touched.iter().filter(|&&v| Some(v) != exclude).filter_map(|&v| {
            let v = v as usize;
            let n = s.count[v] as f64;
            if (s.count[v] as usize) < self.params.min_support {
                return None;
            }
            let sim = match self.params.similarity {
                UserSimilarity::Cosine => s.dot[v] / (norm_h * self.norms[v] + shrink),
                UserSimilarity::Jaccard => n / (history.len() as f64 + self.norms[v] - n + shrink),
                UserSimilarity::Pearson => {
                    let num = s.dot[v] - s.sum_h[v] * s.sum_v[v] / n;
                    let d = ((s.sq_h[v] - s.sum_h[v].powi(2) / n) * (s.sq_v[v] - s.sum_v[v].powi(2) / n)).sqrt();
                    let rho = if d > 0.0 { num / d } else { 0.0 };
                    if shrink > 0.0 { rho * (n - 1.0) / (n - 1.0 + shrink) } else { rho }
                }
            };
            Some((v as u32, sim.min(1.0) as f32))
        });
        let best = top_k(sims.filter(|&(_, x)| x > 0.0 && x.is_finite()), self.params.k);
        for &v in &s.touched {
            let v = v as usize;
            s.dot[v] = 0.0;
            s.sum_h[v] = 0.0;
            s.sum_v[v] = 0.0;
            s.sq_h[v] = 0.0;
            s.sq_v[v] = 0.0;
            s.count[v] = 0;
        }
        s.touched.clear();
        best
    }

    /// Adds Σ_v sim(u, v)·x_vi over the neighbours into `scores`, marking the items reached.
    pub fn score(&self, neighbours: &[(u32, f32)], scores: &mut [f32], reached: &mut [bool]) {
        for &(v, sim) in neighbours {
            let (items, x) = self.by_user.row(v as usize);
            for (&i, &xv) in items.iter().zip(x) {
                scores[i as usize] += sim * xv;
                reached[i as usize] = true;
            }
        }
    }

    /// Item i's score split over the history: each neighbour's sim·x_vi is shared equally among
    /// the history items it has in common with the user. The parts sum to the score.
    pub fn explain(&self, history: &[(u32, f32)], neighbours: &[(u32, f32)], i: u32) -> Vec<(u32, f32)> {
        let mut parts: Vec<(u32, f32)> = history.iter().map(|&(j, _)| (j, 0.0)).collect();
        for &(v, sim) in neighbours {
            let (items, x) = self.by_user.row(v as usize);
            let Ok(p) = items.binary_search(&i) else { continue };
            let shared: Vec<usize> = (0..history.len()).filter(|&h| items.binary_search(&history[h].0).is_ok()).collect();
            for &h in &shared {
                parts[h].1 += sim * x[p] / shared.len() as f32;
            }
        }
        parts.retain(|p| p.1 != 0.0);
        parts
    }
}

pub fn fit(data: &Interactions, params: &UserKnnParams, pool: &rayon::ThreadPool, progress: &mut dyn Progress) -> Result<UserKnn> {
    let empty = Neighbors { indptr: vec![0; data.n_users() + 1], indices: Vec::new(), scores: Vec::new() };
    let mut model = UserKnn::new(params.clone(), data.user_ids.clone(), data.matrix.clone(), empty);
    let n = data.n_users();
    // Every trained user's neighbours, by the same parallel, cancellable pass as item_knn's.
    let neighbors = item_rows(n, pool, progress, || Scratch::new(n), |s, u| {
        let (cols, vals) = model.by_user.row(u);
        let h: Vec<(u32, f32)> = cols.iter().copied().zip(vals.iter().copied()).collect();
        model.similar(&h, Some(u as u32), s)
    })?;
    model.neighbors = neighbors;
    Ok(model)
}

pub fn similarity_from_code(code: u32) -> Option<UserSimilarity> {
    [UserSimilarity::Cosine, UserSimilarity::Jaccard, UserSimilarity::Pearson].get(code as usize).copied()
}

impl UserKnnParams {

    pub fn decode(v: &[f32]) -> Option<UserKnnParams> {
        let [k, code, shrink, min_support] = v else { return None };
        Some(UserKnnParams {
            k: *k as usize,
            similarity: similarity_from_code(*code as u32)?,
            shrink: *shrink,
            min_support: *min_support as usize,
        })
    }
}

impl UserKnn {
    pub fn load(r: &In, n_items: usize) -> Result<UserKnn> {
        let name = r.str("similarity")?;
        let similarity = USER_SIMILARITIES
            .iter()
            .position(|s| *s == name)
            .and_then(|c| similarity_from_code(c as u32))
            .ok_or_else(|| corrupt("user_knn similarity"))?;
        let params = UserKnnParams {
            k: r.usize("k")?,
            similarity,
            shrink: r.f32("shrink")?,
            min_support: r.usize("min_support")?,
        };
        let user_ids = r.i64s("user_ids")?;
        check_ids(&user_ids, "user ids")?;
        let by_user = r.csr("history", user_ids.len(), n_items)?;
        let neighbors = r.neighbors("user_neighbors", user_ids.len())?;
        Ok(UserKnn::new(params, user_ids, by_user, neighbors))
    }
}

impl Trainer for UserKnnParams {
    /// Pearson correlates ratings: over implicit weights (all 1) every user has zero variance
    /// and the model would have no neighbours.
    fn rating_column_needed(&self) -> Option<&'static str> {
        (self.similarity == UserSimilarity::Pearson).then_some("with similarity \"pearson\" correlates ratings")
    }

    fn memory_estimate(&self, data: &Interactions, threads: usize) -> usize {
        memory_estimate(data.n_users(), data.nnz(), self, threads)
    }

    fn fit(&self, data: &Interactions, _: DeviceChoice, pool: &rayon::ThreadPool, progress: &mut dyn Progress) -> Result<Box<dyn Recommender>> {
        Ok(Box::new(fit(data, self, pool, progress)?))
    }
}

impl UserKnn {
    /// The user's neighbours from their live history (a trained user is not their own
    /// neighbour).
    fn neighbours_of(&self, user_id: Option<i64>, history: &[(u32, f32)]) -> Vec<(u32, f32)> {
        let me = user_id.and_then(|u| index_of(&self.user_ids, u));
        self.similar(history, me, &mut Scratch::new(self.user_ids.len()))
    }
}

impl Recommender for UserKnn {
    fn name(&self) -> &'static str {
        "user_knn"
    }

    fn score(&self, m: &Model, req: &Request, history: &[(u32, f32)]) -> Result<Option<Scored>> {
        let neighbours = self.neighbours_of(req.user_id, history);
        let (mut scores, mut reached) = (vec![0f32; m.n_items()], vec![false; m.n_items()]);
        UserKnn::score(self, &neighbours, &mut scores, &mut reached);
        Ok(Some(Scored::reached(scores, reached)))
    }

    fn contributions(&self, _: &Model, req: &Request, history: &[(u32, f32)], i: usize) -> Result<Vec<(u32, f32)>> {
        Ok(self.explain(history, &self.neighbours_of(req.user_id, history), i as u32))
    }

    fn similar_users(&self, user_id: i64, n: usize) -> Result<Vec<(i64, f32)>> {
        Ok(match index_of(&self.user_ids, user_id) {
            None => Vec::new(),
            Some(r) => {
                let (idx, s) = self.neighbors.row(r as usize);
                idx.iter().zip(s).take(n).map(|(&v, &x)| (self.user_ids[v as usize], x)).collect()
            }
        })
    }

    fn user_neighbors(&self) -> Option<NeighborLists> {
        Some(self.neighbors.with_ids(&self.user_ids))
    }

    /// Its part of the model file: `user_ids`, the training histories `history.*` (CSR, users ×
    /// items) and `user_neighbors.*`; state: k, similarity, shrink, min_support.
    fn store<'a>(&'a self, out: &mut Out<'_, 'a>) -> Result<()> {
        out.i64s("user_ids", &self.user_ids);
        out.csr("history", &self.by_user);
        out.neighbors("user_neighbors", &self.neighbors);
        out.set("k", self.params.k);
        out.set(
            "similarity",
            USER_SIMILARITIES[self.params.similarity as usize],
        );
        out.set("shrink", self.params.shrink);
        out.set("min_support", self.params.min_support);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::NoProgress;

    #[test]
    fn neighbours_and_scores_by_hand() {
        // users 1: {10, 20}, 2: {10, 20, 30}, 3: {40}
        let data = Interactions::from_triplets(&[1, 1, 2, 2, 2, 3], &[10, 20, 10, 20, 30, 40], &[1.0; 6]).unwrap();
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        let p = UserKnnParams { k: 5, similarity: UserSimilarity::Cosine, shrink: 0.0, min_support: 1 };
        let m = fit(&data, &p, &pool, &mut NoProgress).unwrap();
        // cos(1, 2) = 2 / (sqrt2 * sqrt3)
        let (idx, s) = m.neighbors.row(0);
        assert_eq!(idx, &[1]);
        assert!((s[0] - 2.0 / 6f32.sqrt()).abs() < 1e-6);
        assert!(m.neighbors.row(2).0.is_empty());
        // a live history {10} reaches users 1 and 2; item 30 gets sim(h, 2) · 1
        let mut sc = Scratch::new(3);
        let nb = m.similar(&[(0, 1.0)], None, &mut sc);
        let (mut scores, mut reached) = (vec![0f32; 4], vec![false; 4]);
        m.score(&nb, &mut scores, &mut reached);
        assert!((scores[2] - 1.0 / 3f32.sqrt()).abs() < 1e-6);
        assert!(!reached[3]);
        let parts = m.explain(&[(0, 1.0)], &nb, 2);
        assert_eq!(parts.len(), 1);
        assert!((parts[0].1 - scores[2]).abs() < 1e-6);
    }
}
