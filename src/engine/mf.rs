//! Rating prediction by matrix factorization with biases, trained by SGD on the observed ratings.
//! `biased_mf` (Funk SVD; Koren, Bell, Volinsky 2009): r̂ = μ + b_u + b_i + q_i·p_u.
//! `svdpp` (Koren 2008) adds implicit feedback: p_u + |N(u)|^−½ Σ_{j∈N(u)} y_j, where N(u) is
//! every item the user rated. SVD++ visits ratings user by user (as Surprise does); within a user
//! every y_j, j ∈ N(u), receives the same SGD update per rating, so the updates are accumulated in
//! one vector and applied once at the end of the user — the same arithmetic as updating every y_j
//! at every rating, in O(k) per rating instead of O(|N(u)|·k).
//! Sequential and seeded: the same data and seed give the same model.

use crate::engine::factors::{fingerprints, FactorKind, Factors};
use crate::engine::interactions::Interactions;
use crate::engine::linalg::{axpy, dot};
use crate::engine::neural::DeviceChoice;
use crate::engine::params::Params;
use crate::engine::recommender::{Recommender, Trainer};
use crate::engine::rng::Rng;
use crate::engine::{Progress, Result};

#[derive(Clone, Debug, PartialEq)]
pub struct MfParams {
    pub plus: bool,
    pub factors: usize,
    pub epochs: usize,
    pub lr: f32,
    pub reg: f32,
    pub init_std: f32,
    pub seed: u64,
}

impl MfParams {
    /// `plus`: SVD++ (its defaults follow Koren's smaller factor counts).
    pub fn from_params(p: &mut Params, plus: bool) -> Result<Self> {
        let (factors, epochs, lr, reg) = if plus { (20, 40, 0.01, 0.1) } else { (100, 40, 0.01, 0.1) };
        Ok(MfParams {
            plus,
            factors: p.int("factors", factors, 1, 1024)? as usize,
            epochs: p.int("epochs", epochs, 1, 10_000)? as usize,
            lr: p.float("lr", lr, 1e-9, 10.0)? as f32,
            reg: p.float("reg", reg, 0.0, 1e3)? as f32,
            init_std: p.float("init_std", 0.1, 0.0, 10.0)? as f32,
            seed: p.int("seed", 42, 0, i64::MAX)? as u64,
        })
    }
}

pub fn memory_estimate(n_users: usize, n_items: usize, nnz: usize, p: &MfParams) -> usize {
    (n_users + n_items * if p.plus { 2 } else { 1 }) * p.factors * 4 + nnz * 12
}

const CHECK_EVERY: usize = 200_000;

pub fn fit(data: &Interactions, p: &MfParams, progress: &mut dyn Progress) -> Result<Factors> {
    let k = p.factors;
    let m = &data.matrix;
    let (n_users, n_items, nnz) = (data.n_users(), data.n_items(), data.nnz());
    let mean = (m.values.iter().map(|&v| v as f64).sum::<f64>() / nnz as f64) as f32;
    let lo = m.values.iter().copied().fold(f32::INFINITY, f32::min);
    let hi = m.values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut rng = Rng::new(p.seed);
    let mut init = |n: usize| -> Vec<f32> { (0..n).map(|_| (rng.normal() * p.init_std as f64) as f32).collect() };
    let mut users = init(n_users * k);
    let mut items = init(n_items * k);
    let mut implicit = if p.plus { init(n_items * k) } else { Vec::new() };
    let (mut bu, mut bi) = (vec![0f32; n_users], vec![0f32; n_items]);
    let name = if p.plus { "svdpp" } else { "biased_mf" };
    let mut z = vec![0f32; k];
    let mut acc = vec![0f32; k];
    let mut qi_old = vec![0f32; k];

    // One SGD step on (u, i, r) with user vector z (p_u, or p_u + implicit term).
    // Returns the error before the step and leaves the old q_i in `qi_old`.
    #[allow(clippy::too_many_arguments)]
    fn step(
        u: usize, i: usize, r: f32, k: usize, p: &MfParams, mean: f32,
        users: &mut [f32], items: &mut [f32], bu: &mut [f32], bi: &mut [f32], z: &[f32], qi_old: &mut [f32],
    ) -> f32 {
        let (pu, qi) = (&mut users[u * k..(u + 1) * k], &mut items[i * k..(i + 1) * k]);
        let e = r - (mean + bu[u] + bi[i] + dot(qi, z));
        bu[u] += p.lr * (e - p.reg * bu[u]);
        bi[i] += p.lr * (e - p.reg * bi[i]);
        for f in 0..k {
            let (puf, qif) = (pu[f], qi[f]);
            pu[f] += p.lr * (e * qif - p.reg * puf);
            qi[f] += p.lr * (e * z[f] - p.reg * qif);
            qi_old[f] = qif;
        }
        e
    }

    let mut order: Vec<usize> = (0..if p.plus { n_users } else { nnz }).collect();
    // The user of every stored interaction.
    let owner = m.owners();
    for epoch in 0..p.epochs {
        rng.shuffle(&mut order);
        let mut sse = 0f64;
        let (mut done, mut next_check) = (0usize, CHECK_EVERY);
        for &o in &order {
            if p.plus {
                let u = o;
                let (cols, vals) = m.row(u);
                let scale = 1.0 / (cols.len() as f32).sqrt();
                let mut imp = vec![0f32; k];
                cols.iter().for_each(|&j| axpy(scale, &implicit[j as usize * k..(j as usize + 1) * k], &mut imp));
                // Per rating every y_j becomes decay·y_j + lr·e·s·q_i, so Σ over the user's
                // ratings is decay^n·y_j + acc, and imp = s·Σ y_j follows as decay·imp + lr·e·q_i.
                let decay = 1.0 - p.lr * p.reg;
                acc.iter_mut().for_each(|a| *a = 0.0);
                for (&i, &r) in cols.iter().zip(vals) {
                    z.iter_mut().enumerate().for_each(|(f, zf)| *zf = users[u * k + f] + imp[f]);
                    let e = step(u, i as usize, r, k, p, mean, &mut users, &mut items, &mut bu, &mut bi, &z, &mut qi_old);
                    for f in 0..k {
                        acc[f] = decay * acc[f] + p.lr * e * scale * qi_old[f];
                        imp[f] = decay * imp[f] + p.lr * e * qi_old[f];
                    }
                    sse += (e * e) as f64;
                }
                let shrink = decay.powi(cols.len() as i32);
                for &j in cols {
                    let y = &mut implicit[j as usize * k..(j as usize + 1) * k];
                    y.iter_mut().zip(&acc).for_each(|(yf, a)| *yf = shrink * *yf + a);
                }
                done += cols.len();
            } else {
                let (u, i, r) = (owner[o] as usize, m.indices[o] as usize, m.values[o]);
                z.copy_from_slice(&users[u * k..(u + 1) * k]);
                let e = step(u, i, r, k, p, mean, &mut users, &mut items, &mut bu, &mut bi, &z, &mut qi_old);
                sse += (e * e) as f64;
                done += 1;
            }
            if done >= next_check {
                progress.step(epoch * nnz + done, p.epochs * nnz)?;
                next_check = done + CHECK_EVERY;
            }
        }
        progress.epoch(name, epoch + 1, p.epochs, "train_rmse", (sse / nnz as f64).sqrt())?;
    }
    // Store each known user's effective vector (SVD++: with the implicit term), so that
    // user_factors · item_factors + biases is the prediction.
    for u in 0..n_users {
        let cols = m.row(u).0;
        if p.plus {
            let scale = 1.0 / (cols.len() as f32).sqrt();
            for &j in cols {
                let (y, pu) = (&implicit[j as usize * k..(j as usize + 1) * k], &mut users[u * k..(u + 1) * k]);
                axpy(scale, y, pu);
            }
        }
    }
    Ok(Factors {
        kind: if p.plus { FactorKind::SvdPp } else { FactorKind::BiasedMf },
        k,
        user_ids: data.user_ids.clone(),
        users,
        items,
        item_bias: bi,
        user_bias: bu,
        implicit,
        mean,
        fingerprints: fingerprints(m),
        regularization: p.reg,
        alpha: 0.0,
        range: (lo, hi),
        gram: Vec::new(),
        reg_scale: (0.0, 1.0),
    }
    .with_gram())
}

