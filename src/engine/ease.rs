//! EASE (Steck 2019), a linear item-item autoencoder with a closed form:
//! P = (XᵀX + λI)⁻¹, B = I − P·diag(1/diag(P)), i.e. B[i][j] = −P[i][j] / P[j][j], diag(B) = 0.
//! A user's score for item j is Σ_i x_ui·B[i][j] over their history. The Gram matrix is built
//! sparse (one row per item, in parallel); the inverse is our own parallel Cholesky in f64.

use rayon::prelude::*;

use crate::engine::interactions::Interactions;
use crate::engine::knn::Neighbors;
use crate::engine::linalg::invert_spd;
use crate::engine::memory::filled;
use crate::engine::params::Params;
use crate::engine::topk::top_k;
use crate::engine::{ErrorKind, Progress, RecsysError, Result};

#[derive(Clone, Debug, PartialEq)]
pub struct EaseParams {
    pub lambda: f64,
    /// How many of each item's largest weights go to `recsys.item_neighbors`.
    pub neighbors: usize,
}

impl EaseParams {
    pub fn from_params(p: &mut Params) -> Result<Self> {
        Ok(EaseParams {
            lambda: p.float("lambda", 500.0, 1e-6, 1e12)?,
            neighbors: p.int("neighbors", 100, 1, 10_000)? as usize,
        })
    }
}

/// The dense Gram/inverse (f64), the transposed inverse factor (f64) and B (f32): n² × 20 bytes.
pub fn memory_estimate(n_items: usize) -> usize {
    n_items.saturating_mul(n_items).saturating_mul(20)
}

#[derive(Clone, Debug, PartialEq)]
pub struct Ease {
    /// n × n, row-major: row i holds the weights item i gives every item.
    pub weights: Vec<f32>,
    /// The largest positive weights of each row, for `recsys.item_neighbors` and similar_items.
    pub neighbors: Neighbors,
}

impl Ease {
    pub fn n_items(&self) -> usize {
        self.neighbors.indptr.len() - 1
    }

    pub fn row(&self, i: usize) -> &[f32] {
        let n = self.n_items();
        &self.weights[i * n..(i + 1) * n]
    }

    /// scores[j] += Σ_i w_i B[i][j] over the history.
    pub fn score_history(&self, history: &[(u32, f32)], scores: &mut [f32]) {
        for &(i, w) in history {
            crate::engine::linalg::axpy(w, self.row(i as usize), scores);
        }
    }

    /// Top weights per row, best first (rebuilt after decoding).
    pub fn top_neighbors(weights: &[f32], n: usize, k: usize) -> Neighbors {
        let rows: Vec<Vec<(u32, f32)>> = (0..n)
            .into_par_iter()
            .map(|i| top_k((0..n as u32).map(|j| (j, weights[i * n + j as usize])).filter(|&(j, w)| j as usize != i && w > 0.0), k))
            .collect();
        let mut indptr = Vec::with_capacity(n + 1);
        indptr.push(0);
        let (mut indices, mut scores) = (Vec::new(), Vec::new());
        for row in rows {
            for (j, w) in row {
                indices.push(j);
                scores.push(w);
            }
            indptr.push(indices.len());
        }
        Neighbors { indptr, indices, scores }
    }
}

pub fn fit(data: &Interactions, p: &EaseParams, pool: &rayon::ThreadPool, progress: &mut dyn Progress) -> Result<Ease> {
    let n = data.n_items();
    let by_user = &data.matrix;
    let by_item = by_user.transpose();
    // The dense buffers are reserved with a failure path (ERROR 53200, not an abort).
    // G = XᵀX + λI, one row per item: G[i] = Σ_{u ∋ i} x_ui · X[u].
    let mut g = filled(n * n, 0f64, "EASE's Gram matrix")?;
    let mut scratch = filled(n * n, 0f64, "EASE's inverse factor")?;
    pool.install(|| {
        g.par_chunks_mut(n).enumerate().for_each(|(i, row)| {
            let (users, wi) = by_item.row(i);
            for (&u, &w) in users.iter().zip(wi) {
                let (items, wj) = by_user.row(u as usize);
                for (&j, &v) in items.iter().zip(wj) {
                    row[j as usize] += w as f64 * v as f64;
                }
            }
            row[i] += p.lambda;
        })
    });
    let mut failure: Option<RecsysError> = None;
    let ok = invert_spd(&mut g, n, &mut scratch, pool, &mut |done, total| match progress.step(done, total) {
        Ok(()) => true,
        Err(e) => {
            failure = Some(e);
            false
        }
    });
    if let Some(e) = failure {
        return Err(e);
    }
    if !ok {
        return Err(RecsysError::new(ErrorKind::InvalidParameter, "EASE: XᵀX + λI is not positive definite")
            .with_hint("raise lambda"));
    }
    drop(scratch);
    let diag: Vec<f64> = (0..n).map(|j| g[j * n + j]).collect();
    let mut weights = filled(n * n, 0f32, "EASE's weights")?;
    pool.install(|| {
        weights.par_chunks_mut(n).enumerate().for_each(|(i, row)| {
            for j in 0..n {
                row[j] = if i == j { 0.0 } else { (-g[i * n + j] / diag[j]) as f32 };
            }
        })
    });
    drop(g);
    let neighbors = pool.install(|| Ease::top_neighbors(&weights, n, p.neighbors));
    Ok(Ease { weights, neighbors })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::NoProgress;

    #[test]
    fn closed_form_on_a_tiny_matrix() {
        // X (3 users × 3 items) = [[1,1,0],[1,0,1],[0,1,1]]: XᵀX = [[2,1,1],[1,2,1],[1,1,2]].
        let data = Interactions::from_triplets(&[1, 1, 2, 2, 3, 3], &[1, 2, 1, 3, 2, 3], &[1.0; 6]).unwrap();
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        let e = fit(&data, &EaseParams { lambda: 1.0, neighbors: 5 }, &pool, &mut NoProgress).unwrap();
        // G + I = 2I + J (J all ones, n = 3): P = (I − J/5)/2, P_ii = 0.4, P_ij = −0.1,
        // so B_ij = −(−0.1)/0.4 = 0.25 off the diagonal.
        for i in 0..3 {
            for j in 0..3 {
                let want = if i == j { 0.0 } else { 0.25 };
                assert!((e.row(i)[j] - want).abs() < 1e-6, "B[{i}][{j}] = {}", e.row(i)[j]);
            }
        }
        let mut scores = vec![0f32; 3];
        e.score_history(&[(0, 1.0), (1, 1.0)], &mut scores);
        assert!((scores[2] - 0.5).abs() < 1e-6);
        assert_eq!(e.neighbors.row(0).0, &[1, 2]);
    }
}
