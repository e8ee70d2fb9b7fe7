//! Bayesian Personalized Ranking (Rendle et al. 2009): SGD on sampled triples (u, i, j) where u
//! interacted with i and not with j, maximising ln σ(x_ui − x_uj) with x_ui = p_u·q_i + b_i.
//! One epoch draws as many triples as there are interactions. Sequential, so a seed gives the
//! same model every time.

use crate::engine::factors::{fingerprint, FactorKind, Factors};
use crate::engine::interactions::Interactions;
use crate::engine::linalg::dot;
use crate::engine::params::Params;
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
const CHECK_EVERY: usize = 200_000;

pub fn fit(data: &Interactions, p: &BprParams, progress: &mut dyn Progress) -> Result<Factors> {
    let k = p.factors;
    let m = &data.matrix;
    let (n_users, n_items, nnz) = (data.n_users(), data.n_items(), data.nnz());
    let mut rng = Rng::new(p.seed);
    let init = |rng: &mut Rng| (rng.next_f64() as f32 - 0.5) / k as f32;
    let mut users: Vec<f32> = (0..n_users * k).map(|_| init(&mut rng)).collect();
    let mut items: Vec<f32> = (0..n_items * k).map(|_| init(&mut rng)).collect();
    let mut bias = vec![0f32; n_items];
    // The user of every stored interaction, to sample positives uniformly.
    let mut owner = vec![0u32; nnz];
    for u in 0..n_users {
        owner[m.indptr[u]..m.indptr[u + 1]].iter_mut().for_each(|o| *o = u as u32);
    }
    let mut grad_u = vec![0f32; k];
    for epoch in 0..p.epochs {
        let (mut log_loss, mut drawn) = (0f64, 0usize);
        for s in 0..nnz {
            if s % CHECK_EVERY == CHECK_EVERY - 1 {
                progress.step(epoch * nnz + s, p.epochs * nnz)?;
            }
            let pos = rng.below(nnz as u64) as usize;
            let u = owner[pos] as usize;
            let i = m.indices[pos] as usize;
            // Negatives are drawn in proportion to item popularity (an item of another random
            // interaction), as implicit does: popular items are the informative negatives.
            let j = m.indices[rng.below(nnz as u64) as usize] as usize;
            let (seen, _) = m.row(u);
            if seen.binary_search(&(j as u32)).is_ok() {
                continue;
            }
            drawn += 1;
            let (pu, qi, qj) = (&users[u * k..(u + 1) * k], &items[i * k..(i + 1) * k], &items[j * k..(j + 1) * k]);
            let x = dot(pu, qi) - dot(pu, qj) + bias[i] - bias[j];
            // z = σ(−x): the gradient weight of ln σ(x).
            let z = 1.0 / (1.0 + x.exp());
            log_loss += (1.0 + (-x as f64).exp()).ln();
            for f in 0..k {
                grad_u[f] = z * (qi[f] - qj[f]) - p.reg * pu[f];
            }
            for f in 0..k {
                let puf = users[u * k + f];
                items[i * k + f] += p.lr * (z * puf - p.reg * items[i * k + f]);
                items[j * k + f] += p.lr * (-z * puf - p.reg * items[j * k + f]);
                users[u * k + f] += p.lr * grad_u[f];
            }
            bias[i] += p.lr * (z - p.reg * bias[i]);
            bias[j] += p.lr * (-z - p.reg * bias[j]);
        }
        let drawn_f = drawn.max(1) as f64;
        progress.epoch("bpr", epoch + 1, p.epochs, "log_loss", log_loss / drawn_f)?;
    }
    let fingerprints = (0..n_users)
        .map(|u| {
            let (cols, vals) = m.row(u);
            fingerprint(&cols.iter().copied().zip(vals.iter().copied()).collect::<Vec<_>>())
        })
        .collect();
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
    }
    .with_gram())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::NoProgress;

    fn blocks() -> Interactions {
        let (mut u, mut i) = (Vec::new(), Vec::new());
        for user in 0..20i64 {
            let base = if user < 10 { 0 } else { 5 };
            for item in base..base + 5 {
                if item != base + user % 5 {
                    u.push(user);
                    i.push(item);
                }
            }
        }
        Interactions::from_triplets(&u, &i, &vec![1.0; u.len()]).unwrap()
    }

    #[test]
    fn same_seed_same_model_and_groups_are_learned() {
        let p = BprParams { factors: 8, epochs: 200, lr: 0.05, reg: 0.01, seed: 3 };
        let a = fit(&blocks(), &p, &mut NoProgress).unwrap();
        let b = fit(&blocks(), &p, &mut NoProgress).unwrap();
        assert_eq!(a, b);
        let c = fit(&blocks(), &BprParams { seed: 4, ..p.clone() }, &mut NoProgress).unwrap();
        assert_ne!(a.users, c.users);
        // Each user's unseen in-group item outranks every out-of-group item.
        for user in 0..20usize {
            let base = if user < 10 { 0 } else { 5 };
            let score = |i: usize| dot(a.user(user), a.item(i)) + a.item_bias[i];
            let missing = score(base + user % 5);
            let other = if user < 10 { 5..10 } else { 0..5 };
            assert!(other.clone().all(|i| score(i) < missing), "user {user}");
        }
    }
}
