//! PureSVD (Cremonesi et al. 2010): a truncated SVD A ≈ U Σ Vᵀ of the user×item matrix by
//! randomized subspace iteration (Halko, Martinsson, Tropp 2011). A stays sparse: only products
//! A·M and Aᵀ·M with thin dense matrices are formed. Item factors are V; a user's vector is
//! their row of A times V, so a new history is projected the same way at serving time.

use rayon::prelude::*;

use crate::engine::factors::{FactorKind, Factors};
use crate::engine::interactions::{Csr, Interactions};
use crate::engine::linalg::symmetric_eigen;
use crate::engine::neural::DeviceChoice;
use crate::engine::params::Params;
use crate::engine::recommender::{Recommender, Trainer};
use crate::engine::rng::Rng;
use crate::engine::{Progress, Result};

#[derive(Clone, Debug, PartialEq)]
pub struct SvdParams {
    pub factors: usize,
    pub oversample: usize,
    pub power_iterations: usize,
    pub seed: u64,
}

impl SvdParams {
    pub fn from_params(p: &mut Params) -> Result<Self> {
        Ok(SvdParams {
            factors: p.int("factors", 64, 1, 1024)? as usize,
            oversample: p.int("oversample", 10, 0, 1000)? as usize,
            power_iterations: p.int("power_iterations", 4, 0, 100)? as usize,
            seed: p.int("seed", 42, 0, i64::MAX)? as u64,
        })
    }
}

pub fn memory_estimate(n_users: usize, n_items: usize, nnz: usize, p: &SvdParams) -> usize {
    (n_users + n_items) * (p.factors + p.oversample) * 8 * 2 + nnz * 8
}

/// Rows handled between two checks for cancel: the products below take seconds on millions of
/// interactions, so they run in slices of rows with `progress.step` in between.
const ROWS_PER_CHECK: usize = 8192;

/// out (rows(a) × l, row-major) = a · m, where m is cols(a) × l.
fn mul(a: &Csr, m: &[f64], l: usize, pool: &rayon::ThreadPool, progress: &mut dyn Progress) -> Result<Vec<f64>> {
    let mut out = vec![0f64; a.n_rows() * l];
    for (slice, rows) in out.chunks_mut(ROWS_PER_CHECK * l.max(1)).enumerate() {
        pool.install(|| {
            rows.par_chunks_mut(l.max(1)).enumerate().for_each(|(r, o)| {
                let (cols, vals) = a.row(slice * ROWS_PER_CHECK + r);
                for (&j, &v) in cols.iter().zip(vals) {
                    let mj = &m[j as usize * l..(j as usize + 1) * l];
                    o.iter_mut().zip(mj).for_each(|(x, y)| *x += v as f64 * y);
                }
            })
        });
        progress.step(0, 0)?;
    }
    Ok(out)
}

/// mᵀm for a row-major n × l matrix: faer's matrix product over slices of rows, summed in
/// order (deterministic), with a cancel check between slices.
fn gram(m: &[f64], l: usize, pool: &rayon::ThreadPool, progress: &mut dyn Progress) -> Result<Vec<f64>> {
    let mut g = faer::Mat::<f64>::zeros(l, l);
    let par = faer::Par::rayon(pool.current_num_threads());
    for slice in m.chunks(ROWS_PER_CHECK * l.max(1)) {
        let s = faer::MatRef::from_row_major_slice(slice, slice.len() / l.max(1), l);
        pool.install(|| faer::linalg::matmul::matmul(g.as_mut(), faer::Accum::Add, s.transpose(), s, 1.0, par));
        progress.step(0, 0)?;
    }
    Ok((0..l * l).map(|x| g[(x / l, x % l)]).collect())
}

/// Orthonormalise the columns of a row-major n × l matrix in place (through the eigenvectors of
/// mᵀm, twice for accuracy; directions with no energy become zero columns). Returns the largest
/// eigenvalue of mᵀm before the first pass.
fn orthonormalize(m: &mut [f64], l: usize, pool: &rayon::ThreadPool, progress: &mut dyn Progress) -> Result<f64> {
    let mut top = 0.0;
    for pass in 0..2 {
        let (vals, vecs) = symmetric_eigen(&gram(m, l, pool, progress)?, l);
        if pass == 0 {
            top = vals[0].max(0.0);
        }
        let cutoff = vals[0].max(0.0) * 1e-13;
        let mut t = vecs;
        for c in 0..l {
            let s = if vals[c] > cutoff && vals[c] > 0.0 { 1.0 / vals[c].sqrt() } else { 0.0 };
            (0..l).for_each(|r| t[r * l + c] *= s);
        }
        // m ← m T, slice by slice (faer's product into a scratch slice, then copied back).
        let tm = faer::MatRef::from_row_major_slice(&t, l, l);
        let par = faer::Par::rayon(pool.current_num_threads());
        let mut scratch = vec![0f64; (ROWS_PER_CHECK * l).min(m.len())];
        for slice in m.chunks_mut(ROWS_PER_CHECK * l.max(1)) {
            let rows = slice.len() / l.max(1);
            let out = &mut scratch[..slice.len()];
            {
                let src = faer::MatRef::from_row_major_slice(slice, rows, l);
                let dst = faer::MatMut::from_row_major_slice_mut(out, rows, l);
                pool.install(|| faer::linalg::matmul::matmul(dst, faer::Accum::Replace, src, tm, 1.0, par));
            }
            slice.copy_from_slice(out);
            progress.step(0, 0)?;
        }
    }
    Ok(top)
}

