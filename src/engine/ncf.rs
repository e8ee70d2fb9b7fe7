//! NeuMF (He et al. 2017): a GMF branch (user ⊙ item embeddings) and an MLP branch (concatenated
//! user and item embeddings through three ReLU layers), joined by a linear output to one logit.
//! Trained with Candle on the CPU: `negatives` sampled non-interacted items per positive, binary
//! cross-entropy on logits, AdamW — sparse for the four embedding tables (each batch gathers and
//! updates only the rows it uses, so an epoch costs the samples, not samples × table size), dense
//! for the layers. Weights are initialised from our seeded generator and batches are drawn in
//! seeded order, so a seed gives the same model. Persisted as safetensors.


use candle_core::{Device, Module, Tensor};
use candle_nn::VarBuilder;

use crate::engine::factors::Factors;
use crate::engine::format::{check_ids, In, Out};
use crate::engine::interactions::Interactions;
use crate::engine::interactions::index_of;
use crate::engine::model::{Model, Request, Scored};
use crate::engine::neural::{self, Dense, DeviceChoice, Schedule, SparseTable, Weights};
use crate::engine::params::Params;
use crate::engine::recommender::{Recommender, Trainer};
use crate::engine::rng::Rng;
use crate::engine::{ErrorKind, Progress, RecsysError, Result};

#[derive(Clone, Debug, PartialEq)]
pub struct NcfParams {
    /// GMF embedding size; the MLP uses `hidden`/2-sized embeddings and layers hidden, hidden/2, hidden/4.
    pub factors: usize,
    pub hidden: usize,
    pub negatives: usize,
    pub train: Schedule,
}

impl NcfParams {
    pub fn from_params(p: &mut Params) -> Result<Self> {
        Ok(NcfParams {
            factors: p.int("factors", 32, 1, 1024)? as usize,
            hidden: p.int("hidden", 64, 4, 4096)? as usize,
            negatives: p.int("negatives", 4, 1, 100)? as usize,
            // 5 epochs: chosen on a validation split of ML-100K's training rows (more overfit).
            train: Schedule::from_params(p, 5, 1024, 0.002)?,
        })
    }
}

pub fn memory_estimate(n_users: usize, n_items: usize, nnz: usize, p: &NcfParams) -> usize {
    // embedding tables with Adam's two moments: 3 copies; the interactions' owners and their order.
    (n_users + n_items) * (p.factors + p.hidden / 2) * 4 * 3 + nnz * 12
}

/// The trained network and its weights by name (safetensors keys), on the CPU.
#[derive(Clone, Debug)]
pub struct Ncf {
    pub user_ids: Vec<i64>,
    pub weights: Weights,
    net: NeuMf,
    /// user_gmf, item_gmf, user_mlp, item_mlp.
    tables: [Tensor; 4],
}

impl PartialEq for Ncf {
    fn eq(&self, other: &Ncf) -> bool {
        self.user_ids == other.user_ids && self.weights == other.weights
    }
}

const LAYERS: usize = 3;

const EMBEDDINGS: [&str; 4] = ["user_gmf", "item_gmf", "user_mlp", "item_mlp"];

/// The embedding tables' widths (user_gmf, item_gmf, user_mlp, item_mlp).
fn widths(p: &NcfParams) -> [usize; 4] {
    let half = (p.hidden / 2).max(1);
    [p.factors, p.factors, half, half]
}

/// NeuMF's dense part: the MLP (`mlp0`..`mlp2`, ReLU) over the concatenated MLP embeddings, and
/// the output layer (`out`) over [GMF product, MLP output]. The embeddings come in as rows (a
/// batch's gathered rows while training, the stored tables' rows when serving).
#[derive(Clone, Debug)]
struct NeuMf {
    mlp: Vec<Dense>,
    out: Dense,
}

