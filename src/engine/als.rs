//! Implicit-feedback ALS (Hu, Koren, Volinsky 2008). Every observed (user, item, w) has
//! preference 1 and confidence c = 1 + alpha·w; unobserved pairs have preference 0, confidence 1.
//! Each half-iteration solves every user's (then item's) normal equations
//! (YᵀY + Yᵀ(C_u − I)Y + λI) x_u = YᵀC_u p(u) approximately with a few conjugate-gradient steps
//! warm-started from the previous x_u (Takács et al. 2011, as implicit does), in parallel.

use rayon::prelude::*;

use crate::engine::factors::{fingerprints, FactorKind, Factors};
use crate::engine::interactions::{Csr, Interactions};
use crate::engine::linalg::{axpy_with, dot_with, gram, madd};
use crate::engine::neural::DeviceChoice;
use crate::engine::params::Params;
use crate::engine::recommender::{Recommender, Trainer};
use crate::engine::rng::Rng;
use crate::engine::{Progress, Result};

#[derive(Clone, Debug, PartialEq)]
pub struct AlsParams {
    pub factors: usize,
    pub iterations: usize,
    pub regularization: f32,
    pub alpha: f32,
    pub cg_steps: usize,
    pub seed: u64,
    /// ν of frequency-scaled regularization (Rendle et al. 2022): a row's λ is
    /// λ·(s_r / mean s)^ν, s_r = the row's confidence mass (columns + alpha·Σ|w|); 0: plain λ.
    pub reg_exponent: f32,
}

impl AlsParams {
    pub fn from_params(p: &mut Params) -> Result<Self> {
        Ok(AlsParams {
            factors: p.int("factors", 64, 1, 1024)? as usize,
            iterations: p.int("iterations", 15, 1, 10_000)? as usize,
            regularization: p.float("regularization", 40.0, 0.0, 1e6)? as f32,
            alpha: p.float("alpha", 4.0, 0.0, 1e6)? as f32,
            cg_steps: p.int("cg_steps", 3, 1, 100)? as usize,
            seed: p.int("seed", 42, 0, i64::MAX)? as u64,
            reg_exponent: p.float("reg_exponent", 0.0, 0.0, 4.0)? as f32,
        })
    }
}

/// Factor matrices, the transpose and per-thread nothing else: the fit is memory-light.
pub fn memory_estimate(n_users: usize, n_items: usize, nnz: usize, k: usize) -> usize {
    (n_users + n_items) * k * 4 + nnz * 8
}

/// Rows solved between two interrupt checks.
const CHUNK_ROWS: usize = 4096;

pub fn fit(data: &Interactions, p: &AlsParams, pool: &rayon::ThreadPool, progress: &mut dyn Progress) -> Result<Factors> {
    let k = p.factors;
    let by_user = &data.matrix;
    let by_item = by_user.transpose();
    let mut rng = Rng::new(p.seed);
    // The factor matrices are reserved with a failure path (ERROR 53200, not an abort).
    let mut users = crate::engine::memory::filled(data.n_users() * k, 0f32, "ALS user factors")?;
    let mut items = crate::engine::memory::filled(data.n_items() * k, 0f32, "ALS item factors")?;
    users.iter_mut().chain(items.iter_mut()).for_each(|x| *x = rng.next_f64() as f32 * 0.01);
    let total_rows = (data.n_users() + data.n_items()) * p.iterations;
    let mut done = 0;
    for it in 0..p.iterations {
        let (loss, _) = solve_side(&mut users, by_user, &items, p, pool, progress, &mut done, total_rows)?;
        solve_side(&mut items, &by_item, &users, p, pool, progress, &mut done, total_rows)?;
        let item_reg = p.regularization as f64 * items.iter().map(|&v| v as f64 * v as f64).sum::<f64>();
        let entries = (data.n_users() * data.n_items()) as f64;
        progress.epoch("als", it + 1, p.iterations, "loss", (loss + item_reg) / entries)?;
    }
    let fingerprints = fingerprints(&data.matrix);
    Ok(Factors {
        kind: FactorKind::Als,
        k,
        user_ids: data.user_ids.clone(),
        users,
        items,
        item_bias: Vec::new(),
        user_bias: Vec::new(),
        implicit: Vec::new(),
        mean: 0.0,
        fingerprints,
        regularization: p.regularization,
        alpha: p.alpha,
        range: (0.0, 0.0),
        gram: Vec::new(),
        reg_scale: if p.reg_exponent == 0.0 { (0.0, 1.0) } else { (p.reg_exponent, row_masses(&data.matrix, p).1) },
    }
    .with_gram())
}

