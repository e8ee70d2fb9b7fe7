//! EASE (Steck 2019), a linear item-item autoencoder with a closed form:
//! P = (XᵀX + λI)⁻¹, B = I − P·diag(1/diag(P)), i.e. B[i][j] = −P[i][j] / P[j][j], diag(B) = 0.
//! A user's score for item j is Σ_i x_ui·B[i][j] over their history. The Gram matrix is built
//! sparse (one row per item, in parallel); the inverse is faer's blocked Cholesky in f64.
//!
//! With `dropout` p > 0 it is DLAE (Steck 2020, "Autoencoders that don't overfit towards the
//! identity"): the closed form of a linear autoencoder trained with input dropout p, which is
//! EASE's least squares with each item's own penalty Λ_j = p/(1−p)·(XᵀX)_jj + λ instead of λ and
//! without the zero-diagonal constraint: B = (XᵀX + Λ)⁻¹XᵀX = I − P·Λ, P = (XᵀX + Λ)⁻¹. An item
//! a user has is never recommended to them, so B's diagonal never reaches an answer; it is
//! stored as 0 like EASE's.

use rayon::prelude::*;

use crate::engine::format::{In, Out};
use crate::engine::interactions::{Csr, Interactions};
use crate::engine::knn::Neighbors;
use crate::engine::linalg::{invert_spd, invert_spd_scratch_len, mirror_lower};
use crate::engine::memory::filled;
use crate::engine::model::{similar_from, Model, Request, Scored};
use crate::engine::neural::DeviceChoice;
use crate::engine::params::Params;
use crate::engine::recommender::{Recommender, Trainer};
use crate::engine::topk::top_k;
use crate::engine::{ErrorKind, Progress, RecsysError, Result};

#[derive(Clone, Debug, PartialEq)]
pub struct EaseParams {
    pub lambda: f64,
    /// DLAE's input dropout p (0: EASE).
    pub dropout: f64,
    /// How many of each item's largest weights go to `recsys.item_neighbors`.
    pub neighbors: usize,
    /// How many weights of each row are kept for serving, largest |weight| first (0: automatic,
    /// see `kept_per_row`; the number of items or more: all, the dense matrix).
    pub keep: usize,
}

impl EaseParams {
    pub fn from_params(p: &mut Params) -> Result<Self> {
        Ok(EaseParams {
            lambda: p.float("lambda", 500.0, 1e-6, 1e12)?,
            dropout: p.float("dropout", 0.0, 0.0, 0.95)?,
            neighbors: p.int("neighbors", 100, 1, 10_000)? as usize,
            keep: p.int("keep", 0, 0, 1_000_000)? as usize,
        })
    }
}

/// Catalogues up to this many items keep the dense B (64 MB at most) when `keep` is automatic.
pub const DENSE_ITEMS: usize = 4096;
/// Above that, the automatic `keep` sizes the pruned B to about this many bytes (8 per weight:
/// column and value), at least `MIN_KEEP` per row: a model each backend decodes stays small.
pub const PRUNED_BYTES: usize = 96 << 20;
pub const MIN_KEEP: usize = 256;

/// Weights kept per row for `n` items: `None` for all of them (dense).
pub fn kept_per_row(keep: usize, n: usize) -> Option<usize> {
    let k = match keep {
        0 if n <= DENSE_ITEMS => return None,
        0 => (PRUNED_BYTES / (8 * n.max(1))).max(MIN_KEEP),
        k => k,
    };
    (k < n).then_some(k)
}

/// B as served: all n × n weights, or each row's largest |weights| (columns ascending).
#[derive(Clone, Debug, PartialEq)]
pub enum Weights {
    /// Row-major: row i holds the weights item i gives every item.
    Dense(Vec<f32>),
    Pruned(Neighbors),
}