impl NeuMf {
    /// `gmf` and `mlp_emb`: the GMF and MLP embedding widths; `hidden` the first layer's.
    fn new(gmf: usize, mlp_emb: usize, hidden: usize, vb: VarBuilder) -> candle_core::Result<NeuMf> {
        let mut width = 2 * mlp_emb;
        let mut mlp = Vec::with_capacity(LAYERS);
        for l in 0..LAYERS {
            let out = (hidden >> l).max(1);
            // The bias's bound is 1/√outputs, as this model has always started.
            mlp.push(neural::linear(width, out, neural::fan_in(out), vb.pp(format!("mlp{l}")))?);
            width = out;
        }
        let out = neural::linear(gmf + width, 1, neural::fan_in(1), vb.pp("out"))?;
        Ok(NeuMf { mlp, out })
    }

    /// Logits, one per row of the four embedding row sets (user_gmf, item_gmf, user_mlp, item_mlp).
    fn forward(&self, rows: [&Tensor; 4]) -> candle_core::Result<Tensor> {
        let gmf = rows[0].mul(rows[1])?;
        let mut h = Tensor::cat(&[rows[2], rows[3]], 1)?;
        for layer in &self.mlp {
            h = layer.forward(&h)?.relu()?;
        }
        self.out.forward(&Tensor::cat(&[gmf, h], 1)?)?.squeeze(1)
    }
}

impl Ncf {
    /// Logits for parallel user and item index vectors.
    pub fn forward(&self, users: &Tensor, items: &Tensor) -> Result<Tensor> {
        let [ug, ig, um, im] = &self.tables;
        let rows = [ug.index_select(users, 0)?, ig.index_select(items, 0)?, um.index_select(users, 0)?, im.index_select(items, 0)?];
        Ok(self.net.forward([&rows[0], &rows[1], &rows[2], &rows[3]])?)
    }

    /// The logit of every item for one known user (index into `user_ids`).
    pub fn score_all(&self, user: u32, n_items: usize) -> Result<Vec<f32>> {
        let users = Tensor::full(user, n_items, &Device::Cpu)?;
        let items = Tensor::arange(0u32, n_items as u32, &Device::Cpu)?;
        Ok(self.forward(&users, &items)?.to_vec1::<f32>()?)
    }

    /// Each item's GMF and MLP embeddings side by side (n_items × width), and the width.
    pub fn item_vectors(&self) -> Result<(Vec<f32>, usize)> {
        let t = Tensor::cat(&[&self.tables[1], &self.tables[3]], 1)?;
        let k = t.dims()[1];
        Ok((t.flatten_all()?.to_vec1::<f32>()?, k))
    }

    /// The model of stored weights, checked against the catalogue.
    pub fn checked(user_ids: Vec<i64>, n_items: usize, weights: Weights) -> Result<Ncf> {
        let (ug, ig, um, im) = (weights.dims("user_gmf", 2)?, weights.dims("item_gmf", 2)?, weights.dims("user_mlp", 2)?, weights.dims("item_mlp", 2)?);
        if ug[0] != user_ids.len() || ig[0] != n_items || um[0] != user_ids.len() || im[0] != n_items || ug[1] != ig[1] || um[1] != im[1] {
            return Err(RecsysError::new(ErrorKind::Corrupt, "NCF embeddings do not match the catalogue"));
        }
        let hidden = weights.dims("mlp0.weight", 2)?[0];
        let net = NeuMf::new(ug[1], um[1], hidden, weights.vb()).map_err(neural::corrupt)?;
        let tables = EMBEDDINGS.map(|n| weights.0[n].clone());
        Ok(Ncf { user_ids, weights, net, tables })
    }
}

/// Mean binary cross-entropy of logits x against 0/1 targets t, computed stably:
/// max(x, 0) − x·t + ln(1 + e^−|x|).
fn bce_with_logits(x: &Tensor, t: &Tensor) -> candle_core::Result<Tensor> {
    let softplus = x.abs()?.neg()?.exp()?.affine(1.0, 1.0)?.log()?;
    (x.relu()? - x.mul(t)?)?.add(&softplus)?.mean_all()
}

