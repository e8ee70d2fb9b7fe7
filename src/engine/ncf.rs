//! NeuMF (He et al. 2017): a GMF branch (user ⊙ item embeddings) and an MLP branch (concatenated
//! user and item embeddings through three ReLU layers), joined by a linear output to one logit.
//! Trained with Candle on the CPU: `negatives` sampled non-interacted items per positive, binary
//! cross-entropy on logits, AdamW. Weights are initialised from our seeded generator and batches
//! are drawn in seeded order, so a seed gives the same model. Persisted as safetensors.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};

use crate::engine::interactions::Interactions;
use crate::engine::params::Params;
use crate::engine::rng::Rng;
use crate::engine::{ErrorKind, Progress, RecsysError, Result};

#[derive(Clone, Debug, PartialEq)]
pub struct NcfParams {
    /// GMF embedding size; the MLP uses `hidden`/2-sized embeddings and layers hidden, hidden/2, hidden/4.
    pub factors: usize,
    pub hidden: usize,
    pub negatives: usize,
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub weight_decay: f64,
    pub seed: u64,
}

impl NcfParams {
    pub fn from_params(p: &mut Params) -> Result<Self> {
        Ok(NcfParams {
            factors: p.int("factors", 32, 1, 1024)? as usize,
            hidden: p.int("hidden", 64, 4, 4096)? as usize,
            negatives: p.int("negatives", 4, 1, 100)? as usize,
            // 5 epochs: chosen on a validation split of ML-100K's training rows (more overfit).
            epochs: p.int("epochs", 5, 1, 10_000)? as usize,
            batch_size: p.int("batch_size", 1024, 1, 1 << 20)? as usize,
            lr: p.float("lr", 0.002, 1e-9, 10.0)?,
            weight_decay: p.float("weight_decay", 0.0, 0.0, 10.0)?,
            seed: p.int("seed", 42, 0, i64::MAX)? as u64,
        })
    }
}

pub fn memory_estimate(n_users: usize, n_items: usize, nnz: usize, p: &NcfParams) -> usize {
    // weights, AdamW's two moments, gradients: ~4 copies; samples: (1 + negatives) per positive.
    (n_users + n_items) * (p.factors + p.hidden / 2) * 4 * 4 + nnz * (1 + p.negatives) * 12
}

fn candle(e: candle_core::Error) -> RecsysError {
    RecsysError::new(ErrorKind::Corrupt, format!("candle: {e}"))
}

/// The weights by name (safetensors keys), on the CPU.
#[derive(Clone, Debug)]
pub struct Ncf {
    pub user_ids: Vec<i64>,
    pub weights: HashMap<String, Tensor>,
}

impl PartialEq for Ncf {
    fn eq(&self, other: &Ncf) -> bool {
        let flat = |t: &Tensor| t.flatten_all().and_then(|f| f.to_vec1::<f32>()).ok();
        self.user_ids == other.user_ids
            && self.weights.len() == other.weights.len()
            && self.weights.iter().all(|(k, t)| other.weights.get(k).is_some_and(|o| t.dims() == o.dims() && flat(t) == flat(o)))
    }
}

const LAYERS: usize = 3;

fn layer_names(l: usize) -> (String, String) {
    (format!("mlp{l}.weight"), format!("mlp{l}.bias"))
}

/// Shapes of every weight for these sizes.
fn shapes(n_users: usize, n_items: usize, p: &NcfParams) -> Vec<(String, Vec<usize>)> {
    let half = (p.hidden / 2).max(1);
    let mut v = vec![
        ("user_gmf".to_string(), vec![n_users, p.factors]),
        ("item_gmf".to_string(), vec![n_items, p.factors]),
        ("user_mlp".to_string(), vec![n_users, half]),
        ("item_mlp".to_string(), vec![n_items, half]),
    ];
    let mut width = 2 * half;
    for l in 0..LAYERS {
        let out = (p.hidden >> l).max(1);
        let (w, b) = layer_names(l);
        v.push((w, vec![out, width]));
        v.push((b, vec![out]));
        width = out;
    }
    v.push(("out.weight".to_string(), vec![1, p.factors + width]));
    v.push(("out.bias".to_string(), vec![1]));
    v
}

impl Ncf {
    fn get(&self, name: &str) -> Result<&Tensor> {
        self.weights.get(name).ok_or_else(|| RecsysError::new(ErrorKind::Corrupt, format!("NCF weight {name} missing")))
    }