/// Which exact form of P = (XᵀX + λI)⁻¹ is cheaper: the primal inverts the items × items Gram
/// matrix; the dual (Woodbury) P = (I − Xᵀ(λI + XXᵀ)⁻¹X)/λ inverts users × users and then forms
/// two dense products, which wins when a catalogue has many more items than users.
fn dual_is_cheaper(users: usize, items: usize) -> bool {
    let (u, n) = (users as f64, items as f64);
    // Flops. Both inverses are in place (potrf, trtri, lauum: n³/3 each). At the ML-100K shape
    // (943 users × 1,682 items) the primal fits in 121 ms against the dual's 164 (criterion,
    // `ease_ml100k_shape`), as these counts say.
    let primal = n * n * n;
    // K⁻¹ (u × u), K⁻¹X, and only the lower half of XᵀK⁻¹X (P is symmetric).
    let dual = u * u * u + 2.0 * u * u * n + u * n * n;
    dual < primal
}

/// Bytes of the dense buffers the fit reserves: the Gram matrix inverted in place (f64, 8 ×
/// items², the primal) or, for the dual, K inverted in place (8 × users²), the dense X and K⁻¹X
/// (f64) and P (f64, 8 × items²); the inverse's work panel (items or users × 256, f64); and B
/// when it is kept whole (f32, 4 × items²; a pruned B is built one row at a time).
pub fn memory_estimate(n_users: usize, n_items: usize, dense_b: bool) -> usize {
    let (u, n) = (n_users, n_items);
    let sq = |a: usize, b: usize| a.saturating_mul(b).saturating_mul(8);
    let b = if dense_b { n.saturating_mul(n).saturating_mul(4) } else { 0 };
    let solve = if dual_is_cheaper(u, n) {
        sq(u, u) + 2 * sq(u, n) + sq(n, n) + invert_spd_scratch_len(u).saturating_mul(8)
    } else {
        sq(n, n) + invert_spd_scratch_len(n).saturating_mul(8)
    };
    solve.saturating_add(b)
}

#[derive(Clone, Debug, PartialEq)]
pub struct Ease {
    pub weights: Weights,
    /// The largest positive weights of each row, for `recsys.item_neighbors` and similar_items.
    pub neighbors: Neighbors,
}

impl Ease {
    pub fn n_items(&self) -> usize {
        self.neighbors.indptr.len() - 1
    }

    /// B[i][j] (0 for a weight pruned away).
    pub fn weight(&self, i: usize, j: usize) -> f32 {
        match &self.weights {
            Weights::Dense(w) => w[i * self.n_items() + j],
            Weights::Pruned(nb) => {
                let (cols, vals) = nb.row(i);
                cols.binary_search(&(j as u32)).map_or(0.0, |k| vals[k])
            }
        }
    }

    /// scores[j] += Σ_i w_i B[i][j] over the history.
    pub fn score_history(&self, history: &[(u32, f32)], scores: &mut [f32]) {
        let n = self.n_items();
        for &(i, w) in history {
            let i = i as usize;
            match &self.weights {
                Weights::Dense(b) => crate::engine::linalg::axpy(w, &b[i * n..(i + 1) * n], scores),
                Weights::Pruned(nb) => {
                    let (cols, vals) = nb.row(i);
                    for (&j, &b) in cols.iter().zip(vals) {
                        scores[j as usize] += w * b;
                    }
                }
            }
        }
    }

