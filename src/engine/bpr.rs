//! Bayesian Personalized Ranking (Rendle et al. 2009): SGD on sampled triples (u, i, j) where u
//! interacted with i and not with j, maximising ln σ(x_ui − x_uj) with x_ui = p_u·q_i + b_i.
//! One epoch draws as many triples as there are interactions. Sequential, so a seed gives the
//! same model every time.

use crate::engine::factors::{fingerprints, FactorKind, Factors};
use crate::engine::interactions::{Csr, Interactions};
use crate::engine::linalg::{dot_with, madd};
use crate::engine::neural::DeviceChoice;
use crate::engine::params::Params;
use crate::engine::recommender::{Recommender, Trainer};
use crate::engine::rng::Rng;
use crate::engine::{Progress, Result};

#[derive(Clone, Debug, PartialEq)]
pub struct BprParams {
    pub factors: usize,
    pub epochs: usize,
    pub lr: f32,
    pub reg: f32,
    pub seed: u64,
}

impl BprParams {
    pub fn from_params(p: &mut Params) -> Result<Self> {
        Ok(BprParams {
            factors: p.int("factors", 64, 1, 1024)? as usize,
            epochs: p.int("epochs", 50, 1, 10_000)? as usize,
            lr: p.float("lr", 0.01, 1e-9, 10.0)? as f32,
            reg: p.float("reg", 0.01, 0.0, 1e3)? as f32,
            seed: p.int("seed", 42, 0, i64::MAX)? as u64,
        })
    }
}

pub fn memory_estimate(n_users: usize, n_items: usize, nnz: usize, k: usize) -> usize {
    (n_users + n_items) * k * 4 + nnz * 4
}

/// Fold-in for BPR users: the implicit least squares with this confidence slope.
const FOLD_IN_ALPHA: f32 = 4.0;
const FOLD_IN_REGULARIZATION: f32 = 0.05;
/// Samples between two interrupt checks.
const CHECK_EVERY: usize = 100_000;

pub fn fit(data: &Interactions, p: &BprParams, progress: &mut dyn Progress) -> Result<Factors> {
    let k = p.factors;
    let m = &data.matrix;
    let (n_users, n_items, nnz) = (data.n_users(), data.n_items(), data.nnz());
    let mut rng = Rng::new(p.seed);
    let init = |rng: &mut Rng| (rng.next_f64() as f32 - 0.5) / k as f32;
    let mut users = crate::engine::memory::filled(n_users * k, 0f32, "BPR user factors")?;
    let mut items = crate::engine::memory::filled(n_items * k, 0f32, "BPR item factors")?;
    users.iter_mut().chain(items.iter_mut()).for_each(|x| *x = init(&mut rng));
    let mut bias = vec![0f32; n_items];
    // The user of every stored interaction.
    let owner = m.owners();
    let mut grad_u = vec![0f32; k];
    for epoch in 0..p.epochs {
        let (mut correct, mut drawn) = (0usize, 0usize);
        let mut done = 0;
        while done < nnz {
            let count = CHECK_EVERY.min(nnz - done);
            let mut st = Sgd { users: &mut users, items: &mut items, bias: &mut bias, grad_u: &mut grad_u };
            let (c, d) = samples(&mut st, m, &owner, p, &mut rng, count);
            correct += c;
            drawn += d;
            done += count;
            progress.step(epoch * nnz + done, p.epochs * nnz)?;
        }
        progress.epoch("bpr", epoch + 1, p.epochs, "correctly_ordered", correct as f64 / drawn.max(1) as f64)?;
    }
    let fingerprints = fingerprints(&data.matrix);
    Ok(Factors {
        kind: FactorKind::Bpr,
        k,
        user_ids: data.user_ids.clone(),
        users,
        items,
        item_bias: bias,
        user_bias: Vec::new(),
        implicit: Vec::new(),
        mean: 0.0,
        fingerprints,
        regularization: FOLD_IN_REGULARIZATION,
        alpha: FOLD_IN_ALPHA,
        range: (0.0, 0.0),
        gram: Vec::new(),
        reg_scale: (0.0, 1.0),
    }
    .with_gram())
}

/// The parameters SGD updates.
struct Sgd<'a> {
    users: &'a mut [f32],
    items: &'a mut [f32],
    bias: &'a mut [f32],
    grad_u: &'a mut [f32],
}