/// The top-k singular values (descending) and right singular vectors (n_items × k, row-major).
pub fn decompose(a: &Csr, p: &SvdParams, pool: &rayon::ThreadPool, progress: &mut dyn Progress) -> Result<(Vec<f64>, Vec<f64>)> {
    let at = a.transpose();
    let (n_users, n_items) = (a.n_rows(), a.n_cols);
    let k = p.factors.min(n_users).min(n_items);
    let l = (k + p.oversample).min(n_users).min(n_items);
    let mut rng = Rng::new(p.seed);
    let omega: Vec<f64> = (0..n_items * l).map(|_| rng.normal()).collect();
    let mut q = mul(a, &omega, l, pool, progress)?;
    orthonormalize(&mut q, l, pool, progress)?;
    for it in 0..p.power_iterations {
        let mut z = mul(&at, &q, l, pool, progress)?;
        orthonormalize(&mut z, l, pool, progress)?;
        q = mul(a, &z, l, pool, progress)?;
        let top = orthonormalize(&mut q, l, pool, progress)?;
        progress.epoch("svd", it + 1, p.power_iterations, "sigma_1", top.sqrt())?;
    }
    // B = Qᵀ A, held as Bᵀ = Aᵀ Q (items × l); B Bᵀ = (Bᵀ)ᵀ Bᵀ = W Σ² Wᵀ; V = Bᵀ W Σ⁻¹.
    let bt = mul(&at, &q, l, pool, progress)?;
    let (vals, w) = symmetric_eigen(&gram(&bt, l, pool, progress)?, l);
    let sigma: Vec<f64> = vals.iter().take(k).map(|&v| v.max(0.0).sqrt()).collect();
    let mut v = vec![0f64; n_items * k];
    for i in 0..n_items {
        for c in 0..k {
            if sigma[c] > 0.0 {
                v[i * k + c] = (0..l).map(|r| bt[i * l + r] * w[r * l + c]).sum::<f64>() / sigma[c];
            }
        }
    }
    Ok((sigma, v))
}

pub fn fit(data: &Interactions, p: &SvdParams, pool: &rayon::ThreadPool, progress: &mut dyn Progress) -> Result<Factors> {
    let (_, v) = decompose(&data.matrix, p, pool, progress)?;
    let k = p.factors.min(data.n_users()).min(data.n_items());
    let items: Vec<f32> = v.iter().map(|&x| x as f32).collect();
    let users: Vec<f32> = mul(&data.matrix, &v, k, pool, progress)?.into_iter().map(|x| x as f32).collect();
    Ok(Factors {
        kind: FactorKind::Svd,
        k,
        user_ids: data.user_ids.clone(),
        users,
        items,
        item_bias: Vec::new(),
        user_bias: Vec::new(),
        implicit: Vec::new(),
        mean: 0.0,
        fingerprints: vec![0; data.n_users()],
        regularization: 0.0,
        alpha: 0.0,
        range: (0.0, 0.0),
        gram: Vec::new(),
        reg_scale: (0.0, 1.0),
    }
    .with_gram())
}

impl Trainer for SvdParams {
    fn memory_estimate(&self, data: &Interactions, _: usize) -> usize {
        memory_estimate(data.n_users(), data.n_items(), data.nnz(), self)
    }

    fn fit(&self, data: &Interactions, _: DeviceChoice, pool: &rayon::ThreadPool, progress: &mut dyn Progress) -> Result<Box<dyn Recommender>> {
        Ok(Box::new(fit(data, self, pool, progress)?))
    }

    /// PureSVD folds a user in as the sum of their items' factors.
    fn fold_in(&self) -> Option<(f32, f32)> {
        Some((0.0, 0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::NoProgress;

    fn pool() -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap()
    }

    /// 30 × 20, entries ((3u + 7i) mod 11) / 10 where that is ≥ 0.4, else absent.
    fn matrix() -> Interactions {
        let (mut u, mut i, mut w) = (Vec::new(), Vec::new(), Vec::new());
        for r in 0..30i64 {
            for c in 0..20i64 {
                let v = ((3 * r + 7 * c) % 11) as f32 / 10.0;
                if v >= 0.4 {
                    u.push(r);
                    i.push(c);
                    w.push(v);
                }
            }
        }
        Interactions::from_triplets(&u, &i, &w).unwrap()
    }

    #[test]
    fn singular_values_match_lapack() {
        // numpy.linalg.svd(A, compute_uv=False)[:5] for the matrix above (LAPACK gesdd).
        let want = [10.938972701870, 5.695152189118, 5.466808207436, 2.406726481704, 2.185986030773];
        let p = SvdParams { factors: 5, oversample: 10, power_iterations: 6, seed: 42 };
        let (sigma, v) = decompose(&matrix().matrix, &p, &pool(), &mut NoProgress).unwrap();
        for (s, w) in sigma.iter().zip(want) {
            assert!(((s - w) / w).abs() < 1e-4, "{sigma:?}");
        }
        // V has orthonormal columns.
        for a in 0..5 {
            for b in 0..5 {
                let d: f64 = (0..20).map(|i| v[i * 5 + a] * v[i * 5 + b]).sum();
                assert!((d - f64::from(a == b)).abs() < 1e-6);
            }
        }
    }

    #[test]
    fn factors_project_the_history() {
        let data = matrix();
        let f = fit(&data, &SvdParams { factors: 3, oversample: 5, power_iterations: 3, seed: 1 }, &pool(), &mut NoProgress).unwrap();
        let (cols, vals) = data.matrix.row(4);
        let h: Vec<(u32, f32)> = cols.iter().copied().zip(vals.iter().copied()).collect();
        let u = f.user_vector(Some(data.user_ids[4]), &h).unwrap();
        for (a, b) in u.p.iter().zip(f.user(4)) {
            assert!((a - b).abs() < 1e-4);
        }
    }
}