/// Each row's confidence mass (columns + alpha·Σ|w|) and their mean.
fn row_masses(rows: &Csr, p: &AlsParams) -> (Vec<f64>, f64) {
    let masses: Vec<f64> = (0..rows.n_rows())
        .map(|r| rows.n_cols as f64 + p.alpha as f64 * rows.row(r).1.iter().map(|w| w.abs() as f64).sum::<f64>())
        .collect();
    let mean = masses.iter().sum::<f64>() / masses.len().max(1) as f64;
    (masses, mean.max(1e-12))
}

/// Solve every row of `x` against the fixed factors `y`. Returns the rows' share of the
/// objective (with the rows' own regularization) and the number of rows.
#[allow(clippy::too_many_arguments)]
fn solve_side(
    x: &mut [f32],
    rows: &Csr,
    y: &[f32],
    p: &AlsParams,
    pool: &rayon::ThreadPool,
    progress: &mut dyn Progress,
    done: &mut usize,
    total: usize,
) -> Result<(f64, usize)> {
    let k = p.factors;
    let mut yty = gram(y, k, pool);
    (0..k).for_each(|i| yty[i * k + i] += p.regularization);
    let n = rows.n_rows();
    // Frequency-scaled regularization: each row's λ beyond the shared one in `yty`.
    let extra: Vec<f32> = if p.reg_exponent == 0.0 {
        vec![0.0; n]
    } else {
        let (masses, mean) = row_masses(rows, p);
        masses.iter().map(|m| (p.regularization as f64 * ((m / mean).powf(p.reg_exponent as f64) - 1.0)) as f32).collect()
    };
    let mut loss = 0.0;
    for start in (0..n).step_by(CHUNK_ROWS) {
        let end = (start + CHUNK_ROWS).min(n);
        loss += pool.install(|| {
            x[start * k..end * k]
                .par_chunks_mut(k)
                .enumerate()
                .map_init(
                    || vec![0f32; 4 * k],
                    |scratch, (r, xr)| {
                        let (cols, vals) = rows.row(start + r);
                        solve_row(xr, cols, vals, y, &yty, p, extra[start + r], scratch)
                    },
                )
                .sum::<f64>()
        });
        *done += end - start;
        progress.step(*done, total)?;
    }
    Ok((loss, n))
}

