//! Item-based nearest neighbours: the top-k most similar items of every item, computed from
//! co-occurrence in user histories (sparse, one pass per item, parallel over items in chunks).

use rayon::prelude::*;

use crate::engine::interactions::{Csr, Interactions};
use crate::engine::params::Params;
use crate::engine::topk::top_k;
use crate::engine::{Progress, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Similarity {
    Cosine,
    Jaccard,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ItemKnnParams {
    pub k: usize,
    pub similarity: Similarity,
    /// Added to the denominator: damps similarities supported by few co-occurrences.
    pub shrink: f32,
}

impl ItemKnnParams {
    pub fn from_params(p: &mut Params) -> Result<Self> {
        let k = p.int("k", 100, 1, 10_000)? as usize;
        let similarity = match p.choice("similarity", "cosine", &["cosine", "jaccard"])? {
            "jaccard" => Similarity::Jaccard,
            _ => Similarity::Cosine,
        };
        let shrink = p.float("shrink", 0.0, 0.0, 1e9)? as f32;
        Ok(ItemKnnParams { k, similarity, shrink })
    }
}

/// Top-k neighbours per item as CSR rows, each sorted by score desc then index asc.
#[derive(Clone, Debug, PartialEq)]
pub struct Neighbors {
    pub indptr: Vec<usize>,
    pub indices: Vec<u32>,
    pub scores: Vec<f32>,
}

impl Neighbors {
    pub fn row(&self, item: usize) -> (&[u32], &[f32]) {
        let (a, b) = (self.indptr[item], self.indptr[item + 1]);
        (&self.indices[a..b], &self.scores[a..b])
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

/// Bytes the fit needs beyond the interactions: the transpose, per-thread accumulators, output.
pub fn memory_estimate(n_items: usize, nnz: usize, k: usize, threads: usize) -> usize {
    nnz * 8 + threads * n_items * 16 + n_items * k.min(n_items) * 8
}

const CHUNKS: usize = 50;

pub fn fit(data: &Interactions, params: &ItemKnnParams, pool: &rayon::ThreadPool, progress: &mut dyn Progress) -> Result<Neighbors> {
    let by_user = &data.matrix;
    let by_item = by_user.transpose();
    let n = data.n_items();
    let norms: Vec<f64> = (0..n)
        .map(|i| {
            let (_, vals) = by_item.row(i);
            match params.similarity {
                Similarity::Cosine => vals.iter().map(|&v| v as f64 * v as f64).sum::<f64>().sqrt(),
                Similarity::Jaccard => vals.len() as f64,
            }
        })
        .collect();

    let mut indptr = Vec::with_capacity(n + 1);
    indptr.push(0);
    let mut indices = Vec::new();
    let mut scores = Vec::new();
    let chunk = n.div_ceil(CHUNKS).max(64);
    let mut start = 0;
    while start < n {
        let end = (start + chunk).min(n);
        let rows: Vec<Vec<(u32, f32)>> = pool.install(|| {
            (start..end)
                .into_par_iter()
                .map_init(
                    || (vec![0f32; n], vec![false; n], Vec::<u32>::new()),
                    |(acc, mark, touched), i| neighbours_of(i, by_user, &by_item, &norms, params, acc, mark, touched),
                )
                .collect()
        });
        for row in rows {
            for (j, s) in row {
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

#[allow(clippy::too_many_arguments)]
fn neighbours_of(
    i: usize,
    by_user: &Csr,
    by_item: &Csr,
    norms: &[f64],
    params: &ItemKnnParams,
    acc: &mut [f32],
    mark: &mut [bool],
    touched: &mut Vec<u32>,
) -> Vec<(u32, f32)> {
    let (users, weights) = by_item.row(i);
    for (&u, &wi) in users.iter().zip(weights) {
        let (items, wj) = by_user.row(u as usize);
        for (&j, &w) in items.iter().zip(wj) {
            if !mark[j as usize] {
                mark[j as usize] = true;
                touched.push(j);
            }
            acc[j as usize] += match params.similarity {
                Similarity::Cosine => wi * w,
                Similarity::Jaccard => 1.0,
            };
        }
    }
    let sims = touched.iter().filter(|&&j| j as usize != i).map(|&j| {
        let dot = acc[j as usize] as f64;
        let denom = match params.similarity {
            Similarity::Cosine => norms[i] * norms[j as usize],
            Similarity::Jaccard => norms[i] + norms[j as usize] - dot,
        } + params.shrink as f64;
        // Rounding can push a cosine of parallel vectors just past 1.
        (j, if denom > 0.0 { (dot / denom).min(1.0) as f32 } else { 0.0 })
    });
    let best = top_k(sims.filter(|&(_, s)| s > 0.0 && s.is_finite()), params.k);
    for &j in touched.iter() {
        acc[j as usize] = 0.0;
        mark[j as usize] = false;
    }
    touched.clear();
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::NoProgress;

    fn pool() -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap()
    }

    fn data() -> Interactions {
        // users 1..3; items 10, 20, 30. Item 10: {1,2}, item 20: {1,2,3}, item 30: {3}
        Interactions::from_triplets(&[1, 1, 2, 2, 3, 3], &[10, 20, 10, 20, 20, 30], &[1.0; 6]).unwrap()
    }

    #[test]
    fn cosine_neighbours_hand_computed() {
        let p = ItemKnnParams { k: 10, similarity: Similarity::Cosine, shrink: 0.0 };
        let nb = fit(&data(), &p, &pool(), &mut NoProgress).unwrap();
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
        let p = ItemKnnParams { k: 1, similarity: Similarity::Jaccard, shrink: 0.0 };
        let nb = fit(&data(), &p, &pool(), &mut NoProgress).unwrap();
        // J(20,10) = 2/3, J(20,30) = 1/3; k = 1 keeps the best
        assert_eq!(nb.row(1).0, &[0]);
        assert!((nb.row(1).1[0] - 2.0 / 3.0).abs() < 1e-6);
        let p = ItemKnnParams { k: 5, similarity: Similarity::Jaccard, shrink: 1.0 };
        let nb = fit(&data(), &p, &pool(), &mut NoProgress).unwrap();
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
        let p = ItemKnnParams { k: 20, similarity: Similarity::Cosine, shrink: 0.0 };
        let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        assert_eq!(fit(&m, &p, &one, &mut NoProgress).unwrap(), fit(&m, &p, &pool(), &mut NoProgress).unwrap());
    }
}