    /// Logits for parallel user and item index vectors.
    pub fn forward(&self, users: &Tensor, items: &Tensor) -> Result<Tensor> {
        forward(&|n| self.get(n).cloned(), users, items)
    }

    /// The logit of every item for one known user (index into `user_ids`).
    pub fn score_all(&self, user: u32, n_items: usize) -> Result<Vec<f32>> {
        let users = Tensor::full(user, n_items, &Device::Cpu).map_err(candle)?;
        let items = Tensor::arange(0u32, n_items as u32, &Device::Cpu).map_err(candle)?;
        self.forward(&users, &items)?.to_vec1::<f32>().map_err(candle)
    }

    pub fn to_safetensors(&self) -> Result<Vec<u8>> {
        let mut named: Vec<(&String, &Tensor)> = self.weights.iter().collect();
        named.sort_by(|a, b| a.0.cmp(b.0));
        safetensors::tensor::serialize(named, None)
            .map_err(|e| RecsysError::new(ErrorKind::Corrupt, format!("safetensors: {e}")))
    }

    pub fn from_safetensors(user_ids: Vec<i64>, n_items: usize, bytes: &[u8]) -> Result<Ncf> {
        let weights = candle_core::safetensors::load_buffer(bytes, &Device::Cpu).map_err(candle)?;
        let m = Ncf { user_ids, weights };
        let (u, i) = (m.get("user_gmf")?.dims(), m.get("item_gmf")?.dims());
        if u.len() != 2 || i.len() != 2 || u[0] != m.user_ids.len() || i[0] != n_items {
            return Err(RecsysError::new(ErrorKind::Corrupt, "NCF embeddings do not match the catalogue"));
        }
        Ok(m)
    }
}

fn forward(get: &dyn Fn(&str) -> Result<Tensor>, users: &Tensor, items: &Tensor) -> Result<Tensor> {
    let c = candle;
    let gmf = get("user_gmf")?.index_select(users, 0).map_err(c)?.mul(&get("item_gmf")?.index_select(items, 0).map_err(c)?).map_err(c)?;
    let mut h = Tensor::cat(
        &[get("user_mlp")?.index_select(users, 0).map_err(c)?, get("item_mlp")?.index_select(items, 0).map_err(c)?],
        1,
    )
    .map_err(c)?;
    for l in 0..LAYERS {
        let (w, b) = layer_names(l);
        h = h.matmul(&get(&w)?.t().map_err(c)?).map_err(c)?.broadcast_add(&get(&b)?).map_err(c)?.relu().map_err(c)?;
    }
    let joined = Tensor::cat(&[gmf, h], 1).map_err(c)?;
    let out = joined
        .matmul(&get("out.weight")?.t().map_err(c)?)
        .map_err(c)?
        .broadcast_add(&get("out.bias")?)
        .map_err(c)?;
    out.squeeze(1).map_err(c)
}

/// Mean binary cross-entropy of logits x against 0/1 targets t, computed stably:
/// max(x, 0) − x·t + ln(1 + e^−|x|).
fn bce_with_logits(x: &Tensor, t: &Tensor) -> candle_core::Result<Tensor> {
    let softplus = x.abs()?.neg()?.exp()?.affine(1.0, 1.0)?.log()?;
    (x.relu()? - x.mul(t)?)?.add(&softplus)?.mean_all()
}