impl Trainer for MfParams {
    fn needs_ratings(&self) -> bool {
        true
    }

    fn memory_estimate(&self, data: &Interactions, _: usize) -> usize {
        memory_estimate(data.n_users(), data.n_items(), data.nnz(), self)
    }

    fn fit(&self, data: &Interactions, _: DeviceChoice, _: &rayon::ThreadPool, progress: &mut dyn Progress) -> Result<Box<dyn Recommender>> {
        Ok(Box::new(fit(data, self, progress)?))
    }

    fn fold_in(&self) -> Option<(f32, f32)> {
        Some((self.reg, 0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::NoProgress;

    /// Ratings from a known rank-1 model with biases, on 3 of every 4 (user, item) pairs.
    fn ratings() -> (Interactions, Vec<(i64, i64, f32)>) {
        let (mut u, mut i, mut w, mut held) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for user in 0..40i64 {
            for item in 0..30i64 {
                let a = (user % 5) as f32 / 4.0 - 0.5;
                let b = (item % 6) as f32 / 5.0 - 0.5;
                let r = (3.0 + 2.0 * a * b * 2.0 + a + b * 0.5).clamp(1.0, 5.0);
                if (user * 31 + item) % 4 == 0 {
                    held.push((user, item, r));
                } else {
                    u.push(user);
                    i.push(item);
                    w.push(r);
                }
            }
        }
        (Interactions::from_triplets(&u, &i, &w).unwrap(), held)
    }

    fn rmse(f: &Factors, data: &Interactions, held: &[(i64, i64, f32)]) -> f64 {
        let mut sse = 0f64;
        for &(u, i, r) in held {
            let row = data.user_ids.binary_search(&u).unwrap();
            let (cols, vals) = data.matrix.row(row);
            let h: Vec<(u32, f32)> = cols.iter().copied().zip(vals.iter().copied()).collect();
            let uv = f.user_vector(Some(u), &h).unwrap();
            assert!(!uv.folded_in);
            let col = data.item_ids.binary_search(&i).unwrap();
            sse += (f.predict(&uv, col) - r).powi(2) as f64;
        }
        (sse / held.len() as f64).sqrt()
    }

    #[test]
    fn both_models_learn_held_out_ratings_deterministically() {
        let (data, held) = ratings();
        for plus in [false, true] {
            let p = MfParams { plus, factors: 4, epochs: 60, lr: 0.01, reg: 0.01, init_std: 0.1, seed: 5 };
            let f = fit(&data, &p, &mut NoProgress).unwrap();
            let e = rmse(&f, &data, &held);
            assert!(e < 0.15, "plus={plus}: held-out RMSE {e}");
            assert_eq!(f, fit(&data, &p, &mut NoProgress).unwrap());
            // predictions stay inside the observed range
            let uv = f.user_vector(Some(0), &[(0, 5.0)]).unwrap();
            assert!((0..30).all(|i| (f.range.0..=f.range.1).contains(&f.predict(&uv, i))));
        }
    }
}