    /// The top rows' lists (best first) as neighbour lists.
    fn neighbors_from(rows: Vec<Vec<(u32, f32)>>) -> Neighbors {
        let mut indptr = Vec::with_capacity(rows.len() + 1);
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

/// `invert_spd` with its cancel checks reported through `progress`; a matrix that is not
/// positive definite is ERROR 22023 naming `what`.
fn invert(a: &mut [f64], n: usize, pool: &rayon::ThreadPool, progress: &mut dyn Progress, what: &str) -> Result<()> {
    let mut scratch = filled(invert_spd_scratch_len(n), 0f64, "EASE's inverse work buffer")?;
    let mut failure: Option<RecsysError> = None;
    let ok = invert_spd(a, n, &mut scratch, pool, &mut |done, total| match progress.step(done, total) {
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
        return Err(RecsysError::new(ErrorKind::InvalidParameter, format!("EASE: {what} is not positive definite")).with_hint("raise lambda"));
    }
    Ok(())
}

/// G = ZᵀZ + λI for a sparse Z given by rows (`by_row`) and columns (`by_col`): row i of G is
/// Σ over the rows r of Z that have column i of z_ri · Z[r].
fn gram(by_col: &Csr, by_row: &Csr, lambda: f64, pool: &rayon::ThreadPool, what: &str) -> Result<Vec<f64>> {
    let n = by_col.n_rows();
    let mut g = filled(n * n, 0f64, what)?;
    pool.install(|| {
        g.par_chunks_mut(n).enumerate().for_each(|(i, row)| {
            let (rows, wi) = by_col.row(i);
            for (&r, &w) in rows.iter().zip(wi) {
                let (cols, wj) = by_row.row(r as usize);
                for (&j, &v) in cols.iter().zip(wj) {
                    row[j as usize] += w as f64 * v as f64;
                }
            }
            row[i] += lambda;
        })
    });
    Ok(g)
}

/// P = (XᵀX + λI)⁻¹ (n × n) by the dual form: K = XXᵀ + λI (users × users) is inverted and
/// P = (I − Xᵀ K⁻¹ X)/λ is formed in blocks of columns, checking for cancel between them.
fn dual_inverse(by_user: &Csr, lambda: f64, pool: &rayon::ThreadPool, progress: &mut dyn Progress) -> Result<Vec<f64>> {
    use faer::reborrow::ReborrowMut;
    use faer::{Accum, MatMut, MatRef, Par};
    let (u, n) = (by_user.n_rows(), by_user.n_cols);
    let by_item = by_user.transpose();
    let mut k = gram(by_user, &by_item, lambda, pool, "EASE's users × users matrix")?;
    invert(&mut k, u, pool, progress, "XXᵀ + λI")?;
    // X dense, column-major u × n: column i holds item i's weights.
    let mut x = filled(u * n, 0f64, "EASE's dense interaction matrix")?;
    for i in 0..n {
        let (users, w) = by_item.row(i);
        for (&a, &v) in users.iter().zip(w) {
            x[i * u + a as usize] = v as f64;
        }
    }
    let mut t = filled(u * n, 0f64, "EASE's K⁻¹X")?;
    let mut p = filled(n * n, 0f64, "EASE's inverse")?;
    let par = Par::rayon(pool.current_num_threads());
    const COLS: usize = 512;
    {
        let kinv = MatRef::from_column_major_slice(&k, u, u);
        let xm = MatRef::from_column_major_slice(&x, u, n);
        let mut tm = MatMut::from_column_major_slice_mut(&mut t, u, n);
        for c0 in (0..n).step_by(COLS) {
            let c = COLS.min(n - c0);
            pool.install(|| faer::linalg::matmul::matmul(tm.rb_mut().submatrix_mut(0, c0, u, c), Accum::Replace, kinv, xm.submatrix(0, c0, u, c), 1.0, par));
            progress.step(c0 + c, 2 * n)?;
        }
    }
    drop(k);
    {
        let xm = MatRef::from_column_major_slice(&x, u, n);
        let tm = MatRef::from_column_major_slice(&t, u, n);
        let mut pm = MatMut::from_column_major_slice_mut(&mut p, n, n);
        for c0 in (0..n).step_by(COLS) {
            let c = COLS.min(n - c0);
            // P is symmetric: only rows c0.. of these columns (the lower part) are computed,
            // half the products; the rest is mirrored below.
            pool.install(|| {
                let mut block = pm.rb_mut().submatrix_mut(c0, c0, n - c0, c);
                faer::linalg::matmul::matmul(block.rb_mut(), Accum::Replace, xm.transpose().submatrix(c0, 0, n - c0, u), tm.submatrix(0, c0, u, c), -1.0 / lambda, par);
                for j in 0..c {
                    block[(j, j)] += 1.0 / lambda;
                }
            });
            progress.step(n + c0 + c, 2 * n)?;
        }
    }
    mirror_lower(&mut p, n);
    Ok(p)
}

/// P = (XᵀX + λI)⁻¹ (n × n) by the primal form: the items × items Gram matrix, inverted.
fn primal_inverse(by_user: &Csr, lambda: f64, pool: &rayon::ThreadPool, progress: &mut dyn Progress) -> Result<Vec<f64>> {
    let by_item = by_user.transpose();
    let mut g = gram(&by_item, by_user, lambda, pool, "EASE's Gram matrix")?;
    invert(&mut g, by_user.n_cols, pool, progress, "XᵀX + λI")?;
    Ok(g)
}

/// (ZᵀZ + λI)⁻¹ in whichever exact form is cheaper.
fn inverse(by_user: &Csr, lambda: f64, pool: &rayon::ThreadPool, progress: &mut dyn Progress) -> Result<Vec<f64>> {
    if dual_is_cheaper(by_user.n_rows(), by_user.n_cols) {
        dual_inverse(by_user, lambda, pool, progress)
    } else {
        primal_inverse(by_user, lambda, pool, progress)
    }
}

/// √Λ_j of DLAE's per-item penalties Λ_j = p/(1−p)·Σ_u x_uj² + λ.
fn dlae_roots(by_user: &Csr, p: &EaseParams) -> Vec<f64> {
    let mut d = vec![0f64; by_user.n_cols];
    for (&j, &v) in by_user.indices.iter().zip(&by_user.values) {
        d[j as usize] += f64::from(v) * f64::from(v);
    }
    d.iter().map(|&d| (p.dropout / (1.0 - p.dropout) * d + p.lambda).sqrt()).collect()
}

pub fn fit(data: &Interactions, p: &EaseParams, pool: &rayon::ThreadPool, progress: &mut dyn Progress) -> Result<Ease> {
    let n = data.n_items();
    // The dense buffers are reserved with a failure path (ERROR 53200, not an abort). g = P, n × n
    // (symmetric, so row- and column-major alike).
    // DLAE: with Z = XΛ^(−1/2), XᵀX + Λ = Λ^(1/2)(ZᵀZ + I)Λ^(1/2), so g = (ZᵀZ + I)⁻¹ and
    // P_ij = g_ij / √(Λ_i Λ_j): one inverse, primal or dual, for both models.
    let root = (p.dropout > 0.0).then(|| dlae_roots(&data.matrix, p));
    let g = match &root {
        None => inverse(&data.matrix, p.lambda, pool, progress)?,
        Some(r) => {
            let mut z = data.matrix.clone();
            for (v, &j) in z.values.iter_mut().zip(&z.indices) {
                *v = (f64::from(*v) / r[j as usize]) as f32;
            }
            inverse(&z, 1.0, pool, progress)?
        }
    };
    let diag: Vec<f64> = (0..n).map(|j| g[j * n + j]).collect();
    // Off the diagonal, EASE's B = −P / diag(P) and DLAE's B = −P·Λ = −g_ij·√(Λ_j / Λ_i); each
    // row's largest positive weights are taken while the row is in cache.
    let b_row = |i: usize, row: &mut [f32]| {
        match &root {
            None => (0..n).for_each(|j| row[j] = if i == j { 0.0 } else { (-g[i * n + j] / diag[j]) as f32 }),
            Some(r) => (0..n).for_each(|j| row[j] = if i == j { 0.0 } else { (-g[i * n + j] * r[j] / r[i]) as f32 }),
        }
        top_k((0..n as u32).map(|j| (j, row[j as usize])).filter(|&(j, w)| j as usize != i && w > 0.0), p.neighbors)
    };
    let (weights, top) = match kept_per_row(p.keep, n) {
        None => {
            let mut weights = filled(n * n, 0f32, "EASE's weights")?;
            let top: Vec<Vec<(u32, f32)>> = pool.install(|| weights.par_chunks_mut(n).enumerate().map(|(i, row)| b_row(i, row)).collect());
            (Weights::Dense(weights), top)
        }
        Some(k) => {
            // Each row's k largest |weights| (the diagonal is 0 and never kept), columns ascending.
            let rows: Vec<(Vec<(u32, f32)>, Vec<(u32, f32)>)> = pool.install(|| {
                (0..n)
                    .into_par_iter()
                    .map_init(
                        || vec![0f32; n],
                        |row, i| {
                            let top = b_row(i, row);
                            let mut kept: Vec<(u32, f32)> = top_k((0..n as u32).filter(|&j| j as usize != i).map(|j| (j, row[j as usize].abs())), k)
                                .into_iter()
                                .map(|(j, _)| (j, row[j as usize]))
                                .collect();
                            kept.sort_unstable_by_key(|&(j, _)| j);
                            (kept, top)
                        },
                    )
                    .collect()
            });
            let (kept, top): (Vec<_>, Vec<_>) = rows.into_iter().unzip();
            (Weights::Pruned(Ease::neighbors_from(kept)), top)
        }
    };
    drop(g);
    let neighbors = Ease::neighbors_from(top);
    Ok(Ease { weights, neighbors })
}

impl Ease {
    pub fn load(r: &In, n_items: usize) -> Result<Ease> {
        let weights = if r.has("weights") {
            Weights::Dense(r.f32s("weights", Some(&[n_items, n_items]))?)
        } else {
            let nb = r.neighbors("weights", n_items)?;
            if (0..n_items).any(|i| !nb.row(i).0.windows(2).all(|w| w[0] < w[1])) {
                return Err(crate::engine::format::corrupt("EASE's pruned weights are not sorted by column"));
            }
            Weights::Pruned(nb)
        };
        Ok(Ease { weights, neighbors: r.neighbors("neighbors", n_items)? })
    }
}

impl Trainer for EaseParams {
    fn memory_estimate(&self, data: &Interactions, _: usize) -> usize {
        memory_estimate(data.n_users(), data.n_items(), kept_per_row(self.keep, data.n_items()).is_none())
    }

    fn fit(&self, data: &Interactions, _: DeviceChoice, pool: &rayon::ThreadPool, progress: &mut dyn Progress) -> Result<Box<dyn Recommender>> {
        Ok(Box::new(fit(data, self, pool, progress)?))
    }
}

impl Recommender for Ease {
    fn name(&self) -> &'static str {
        "ease"
    }

    fn score(&self, m: &Model, _: &Request, history: &[(u32, f32)]) -> Result<Option<Scored>> {
        let mut scores = vec![0f32; m.n_items()];
        self.score_history(history, &mut scores);
        Ok(Some(Scored::all(scores)))
    }

    fn predict(&self, _: &Model, _: &Request, history: &[(u32, f32)], i: usize) -> Result<Option<f32>> {
        Ok((!history.is_empty()).then(|| history.iter().map(|&(j, w)| w * self.weight(j as usize, i)).sum()))
    }

    /// weight × B[j][i] of each history item j.
    fn contributions(&self, _: &Model, _: &Request, history: &[(u32, f32)], i: usize) -> Result<Vec<(u32, f32)>> {
        Ok(history.iter().map(|&(j, w)| (j, w * self.weight(j as usize, i))).collect())
    }

    fn similar_items(&self, _: &Model, item: Option<usize>, n: usize) -> Result<Vec<(u32, f32)>> {
        Ok(similar_from(&self.neighbors, item, n))
    }

    fn item_neighbors(&self) -> Option<&Neighbors> {
        Some(&self.neighbors)
    }

    /// Its part of the model file: `weights` (f32 [n_items, n_items], row i = the weights item i
    /// gives every item), or for a pruned B `weights.*` (each row's kept weights as a neighbour
    /// list, columns ascending); and `neighbors.*` (each row's largest positive weights).
    fn store<'a>(&'a self, out: &mut Out<'_, 'a>) -> Result<()> {
        let n = self.neighbors.indptr.len().saturating_sub(1);
        match &self.weights {
            Weights::Dense(w) => out.f32s("weights", &[n, n], w),
            Weights::Pruned(nb) => out.neighbors("weights", nb),
        }
        out.neighbors("neighbors", &self.neighbors);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::linalg::cholesky_solve;

    /// `per_user` interactions of each of `n_users` users spread over `n_items` items, weights 1..3.
    fn spread(n_users: i64, n_items: i64, per_user: i64) -> Interactions {
        let (mut users, mut items, mut weights) = (Vec::new(), Vec::new(), Vec::new());
        for u in 0..n_users {
            for k in 0..per_user {
                users.push(u);
                items.push((u * 7 + k * 13 + k * k + u * k * 31) % n_items);
                weights.push(1.0 + (k % 3) as f32);
            }
        }
        Interactions::from_triplets(&users, &items, &weights).unwrap()
    }

    #[test]
    fn the_dual_form_equals_the_primal_one() {
        // More items than users (the dual is the cheaper form): 25 x 80, and 30 x 1100, which
        // spans three of the dual's column blocks (the upper part is mirrored between them).
        for (n_users, n_items) in [(25i64, 80i64), (30, 1100)] {
            let data = spread(n_users, n_items, 40);
            assert!(dual_is_cheaper(data.n_users(), data.n_items()));
            let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
            let primal = primal_inverse(&data.matrix, 3.0, &pool, &mut crate::engine::NoProgress).unwrap();
            let dual = dual_inverse(&data.matrix, 3.0, &pool, &mut crate::engine::NoProgress).unwrap();
            let worst = primal.iter().zip(&dual).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
            assert!(worst < 1e-12, "{n_users} x {n_items}: max |primal - dual| = {worst}");
            // and the fit takes the dual path for this shape and gives the same weights
            let fitted = fit(&data, &EaseParams { lambda: 3.0, dropout: 0.0, neighbors: 5, keep: 0 }, &pool, &mut crate::engine::NoProgress).unwrap();
            let n = data.n_items();
            let diag: Vec<f64> = (0..n).map(|j| primal[j * n + j]).collect();
            for i in 0..n {
                for j in 0..n {
                    let want = if i == j { 0.0 } else { (-primal[i * n + j] / diag[j]) as f32 };
                    assert!((fitted.weight(i, j) - want).abs() < 1e-5);
                }
            }
        }
        // ML-100K (943 × 1,682) is primal since both inverses are in place; ml-latest-small dual.
        assert!(!dual_is_cheaper(2000, 1682) && !dual_is_cheaper(943, 1682) && dual_is_cheaper(500, 1682) && dual_is_cheaper(610, 9724));
    }
    use crate::engine::NoProgress;

    #[test]
    fn a_pruned_b_keeps_each_rows_largest_weights_and_round_trips() {
        assert_eq!(kept_per_row(0, DENSE_ITEMS), None);
        assert_eq!(kept_per_row(0, 15_000), Some(PRUNED_BYTES / (8 * 15_000)));
        assert_eq!(kept_per_row(0, 1_000_000), Some(MIN_KEEP));
        assert_eq!((kept_per_row(50, 40), kept_per_row(10, 40)), (None, Some(10)));
        let (mut users, mut items) = (Vec::new(), Vec::new());
        for u in 0..60i64 {
            for k in 0..12i64 {
                users.push(u);
                items.push((u * 5 + k * k * 3 + k) % 45);
            }
        }
        let weights = vec![1.0f32; users.len()];
        let data = Interactions::from_triplets(&users, &items, &weights).unwrap();
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        let dense = fit(&data, &EaseParams { lambda: 2.0, dropout: 0.0, neighbors: 5, keep: 0 }, &pool, &mut NoProgress).unwrap();
        let pruned = fit(&data, &EaseParams { lambda: 2.0, dropout: 0.0, neighbors: 5, keep: 8 }, &pool, &mut NoProgress).unwrap();
        assert!(matches!(dense.weights, Weights::Dense(_)) && matches!(pruned.weights, Weights::Pruned(_)));
        assert_eq!(dense.neighbors, pruned.neighbors);
        let n = data.n_items();
        for i in 0..n {
            // the 8 kept are the 8 largest |weights| of the dense row, with their values
            let mut row: Vec<f32> = (0..n).filter(|&j| j != i).map(|j| dense.weight(i, j).abs()).collect();
            row.sort_by(|a, b| b.total_cmp(a));
            let kept: Vec<usize> = (0..n).filter(|&j| pruned.weight(i, j) != 0.0).collect();
            assert_eq!(kept.len(), 8);
            for &j in &kept {
                assert_eq!(pruned.weight(i, j), dense.weight(i, j));
                assert!(dense.weight(i, j).abs() >= row[7]);
            }
        }
        // scoring a history adds exactly the kept weights
        let history = [(0u32, 1.0f32), (3, 2.0)];
        let mut scores = vec![0f32; n];
        pruned.score_history(&history, &mut scores);
        for (j, s) in scores.iter().enumerate() {
            assert!((s - (pruned.weight(0, j) + 2.0 * pruned.weight(3, j))).abs() < 1e-6);
        }
        let back = crate::engine::format::round_trip(|out| pruned.store(out), |r| Ease::load(r, n)).unwrap();
        assert_eq!(back, pruned);
    }

    #[test]
    fn dlae_is_the_least_squares_with_per_item_penalties_on_both_forms() {
        // B = (G + Λ)⁻¹G off the diagonal, Λ_j = p/(1−p)·G_jj + λ, solved column by column from
        // the dense G: on 25 × 80 (the dual form) and 90 × 40 (the primal one), weights 1..3.
        for (n_users, n_items) in [(25i64, 80i64), (90, 40)] {
            let data = spread(n_users, n_items, 15);
            let n = data.n_items();
            let mut g = vec![0f64; n * n];
            for u in 0..data.n_users() {
                let (cols, vals) = data.matrix.row(u);
                for (&a, &x) in cols.iter().zip(vals) {
                    for (&b, &y) in cols.iter().zip(vals) {
                        g[a as usize * n + b as usize] += f64::from(x) * f64::from(y);
                    }
                }
            }
            let (p, lambda) = (0.4, 3.0);
            let mut a = g.clone();
            for j in 0..n {
                a[j * n + j] += p / (1.0 - p) * g[j * n + j] + lambda;
            }
            let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
            let fitted = fit(&data, &EaseParams { lambda, dropout: p, neighbors: 5, keep: 0 }, &pool, &mut NoProgress).unwrap();
            for j in 0..n {
                let column = cholesky_solve(&a, &(0..n).map(|i| g[i * n + j]).collect::<Vec<_>>()).unwrap();
                for i in 0..n {
                    let want = if i == j { 0.0 } else { column[i] as f32 };
                    assert!((fitted.weight(i, j) - want).abs() < 1e-5, "{n_users} x {n_items}: B[{i}][{j}] = {} want {want}", fitted.weight(i, j));
                }
            }
            // and dropout changes the model (it is not EASE under another name)
            let ease = fit(&data, &EaseParams { lambda, dropout: 0.0, neighbors: 5, keep: 0 }, &pool, &mut NoProgress).unwrap();
            assert!((0..n).any(|j| (ease.weight(0, j) - fitted.weight(0, j)).abs() > 1e-3));
        }
    }

    #[test]
    fn closed_form_on_a_tiny_matrix() {
        // X (3 users × 3 items) = [[1,1,0],[1,0,1],[0,1,1]]: XᵀX = [[2,1,1],[1,2,1],[1,1,2]].
        let data = Interactions::from_triplets(&[1, 1, 2, 2, 3, 3], &[1, 2, 1, 3, 2, 3], &[1.0; 6]).unwrap();
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        let e = fit(&data, &EaseParams { lambda: 1.0, dropout: 0.0, neighbors: 5, keep: 0 }, &pool, &mut NoProgress).unwrap();
        // G + I = 2I + J (J all ones, n = 3): P = (I − J/5)/2, P_ii = 0.4, P_ij = −0.1,
        // so B_ij = −(−0.1)/0.4 = 0.25 off the diagonal.
        for i in 0..3 {
            for j in 0..3 {
                let want = if i == j { 0.0 } else { 0.25 };
                assert!((e.weight(i, j) - want).abs() < 1e-6, "B[{i}][{j}] = {}", e.weight(i, j));
            }
        }
        let mut scores = vec![0f32; 3];
        e.score_history(&[(0, 1.0), (1, 1.0)], &mut scores);
        assert!((scores[2] - 0.5).abs() < 1e-6);
        assert_eq!(e.neighbors.row(0).0, &[1, 2]);
        // DLAE, p = 0.5: Λ = G_jj + 1 = 3, G + Λ = 4I + J, P = (I − J/7)/4, B = I − 3P: 3/28 off it.
        let d = fit(&data, &EaseParams { lambda: 1.0, dropout: 0.5, neighbors: 5, keep: 0 }, &pool, &mut NoProgress).unwrap();
        for i in 0..3 {
            for j in 0..3 {
                let want = if i == j { 0.0 } else { 3.0 / 28.0 };
                assert!((d.weight(i, j) - want).abs() < 1e-6, "DLAE B[{i}][{j}] = {}", d.weight(i, j));
            }
        }
    }
}