pub fn fit(data: &Interactions, p: &NcfParams, pool: &rayon::ThreadPool, progress: &mut dyn Progress) -> Result<Ncf> {
    let (n_users, n_items, nnz) = (data.n_users(), data.n_items(), data.nnz());
    if n_items < 2 {
        return Err(RecsysError::invalid("ncf needs at least two items to sample negatives"));
    }
    let m = &data.matrix;
    let mut rng = Rng::new(p.seed);
    // Initial weights: N(0, 0.01) embeddings (as the paper), uniform ±1/√fan_in layers.
    let mut vars: Vec<(String, Var)> = Vec::new();
    for (name, shape) in shapes(n_users, n_items, p) {
        let count: usize = shape.iter().product();
        let values: Vec<f32> = if name.ends_with("_gmf") || name.ends_with("_mlp") {
            (0..count).map(|_| (rng.normal() * 0.01) as f32).collect()
        } else {
            let bound = 1.0 / (*shape.last().unwrap_or(&1) as f64).sqrt();
            (0..count).map(|_| ((rng.next_f64() * 2.0 - 1.0) * bound) as f32).collect()
        };
        let t = Tensor::from_vec(values, shape, &Device::Cpu).map_err(candle)?;
        vars.push((name, Var::from_tensor(&t).map_err(candle)?));
    }
    let lookup: HashMap<String, Var> = vars.iter().cloned().collect();
    let get = |n: &str| -> Result<Tensor> {
        lookup.get(n).map(|v| v.as_tensor().clone()).ok_or_else(|| RecsysError::new(ErrorKind::Corrupt, format!("NCF weight {n} missing")))
    };
    let params = ParamsAdamW { lr: p.lr, weight_decay: p.weight_decay, ..Default::default() };
    let mut opt = AdamW::new(vars.iter().map(|(_, v)| v.clone()).collect(), params).map_err(candle)?;
    // The user of every stored interaction.
    let owner = m.owners();
    let per = 1 + p.negatives;
    for epoch in 0..p.epochs {
        // Every positive with `negatives` unseen items drawn uniformly, in a seeded order.
        let mut samples: Vec<(u32, u32, f32)> = Vec::with_capacity(nnz * per);
        for pos in 0..nnz {
            let u = owner[pos];
            samples.push((u, m.indices[pos], 1.0));
            let (seen, _) = m.row(u as usize);
            for _ in 0..p.negatives {
                let j = loop {
                    let j = rng.below(n_items as u64) as u32;
                    if seen.len() >= n_items || seen.binary_search(&j).is_err() {
                        break j;
                    }
                };
                samples.push((u, j, 0.0));
            }
        }
        rng.shuffle(&mut samples);
        let (mut total, mut batches) = (0f64, 0usize);
        for (b, batch) in samples.chunks(p.batch_size).enumerate() {
            let us: Vec<u32> = batch.iter().map(|s| s.0).collect();
            let is: Vec<u32> = batch.iter().map(|s| s.1).collect();
            let ts: Vec<f32> = batch.iter().map(|s| s.2).collect();
            let loss: f32 = pool.install(|| -> Result<f32> {
                let n = batch.len();
                let users = Tensor::from_vec(us, n, &Device::Cpu).map_err(candle)?;
                let items = Tensor::from_vec(is, n, &Device::Cpu).map_err(candle)?;
                let target = Tensor::from_vec(ts, n, &Device::Cpu).map_err(candle)?;
                let logits = forward(&get, &users, &items)?;
                let loss = bce_with_logits(&logits, &target).map_err(candle)?;
                opt.backward_step(&loss).map_err(candle)?;
                loss.to_dtype(DType::F32).and_then(|l| l.to_scalar::<f32>()).map_err(candle)
            })?;
            total += loss as f64;
            batches += 1;
            // Between batches, on the calling thread: cancel stops training within one batch.
            progress.step(epoch * samples.len() + (b + 1) * p.batch_size, p.epochs * samples.len())?;
        }
        progress.epoch("ncf", epoch + 1, p.epochs, "bce", total / batches.max(1) as f64)?;
    }
    let weights = vars.into_iter().map(|(n, v)| (n, v.as_tensor().clone())).collect();
    Ok(Ncf { user_ids: data.user_ids.clone(), weights })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::interactions::two_groups;
    use crate::engine::NoProgress;

    fn params() -> NcfParams {
        NcfParams { factors: 8, hidden: 16, negatives: 4, epochs: 60, batch_size: 64, lr: 0.01, weight_decay: 0.0, seed: 3 }
    }

    #[test]
    fn learns_the_groups_deterministically_and_round_trips() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        let data = two_groups(10, 5);
        let m = fit(&data, &params(), &pool, &mut NoProgress).unwrap();
        for user in 0..20u32 {
            let s = m.score_all(user, 10).unwrap();
            let base = if user < 10 { 0 } else { 5 };
            let missing = s[base + user as usize % 5];
            let other = if user < 10 { 5..10 } else { 0..5 };
            assert!(other.clone().all(|i| s[i] < missing), "user {user}: {s:?}");
        }
        let again = fit(&data, &params(), &pool, &mut NoProgress).unwrap();
        assert_eq!(m.score_all(3, 10).unwrap(), again.score_all(3, 10).unwrap());
        let bytes = m.to_safetensors().unwrap();
        let back = Ncf::from_safetensors(m.user_ids.clone(), 10, &bytes).unwrap();
        assert_eq!(m.score_all(7, 10).unwrap(), back.score_all(7, 10).unwrap());
        assert!(Ncf::from_safetensors(m.user_ids.clone(), 11, &bytes).is_err());
        assert!(Ncf::from_safetensors(m.user_ids.clone(), 10, b"not safetensors").is_err());
    }
}