/// `count` SGD steps; returns (triples the model already ordered right, triples drawn).
/// On x86-64 with AVX2 and FMA the same code runs compiled for 256-bit fused multiply-adds.
fn samples(st: &mut Sgd, m: &Csr, owner: &[u32], p: &BprParams, rng: &mut Rng, count: usize) -> (usize, usize) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports AVX2 and FMA, checked just above.
        return unsafe { samples_avx2(st, m, owner, p, rng, count) };
    }
    samples_with::<false>(st, m, owner, p, rng, count)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn samples_avx2(st: &mut Sgd, m: &Csr, owner: &[u32], p: &BprParams, rng: &mut Rng, count: usize) -> (usize, usize) {
    samples_with::<true>(st, m, owner, p, rng, count)
}

#[inline(always)]
fn samples_with<const FMA: bool>(st: &mut Sgd, m: &Csr, owner: &[u32], p: &BprParams, rng: &mut Rng, count: usize) -> (usize, usize) {
    let k = st.grad_u.len();
    let nnz = m.nnz() as u64;
    let (mut correct, mut drawn) = (0, 0);
    for _ in 0..count {
        let pos = rng.below(nnz) as usize;
        let u = owner[pos] as usize;
        let i = m.indices[pos] as usize;
        // Negatives are drawn in proportion to item popularity (the item of another random
        // interaction), as implicit does: popular items are the informative negatives.
        let j = m.indices[rng.below(nnz) as usize] as usize;
        let (seen, _) = m.row(u);
        if seen.binary_search(&(j as u32)).is_ok() {
            continue; // also excludes j == i
        }
        drawn += 1;
        let pu = &mut st.users[u * k..(u + 1) * k];
        let (qi, qj) = two_rows(st.items, i, j, k);
        let x = dot_with::<FMA>(pu, qi) - dot_with::<FMA>(pu, qj) + st.bias[i] - st.bias[j];
        correct += usize::from(x > 0.0);
        // z = σ(−x): the gradient weight of ln σ(x).
        let z = 1.0 / (1.0 + x.exp());
        let (lr, reg) = (p.lr, p.reg);
        for f in 0..k {
            st.grad_u[f] = madd::<FMA>(z, qi[f] - qj[f], -reg * pu[f]);
        }
        for f in 0..k {
            let puf = pu[f];
            qi[f] = madd::<FMA>(lr, madd::<FMA>(z, puf, -reg * qi[f]), qi[f]);
            qj[f] = madd::<FMA>(lr, madd::<FMA>(-z, puf, -reg * qj[f]), qj[f]);
            pu[f] = madd::<FMA>(lr, st.grad_u[f], puf);
        }
        st.bias[i] += lr * (z - reg * st.bias[i]);
        st.bias[j] += lr * (-z - reg * st.bias[j]);
    }
    (correct, drawn)
}

/// Rows i and j (i ≠ j) of a row-major matrix, both mutable.
#[inline(always)]
fn two_rows(m: &mut [f32], i: usize, j: usize, k: usize) -> (&mut [f32], &mut [f32]) {
    if i < j {
        let (a, b) = m.split_at_mut(j * k);
        (&mut a[i * k..(i + 1) * k], &mut b[..k])
    } else {
        let (a, b) = m.split_at_mut(i * k);
        (&mut b[..k], &mut a[j * k..(j + 1) * k])
    }
}

impl Trainer for BprParams {
    fn memory_estimate(&self, data: &Interactions, _: usize) -> usize {
        memory_estimate(data.n_users(), data.n_items(), data.nnz(), self.factors)
    }

    fn fit(&self, data: &Interactions, _: DeviceChoice, _: &rayon::ThreadPool, progress: &mut dyn Progress) -> Result<Box<dyn Recommender>> {
        Ok(Box::new(fit(data, self, progress)?))
    }

    fn fold_in(&self) -> Option<(f32, f32)> {
        Some((FOLD_IN_REGULARIZATION, FOLD_IN_ALPHA))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::interactions::two_groups;
    use crate::engine::NoProgress;

    #[test]
    fn same_seed_same_model_and_groups_are_learned() {
        let p = BprParams { factors: 8, epochs: 200, lr: 0.05, reg: 0.01, seed: 3 };
        let a = fit(&two_groups(10, 5), &p, &mut NoProgress).unwrap();
        let b = fit(&two_groups(10, 5), &p, &mut NoProgress).unwrap();
        assert_eq!(a, b);
        let c = fit(&two_groups(10, 5), &BprParams { seed: 4, ..p.clone() }, &mut NoProgress).unwrap();
        assert_ne!(a.users, c.users);
        // Each user's unseen in-group item outranks every out-of-group item.
        for user in 0..20usize {
            let base = if user < 10 { 0 } else { 5 };
            let score = |i: usize| crate::engine::linalg::dot(a.user(user), a.item(i)) + a.item_bias[i];
            let missing = score(base + user % 5);
            let other = if user < 10 { 5..10 } else { 0..5 };
            assert!(other.clone().all(|i| score(i) < missing), "user {user}");
        }
    }
}