pub fn fit(
    data: &Interactions,
    p: &NcfParams,
    device: DeviceChoice,
    pool: &rayon::ThreadPool,
    progress: &mut dyn Progress,
) -> Result<Ncf> {
    let (n_users, n_items, nnz) = (data.n_users(), data.n_items(), data.nnz());
    if n_items < 2 {
        return Err(RecsysError::invalid("ncf needs at least two items to sample negatives"));
    }
    let dev = device.open("ncf", progress)?;
    let m = &data.matrix;
    let mut rng = Rng::new(p.train.seed);
    // N(0, 0.01) embeddings, as the paper.
    let rows = [n_users, n_items, n_users, n_items];
    let mut tables: Vec<SparseTable> =
        widths(p).iter().zip(rows).map(|(&w, r)| SparseTable::new(r, w, 0.01, &mut rng)).collect();
    let w = widths(p);
    let (net, vars) = neural::build(&mut rng, &dev, |vb| NeuMf::new(w[0], w[2], p.hidden, vb))?;
    let mut opt = neural::adamw(&vars, &p.train)?;
    // The user of every stored interaction, and the order the positives are visited in.
    let owner = m.owners();
    let mut order: Vec<usize> = (0..nnz).collect();
    let per = 1 + p.negatives;
    // Each batch: about batch_size samples, every positive with its `negatives` unseen items.
    let positives = p.train.batch_size.div_ceil(per).max(1);
    let total = p.train.epochs * nnz * per;
    let mut t = 0;
    for epoch in 0..p.train.epochs {
        rng.shuffle(&mut order);
        let (mut sum, mut batches) = (0f64, 0usize);
        for (b, chunk) in order.chunks(positives).enumerate() {
            let mut samples: Vec<(u32, u32, f32)> = Vec::with_capacity(chunk.len() * per);
            for &pos in chunk {
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
            let n = samples.len();
            let (user_rows, us) = neural::localize(&samples.iter().map(|s| s.0).collect::<Vec<_>>());
            let (item_rows, is) = neural::localize(&samples.iter().map(|s| s.1).collect::<Vec<_>>());
            let ts: Vec<f32> = samples.iter().map(|s| s.2).collect();
            let picked = [&user_rows, &item_rows, &user_rows, &item_rows];
            let gathered = tables.iter().zip(picked).map(|(tb, r)| tb.gather(r, &dev)).collect::<Result<Vec<_>>>()?;
            let done = epoch * nnz * per + (b * positives + chunk.len()) * per;
            let (loss, grads) = neural::step_with(pool, &mut opt, progress, done, total, || {
                let users = Tensor::from_vec(us, n, &dev)?;
                let items = Tensor::from_vec(is, n, &dev)?;
                let target = Tensor::from_vec(ts, n, &dev)?;
                let g: Vec<Tensor> = gathered.iter().zip([&users, &items, &users, &items]).map(|(v, ix)| v.as_tensor().index_select(ix, 0)).collect::<candle_core::Result<_>>()?;
                let loss = bce_with_logits(&net.forward([&g[0], &g[1], &g[2], &g[3]])?, &target)?;
                Ok((loss, gathered.clone()))
            })?;
            t += 1;
            for ((tb, r), g) in tables.iter_mut().zip(picked).zip(&grads) {
                tb.update(r, g, t, &p.train);
            }
            sum += loss;
            batches += 1;
        }
        progress.epoch("ncf", epoch + 1, p.train.epochs, "bce", sum / batches.max(1) as f64)?;
    }
    let mut weights = Weights::from_vars(vars)?;
    for (name, tb) in EMBEDDINGS.iter().zip(tables) {
        weights.0.insert(name.to_string(), tb.into_tensor()?);
    }
    Ncf::checked(data.user_ids.clone(), n_items, weights)
}

impl Ncf {
    pub fn load(r: &In, n_items: usize) -> Result<Ncf> {
        let user_ids = r.i64s("user_ids")?;
        check_ids(&user_ids, "user ids")?;
        Ncf::checked(user_ids, n_items, Weights::load(r)?)
    }
}

impl Trainer for NcfParams {
    fn is_neural(&self) -> bool {
        true
    }

    fn memory_estimate(&self, data: &Interactions, _: usize) -> usize {
        memory_estimate(data.n_users(), data.n_items(), data.nnz(), self)
    }

    fn fit(&self, data: &Interactions, device: DeviceChoice, pool: &rayon::ThreadPool, progress: &mut dyn Progress) -> Result<Box<dyn Recommender>> {
        Ok(Box::new(fit(data, self, device, pool, progress)?))
    }
}

impl Ncf {
    /// Logits of every item for a trained user (None for a user the model has not seen).
    fn user_scores(&self, user_id: Option<i64>, n_items: usize) -> Result<Option<Vec<f32>>> {
        let Some(u) = user_id.and_then(|u| index_of(&self.user_ids, u)) else { return Ok(None) };
        self.score_all(u, n_items).map(Some)
    }
}

impl Recommender for Ncf {
    fn name(&self) -> &'static str {
        "ncf"
    }

    /// A user the model was trained on is scored from their embedding; anyone else gets the
    /// popularity answer.
    fn score(&self, m: &Model, req: &Request, _: &[(u32, f32)]) -> Result<Option<Scored>> {
        Ok(self.user_scores(req.user_id, m.n_items())?.map(Scored::all))
    }

    fn predict(&self, m: &Model, req: &Request, _: &[(u32, f32)], i: usize) -> Result<Option<f32>> {
        Ok(self.user_scores(req.user_id, m.n_items())?.map(|s| s[i]))
    }

    /// weight × the cosine of the two items' embeddings (the score itself comes from the
    /// user's embedding, not the history).
    fn contributions(&self, _: &Model, _: &Request, history: &[(u32, f32)], i: usize) -> Result<Vec<(u32, f32)>> {
        let (v, k) = self.item_vectors()?;
        let row = |j: usize| &v[j * k..(j + 1) * k];
        Ok(history.iter().map(|&(j, w)| (j, w * crate::engine::linalg::cosine(row(j as usize), row(i)))).filter(|p| p.1 > 0.0).collect())
    }

    fn similar_items(&self, _: &Model, item: Option<usize>, n: usize) -> Result<Vec<(u32, f32)>> {
        let Some(i) = item else { return Ok(Vec::new()) };
        let (v, k) = self.item_vectors()?;
        Ok(Factors::nearest(&v, k, i, n))
    }

    /// Its part of the model file: `user_ids` and the network's `weights.*` (user_gmf,
    /// item_gmf, user_mlp, item_mlp embeddings; mlp0..2 and out layers).
    fn store<'a>(&'a self, out: &mut Out<'_, 'a>) -> Result<()> {
        out.i64s("user_ids", &self.user_ids);
        self.weights.store(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::format::round_trip;
    use crate::engine::interactions::two_groups;
    use crate::engine::NoProgress;

    fn params() -> NcfParams {
        NcfParams { factors: 8, hidden: 16, negatives: 4, train: Schedule { epochs: 60, batch_size: 64, lr: 0.01, weight_decay: 0.0, seed: 3 } }
    }

    #[test]
    fn learns_the_groups_deterministically_and_round_trips() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        let data = two_groups(10, 5);
        let m = fit(&data, &params(), DeviceChoice::Cpu, &pool, &mut NoProgress).unwrap();
        for user in 0..20u32 {
            let s = m.score_all(user, 10).unwrap();
            let base = if user < 10 { 0 } else { 5 };
            let missing = s[base + user as usize % 5];
            let other = if user < 10 { 5..10 } else { 0..5 };
            assert!(other.clone().all(|i| s[i] < missing), "user {user}: {s:?}");
        }
        let again = fit(&data, &params(), DeviceChoice::Cpu, &pool, &mut NoProgress).unwrap();
        assert_eq!(m.score_all(3, 10).unwrap(), again.score_all(3, 10).unwrap());
        let back = round_trip(|o| m.store(o), |r| Ncf::load(r, 10)).unwrap();
        assert_eq!(m.score_all(7, 10).unwrap(), back.score_all(7, 10).unwrap());
        assert!(round_trip(|o| m.store(o), |r| Ncf::load(r, 11)).is_err());
    }
}