/// CG on one row; returns the row's share of the objective. On x86-64 with AVX2 and FMA the
/// same code is compiled a second time with 256-bit fused multiply-adds, chosen at run time.
fn solve_row(x: &mut [f32], cols: &[u32], vals: &[f32], y: &[f32], yty: &[f32], p: &AlsParams, extra: f32, scratch: &mut [f32]) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU supports AVX-512F (which implies FMA), checked just above.
        return unsafe { solve_row_avx512(x, cols, vals, y, yty, p, extra, scratch) };
    }
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports AVX2 and FMA, checked just above.
        return unsafe { solve_row_avx2(x, cols, vals, y, yty, p, extra, scratch) };
    }
    conjugate_gradient::<false>(x, cols, vals, y, yty, p, extra, scratch)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn solve_row_avx2(x: &mut [f32], cols: &[u32], vals: &[f32], y: &[f32], yty: &[f32], p: &AlsParams, extra: f32, scratch: &mut [f32]) -> f64 {
    conjugate_gradient::<true>(x, cols, vals, y, yty, p, extra, scratch)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn solve_row_avx512(x: &mut [f32], cols: &[u32], vals: &[f32], y: &[f32], yty: &[f32], p: &AlsParams, extra: f32, scratch: &mut [f32]) -> f64 {
    conjugate_gradient::<true>(x, cols, vals, y, yty, p, extra, scratch)
}

/// out = (YᵀY + λI) v + Σ_j (c_j − 1)(y_j·v) y_j
#[inline(always)]
fn apply<const FMA: bool>(v: &[f32], cols: &[u32], vals: &[f32], y: &[f32], yty: &[f32], alpha: f32, extra: f32, out: &mut [f32]) {
    let k = v.len();
    // YᵀY is symmetric: accumulate its rows scaled by v (no horizontal sums); the row's own λ
    // beyond the shared one on the diagonal.
    out.iter_mut().zip(v).for_each(|(o, &vi)| *o = extra * vi);
    for (i, &vi) in v.iter().enumerate() {
        axpy_with::<FMA>(vi, &yty[i * k..(i + 1) * k], out);
    }
    for (&j, &w) in cols.iter().zip(vals) {
        let yj = &y[j as usize * k..(j as usize + 1) * k];
        axpy_with::<FMA>(alpha * w.abs() * dot_with::<FMA>(yj, v), yj, out);
    }
}

/// A few CG steps on one row's normal equations A x = b, starting from the current `x`.
/// Returns the row's share of the objective Σ_i c_ui (p_ui − x·y_i)² + λ|x|² over all items,
/// which is xᵀAx − 2bᵀx + Σ_observed c = −bᵀx − rᵀx + Σ_observed c with r = b − Ax.
#[inline(always)]
fn conjugate_gradient<const FMA: bool>(x: &mut [f32], cols: &[u32], vals: &[f32], y: &[f32], yty: &[f32], p: &AlsParams, extra: f32, scratch: &mut [f32]) -> f64 {
    let k = x.len();
    let (r, rest) = scratch.split_at_mut(k);
    let (dir, rest) = rest.split_at_mut(k);
    let (ap, b) = rest.split_at_mut(k);
    // r = b − A x = −(YᵀY + λI) x + Σ_j (c_j − (c_j − 1)(y_j·x)) y_j and b = Σ c_j y_j, in one
    // pass over the row's items (each y_j is read from memory once, as in the CG steps).
    r.iter_mut().zip(x.iter()).for_each(|(v, &xi)| *v = -extra * xi);
    for (i, &xi) in x.iter().enumerate() {
        axpy_with::<FMA>(-xi, &yty[i * k..(i + 1) * k], r);
    }
    b.iter_mut().for_each(|v| *v = 0.0);
    let mut total_confidence = 0f64;
    for (&j, &w) in cols.iter().zip(vals) {
        let yj = &y[j as usize * k..(j as usize + 1) * k];
        // A negative weight (a dislike) is preference 0 with confidence 1 + alpha·|w|, as in
        // the implicit library: the user's score of that item is pulled to 0, hard.
        let c = 1.0 + p.alpha * w.abs();
        let target = if w > 0.0 { c } else { 0.0 };
        total_confidence += target as f64;
        axpy_with::<FMA>(target - p.alpha * w.abs() * dot_with::<FMA>(yj, x), yj, r);
        axpy_with::<FMA>(target, yj, b);
    }
    dir.copy_from_slice(r);
    let mut rs_old = dot_with::<FMA>(r, r);
    for _ in 0..p.cg_steps {
        if rs_old < 1e-20 {
            break;
        }
        apply::<FMA>(dir, cols, vals, y, yty, p.alpha, extra, ap);
        let step = rs_old / dot_with::<FMA>(dir, ap);
        if !step.is_finite() {
            break;
        }
        axpy_with::<FMA>(step, dir, x);
        axpy_with::<FMA>(-step, ap, r);
        let rs_new = dot_with::<FMA>(r, r);
        let beta = rs_new / rs_old;
        dir.iter_mut().zip(r.iter()).for_each(|(d, ri)| *d = madd::<FMA>(beta, *d, *ri));
        rs_old = rs_new;
    }
    total_confidence - dot_with::<FMA>(b, x) as f64 - dot_with::<FMA>(r, x) as f64
}

impl Trainer for AlsParams {
    fn memory_estimate(&self, data: &Interactions, _: usize) -> usize {
        memory_estimate(data.n_users(), data.n_items(), data.nnz(), self.factors)
    }

    fn fit(&self, data: &Interactions, _: DeviceChoice, pool: &rayon::ThreadPool, progress: &mut dyn Progress) -> Result<Box<dyn Recommender>> {
        Ok(Box::new(fit(data, self, pool, progress)?))
    }

    fn fold_in(&self) -> Option<(f32, f32)> {
        Some((self.regularization, self.alpha))
    }

    fn uses_negative_weights(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::interactions::two_groups;
    use crate::engine::linalg::cholesky_solve;
    use crate::engine::NoProgress;

    fn pool() -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap()
    }

    fn params() -> AlsParams {
        AlsParams { factors: 2, iterations: 15, regularization: 0.05, alpha: 4.0, cg_steps: 3, seed: 1, reg_exponent: 0.0 }
    }

    #[test]
    fn a_dislike_pulls_its_score_down() {
        // Every user of group A has all its items but one; user 0 also dislikes item 1.
        let mut base = two_groups(6, 4);
        let fitted = |data: &Interactions| fit(data, &params(), &pool(), &mut NoProgress).unwrap();
        let plain = fitted(&base);
        let (u, i, mut w) = (base.matrix.owners(), base.matrix.indices.clone(), base.matrix.values.clone());
        let k = (0..u.len()).find(|&k| u[k] == 0 && i[k] == 1).expect("user 0 has item 1");
        w[k] = -3.0;
        let users: Vec<i64> = u.iter().map(|&r| base.user_ids[r as usize]).collect();
        let items: Vec<i64> = i.iter().map(|&c| base.item_ids[c as usize]).collect();
        base = Interactions::from_triplets(&users, &items, &w).unwrap();
        let disliked = fitted(&base);
        let score = |f: &Factors| dot_with::<false>(f.user(0), f.item(1));
        assert!(score(&plain) > 0.5, "{}", score(&plain));
        assert!(score(&disliked) < 0.3 * score(&plain), "{} vs {}", score(&disliked), score(&plain));
    }

    #[test]
    fn frequency_scaled_regularization_trains_and_folds_in_alike() {
        // users with histories of different lengths, so their masses (and λs) differ
        let rows = crate::engine::synthetic::generate(&crate::engine::synthetic::SyntheticParams { users: 40, items: 20, interactions: 300, seed: 3 }).unwrap();
        let (u, i): (Vec<i64>, Vec<i64>) = rows.iter().map(|r| (r.user_id, r.item_id)).unzip();
        let data = Interactions::from_triplets(&u, &i, &vec![1.0; u.len()]).unwrap();
        let p = AlsParams { factors: 4, reg_exponent: 1.0, cg_steps: 20, iterations: 30, regularization: 2.0, ..params() };
        let f = fit(&data, &p, &pool(), &mut NoProgress).unwrap();
        assert_eq!(f.reg_scale.0, 1.0);
        // the stored model round-trips with its scale
        let m = crate::engine::model::Model { item_ids: data.item_ids.clone(), popularity: vec![1.0; data.n_items()], algorithm: Box::new(f.clone()), params: serde_json::Value::Null, weighting: Default::default() };
        assert_eq!(crate::engine::model::Model::decode(&m.encode().unwrap()).unwrap(), m);
        // folding a trained user's own history in gives (nearly) the trained vector: training
        // and fold-in regularize a row alike
        let longest = (0..data.n_users()).max_by_key(|&u| data.matrix.row(u).0.len()).unwrap();
        let (cols, vals) = data.matrix.row(longest);
        let history: Vec<(u32, f32)> = cols.iter().copied().zip(vals.iter().copied()).collect();
        let a = f.implicit_system(&history);
        let mut b = vec![0f64; f.k];
        for &(j, w) in &history {
            f.item(j as usize).iter().zip(b.iter_mut()).for_each(|(y, bi)| *bi += (1.0 + p.alpha as f64 * w as f64) * *y as f64);
        }
        let folded = cholesky_solve(&a, &b).unwrap();
        let plain = Factors { reg_scale: (0.0, 1.0), ..f.clone() };
        let unscaled = cholesky_solve(&plain.implicit_system(&history), &b).unwrap();
        let dist = |v: &[f64]| v.iter().zip(f.user(longest)).map(|(x, y)| (*x as f32 - y).powi(2)).sum::<f32>().sqrt();
        assert!(dist(&folded) < 0.05, "{folded:?} vs {:?}", f.user(longest));
        assert!(dist(&folded) < 0.5 * dist(&unscaled), "{} vs plain λ {}", dist(&folded), dist(&unscaled));
    }

    #[test]
    fn cg_converges_to_the_exact_solution() {
        let k = 3;
        let y: Vec<f32> = (0..5 * k).map(|v| ((v * 7 % 5) as f32 - 2.0) * 0.3).collect();
        let p = AlsParams { factors: k, cg_steps: 50, ..params() };
        let mut yty = gram(&y, k, &pool());
        (0..k).for_each(|i| yty[i * k + i] += p.regularization);
        let (cols, vals) = ([0u32, 2, 3, 4], [1.0f32, 2.0, 1.0, -1.5]);
        let mut x = vec![0f32; k];
        conjugate_gradient::<false>(&mut x, &cols, &vals, &y, &yty, &p, 0.0, &mut vec![0f32; 4 * k]);
        // exact: A = YᵀY + λI + Σ α |w| y yᵀ, b = Σ_{w > 0} (1 + α w) y
        let mut a: Vec<f64> = yty.iter().map(|&v| v as f64).collect();
        let mut b = vec![0f64; k];
        for (&j, &w) in cols.iter().zip(&vals) {
            let yj = &y[j as usize * k..(j as usize + 1) * k];
            for r in 0..k {
                if w > 0.0 {
                    b[r] += (1.0 + (p.alpha * w) as f64) * yj[r] as f64;
                }
                for s in 0..k {
                    a[r * k + s] += (p.alpha * w.abs()) as f64 * yj[r] as f64 * yj[s] as f64;
                }
            }
        }
        let exact = cholesky_solve(&a, &b).unwrap();
        for r in 0..k {
            assert!((x[r] as f64 - exact[r]).abs() < 1e-4, "{x:?} vs {exact:?}");
        }
    }

    #[test]
    fn recommends_the_missing_item_of_the_users_group() {
        let data = two_groups(6, 4);
        let f = fit(&data, &params(), &pool(), &mut NoProgress).unwrap();
        for user in 0..12usize {
            let base = if user < 6 { 0 } else { 4 };
            let (seen, _) = data.matrix.row(user);
            let u = f.user(user);
            let best = (0..8u32)
                .filter(|i| !seen.contains(i))
                .max_by(|&a, &b| dot_with::<false>(u, f.item(a as usize)).total_cmp(&dot_with::<false>(u, f.item(b as usize))))
                .unwrap();
            assert_eq!(best as usize, base + user % 4, "user {user}");
        }
    }

    #[test]
    fn objective_decreases_and_threads_do_not_change_the_result() {
        struct Losses(Vec<f64>);
        impl Progress for Losses {
            fn step(&mut self, _: usize, _: usize) -> Result<()> {
                Ok(())
            }
            fn epoch(&mut self, _: &str, _: usize, _: usize, _: &str, loss: f64) -> Result<()> {
                self.0.push(loss);
                Ok(())
            }
        }
        let mut l = Losses(Vec::new());
        let a = fit(&two_groups(6, 4), &params(), &pool(), &mut l).unwrap();
        assert!(l.0.windows(2).all(|w| w[1] <= w[0] * 1.0001), "{:?}", l.0);
        let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        let b = fit(&two_groups(6, 4), &params(), &one, &mut NoProgress).unwrap();
        assert_eq!(a, b);
    }
}
