//! Two-tower retrieval over item text. The item tower turns an item's text into a hashed TF-IDF
//! bag of words, sums the buckets' embeddings (plus, for items seen in training, an id embedding)
//! and passes that through a two-layer MLP; the user tower averages the item-tower vectors of the
//! user's history and passes that through its own MLP; the score is their dot product.
//!
//! The id embedding is dropped for a random `id_dropout` share of the items at every batch
//! (DropoutNet, Volkovs et al. 2017), so the text path alone must also rank well: an item added to
//! the items table after training is encoded from its text and recommended without retraining.
//! Trained with the full softmax over the catalogue (each interaction is a positive, the user's
//! other items the history), AdamW, with Candle.

use std::collections::HashMap;

use candle_core::{Device, Module, Tensor};
use candle_nn::{Init, VarBuilder};

use crate::engine::factors::Factors;
use crate::engine::format::{In, Out};
use crate::engine::interactions::Interactions;
use crate::engine::interactions::index_of;
use crate::engine::model::{Model, Request, Scored};
use crate::engine::model::{text_bytes, untrained_eligible, untrained_texts};
use crate::engine::neural::{self, Dense, DeviceChoice, Schedule, Weights};
use crate::engine::params::Params;
use crate::engine::recommender::{Recommender, Trainer};
use crate::engine::rng::Rng;
use crate::engine::text::words;
use crate::engine::{ErrorKind, Progress, RecsysError, Result};

#[derive(Clone, Debug, PartialEq)]
pub struct TwoTowerParams {
    pub factors: usize,
    pub buckets: usize,
    pub id_dropout: f64,
    pub train: Schedule,
}

impl TwoTowerParams {
    pub fn from_params(p: &mut Params) -> Result<Self> {
        Ok(TwoTowerParams {
            factors: p.int("factors", 64, 2, 1024)? as usize,
            buckets: p.int("buckets", 16384, 16, 1 << 22)? as usize,
            id_dropout: p.float("id_dropout", 0.5, 0.0, 1.0)?,
            // 20 epochs at lr 0.005, batch 1024: chosen on a validation split of ML-100K's training rows.
            train: Schedule::from_params(p, 20, 1024, 0.005)?,
        })
    }
}

pub fn memory_estimate(n_items: usize, text_bytes: usize, p: &TwoTowerParams) -> usize {
    (p.buckets + n_items + 4 * p.factors) * p.factors * 16 + p.buckets * 4 + text_bytes * 8
        + p.train.batch_size * n_items * 16
        + n_items * p.factors * 12
}

/// FNV-1a: a fixed, platform-independent hash, so a bucket means the same after restore.
fn bucket(word: &str, buckets: usize) -> u32 {
    let h = word.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3));
    (h % buckets as u64) as u32
}

/// Inverse document frequency of every bucket over a catalogue's texts: ln((1 + n)/(1 + df)) + 1.
fn idf(texts: &[&str], buckets: usize) -> Vec<f32> {
    let mut df = vec![0u32; buckets];
    for t in texts {
        let mut seen: Vec<u32> = words(t).iter().map(|w| bucket(w, buckets)).collect();
        seen.sort_unstable();
        seen.dedup();
        seen.into_iter().for_each(|b| df[b as usize] += 1);
    }
    let n = texts.len() as f32;
    df.into_iter().map(|d| ((1.0 + n) / (1.0 + d as f32)).ln() + 1.0).collect()
}

/// The L2-normalised TF-IDF bag of one text, as (bucket, weight) sorted by bucket.
fn bag(text: &str, idf: &[f32]) -> Vec<(u32, f32)> {
    let mut counts: HashMap<u32, f32> = HashMap::new();
    words(text).iter().for_each(|w| *counts.entry(bucket(w, idf.len())).or_default() += 1.0);
    let mut v: Vec<(u32, f32)> = counts.into_iter().map(|(b, c)| (b, c * idf[b as usize])).collect();
    v.sort_unstable_by_key(|p| p.0);
    let norm = v.iter().map(|p| p.1 * p.1).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|p| p.1 /= norm);
    }
    v
}

/// The towers: a bucket embedding (`token_emb`) and an id embedding (`id_emb`) summed into the
/// item tower's MLP (`item1`, `item2`), and the user tower's MLP (`user1`, `user2`) over the mean
/// of the history's item vectors.
#[derive(Clone, Debug)]
struct Towers {
    token_emb: Tensor,
    id_emb: Tensor,
    item: [Dense; 2],
    user: [Dense; 2],
}

impl Towers {
    fn new(buckets: usize, n_items: usize, d: usize, vb: VarBuilder) -> candle_core::Result<Towers> {
        let emb = Init::Randn { mean: 0.0, stdev: 0.1 };
        let layer = |name: &str| neural::linear(d, d, Init::Const(0.0), vb.pp(name));
        Ok(Towers {
            token_emb: vb.get_with_hints((buckets, d), "token_emb", emb)?,
            id_emb: vb.get_with_hints((n_items, d), "id_emb", emb)?,
            item: [layer("item1")?, layer("item2")?],
            user: [layer("user1")?, layer("user2")?],
        })
    }

    fn mlp(x: &Tensor, layers: &[Dense; 2]) -> candle_core::Result<Tensor> {
        layers[1].forward(&layers[0].forward(x)?.relu()?)
    }

    /// Item-tower vectors (rows × d) for text bags, plus `ids` rows of the id embedding scaled by
    /// `id_keep` (0 drops it; cold items have no id row and pass None).
    fn items(&self, bags: &[Vec<(u32, f32)>], ids: Option<(&[u32], &[f32])>) -> Result<Tensor> {
        let dev = self.token_emb.device();
        let d = self.token_emb.dim(1)?;
        let (mut rows, mut cols, mut weights) = (Vec::new(), Vec::new(), Vec::new());
        for (r, b) in bags.iter().enumerate() {
            for &(t, w) in b {
                rows.push(r as u32);
                cols.push(t);
                weights.push(w);
            }
        }
        let mut x = Tensor::zeros((bags.len(), d), candle_core::DType::F32, dev)?;
        if !rows.is_empty() {
            let n = rows.len();
            let picked = self.token_emb.index_select(&Tensor::from_vec(cols, n, dev)?, 0)?;
            let picked = picked.broadcast_mul(&Tensor::from_vec(weights, (n, 1), dev)?)?;
            x = x.index_add(&Tensor::from_vec(rows, n, dev)?, &picked, 0)?;
        }
        if let Some((ids, keep)) = ids {
            let n = ids.len();
            let id = self.id_emb.index_select(&Tensor::from_slice(ids, n, dev)?, 0)?;
            let keep = Tensor::from_slice(keep, (n, 1), dev)?;
            x = x.add(&id.broadcast_mul(&keep)?)?;
        }
        Ok(Towers::mlp(&x, &self.item)?)
    }

    /// User-tower vectors from history averaging weights (users × items) over item vectors.
    fn users(&self, averaging: &Tensor, items: &Tensor) -> Result<Tensor> {
        Ok(Towers::mlp(&averaging.matmul(items)?, &self.user)?)
    }
}

/// The trained towers, and every trained item's vector (computed once, not stored).
#[derive(Clone, Debug)]
pub struct TwoTower {
    pub weights: Weights,
    towers: Towers,
    pub idf: Vec<f32>,
    /// n_items × d, the item tower on each trained item's text and id.
    pub item_vectors: Vec<f32>,
    pub k: usize,
    /// Encodings of texts not trained on, by text.
    pub memo: crate::engine::text::Memo<Vec<f32>>,
}

impl PartialEq for TwoTower {
    fn eq(&self, other: &TwoTower) -> bool {
        self.weights == other.weights && self.idf == other.idf && self.item_vectors == other.item_vectors && self.k == other.k
    }
}

impl TwoTower {
    /// Rebuild from stored weights (the towers, the idf of every bucket and the trained items'
    /// vectors) for a catalogue of `n_items`.
    pub fn from_weights(weights: Weights, n_items: usize) -> Result<TwoTower> {
        let idf: Vec<f32> = weights.get("idf")?.to_vec1::<f32>()?;
        let (t, i, v) = (weights.dims("token_emb", 2)?, weights.dims("id_emb", 2)?, weights.dims("item_vectors", 2)?);
        if t[0] != idf.len() || i[0] != n_items || v[0] != n_items || i[1] != t[1] || v[1] != t[1] {
            return Err(RecsysError::new(ErrorKind::Corrupt, "two_tower weights do not match the catalogue"));
        }
        let item_vectors = weights.get("item_vectors")?.flatten_all()?.to_vec1::<f32>()?;
        let towers = Towers::new(t[0], n_items, t[1], weights.vb()).map_err(neural::corrupt)?;
        Ok(TwoTower { weights, towers, idf, item_vectors, k: t[1], memo: Default::default() })
    }

    /// Item-tower vectors of texts that were not in training (text only), rows × k.
    /// `encode_texts`, each text's encoding remembered (the items added since training, which
    /// serving meets on every call).
    pub fn encoded(&self, texts: &[&str]) -> Result<Vec<f32>> {
        let known: Vec<Option<Vec<f32>>> = texts.iter().map(|t| self.memo.get(t)).collect();
        let missing: Vec<&str> = texts.iter().zip(&known).filter(|(_, k)| k.is_none()).map(|(t, _)| *t).collect();
        let fresh = self.encode_texts(&missing)?;
        let mut fresh = fresh.chunks(self.k.max(1));
        let mut out = Vec::with_capacity(texts.len() * self.k);
        for (t, k) in texts.iter().zip(known) {
            match k {
                Some(v) => out.extend(v),
                None => {
                    let v = fresh.next().unwrap_or_default().to_vec();
                    self.memo.put(t, v.clone());
                    out.extend(v);
                }
            }
        }
        Ok(out)
    }

    pub fn encode_texts(&self, texts: &[&str]) -> Result<Vec<f32>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let bags: Vec<Vec<(u32, f32)>> = texts.iter().map(|t| bag(t, &self.idf)).collect();
        Ok(self.towers.items(&bags, None)?.flatten_all()?.to_vec1::<f32>()?)
    }

    /// The user vector from the item vectors of their history (each k long); None if empty.
    pub fn user_vector(&self, history: &[&[f32]]) -> Result<Option<Vec<f32>>> {
        if history.is_empty() {
            return Ok(None);
        }
        let mut mean = vec![0f32; self.k];
        for v in history {
            mean.iter_mut().zip(v.iter()).for_each(|(m, x)| *m += x / history.len() as f32);
        }
        let x = Tensor::from_vec(mean, (1, self.k), &Device::Cpu)?;
        Ok(Some(Towers::mlp(&x, &self.towers.user)?.flatten_all()?.to_vec1::<f32>()?))
    }
}

pub fn fit(
    data: &Interactions,
    p: &TwoTowerParams,
    device: DeviceChoice,
    pool: &rayon::ThreadPool,
    progress: &mut dyn Progress,
) -> Result<TwoTower> {
    let Some(texts) = &data.item_text else {
        return Err(RecsysError::invalid("two_tower needs item texts").with_hint("pass items => 'items_table', item_text => 'text_column'"));
    };
    let dev = device.open("two_tower", progress)?;
    let (n_items, nnz) = (data.n_items(), data.nnz());
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let idf = idf(&refs, p.buckets);
    let bags: Vec<Vec<(u32, f32)>> = refs.iter().map(|t| bag(t, &idf)).collect();
    let mut rng = Rng::new(p.train.seed);
    let (towers, vars) = neural::build(&mut rng, &dev, |vb| Towers::new(p.buckets, n_items, p.factors, vb))?;
    let mut opt = neural::adamw(&vars, &p.train)?;
    let m = &data.matrix;
    let owner = m.owners();
    let mut order: Vec<u32> = (0..nnz as u32).collect();
    let ids: Vec<u32> = (0..n_items as u32).collect();
    let total = p.train.epochs * nnz;
    for epoch in 0..p.train.epochs {
        rng.shuffle(&mut order);
        let (mut sum, mut batches) = (0f64, 0usize);
        for (b, batch) in order.chunks(p.train.batch_size).enumerate() {
            let n = batch.len();
            // Each example's history is the user's other items, averaged.
            let mut averaging = vec![0f32; n * n_items];
            let mut labels = Vec::with_capacity(n);
            for (r, &pos) in batch.iter().enumerate() {
                let (items, _) = m.row(owner[pos as usize] as usize);
                let target = m.indices[pos as usize];
                let share = if items.len() > 1 { 1.0 / (items.len() - 1) as f32 } else { 0.0 };
                items.iter().filter(|&&j| j != target).for_each(|&j| averaging[r * n_items + j as usize] = share);
                labels.push(target);
            }
            let keep: Vec<f32> = (0..n_items).map(|_| if rng.next_f64() < p.id_dropout { 0.0 } else { 1.0 }).collect();
            let done = epoch * nnz + b * p.train.batch_size + n;
            sum += neural::step(pool, &mut opt, progress, done, total, || {
                let items = towers.items(&bags, Some((&ids, &keep)))?;
                let users = towers.users(&Tensor::from_vec(averaging, (n, n_items), &dev)?, &items)?;
                Ok(neural::catalogue_cross_entropy(&users, &items, &labels)?)
            })?;
            batches += 1;
        }
        progress.epoch("two_tower", epoch + 1, p.train.epochs, "cross-entropy", sum / batches.max(1) as f64)?;
    }
    // Every trained item's vector, with its id embedding, kept with the weights for serving.
    let vectors = pool.install(|| towers.items(&bags, Some((&ids, &vec![1.0; n_items]))))?;
    let mut weights = Weights::from_vars(vars)?;
    weights.0.insert("item_vectors".to_string(), vectors.to_device(&Device::Cpu)?);
    weights.0.insert("idf".to_string(), Tensor::from_vec(idf, p.buckets, &Device::Cpu)?);
    TwoTower::from_weights(weights, n_items)
}

impl TwoTower {
    pub fn load(r: &In, n_items: usize) -> Result<TwoTower> {
        TwoTower::from_weights(Weights::load(r)?, n_items)
    }
}

impl Trainer for TwoTowerParams {
    fn needs_item_text(&self) -> bool {
        true
    }

    fn is_neural(&self) -> bool {
        true
    }

    fn memory_estimate(&self, data: &Interactions, _: usize) -> usize {
        memory_estimate(data.n_items(), text_bytes(data), self) + data.nnz() * 4
    }

    fn fit(&self, data: &Interactions, device: DeviceChoice, pool: &rayon::ThreadPool, progress: &mut dyn Progress) -> Result<Box<dyn Recommender>> {
        Ok(Box::new(fit(data, self, device, pool, progress)?))
    }
}

impl TwoTower {
    /// The user as the towers place them from the live history: trained items by their stored
    /// vectors, other items by their text in `items`; None when no history item is either.
    fn user_of(&self, m: &Model, history: &[(i64, f32)], items: &[(i64, String)]) -> Result<Option<Vec<f32>>> {
        let texts = untrained_texts(&m.item_ids, history, items);
        let k = self.k;
        let mut vectors: Vec<&[f32]> = Vec::new();
        let mut cold: Vec<&str> = Vec::new();
        for &(id, _) in history {
            match index_of(&m.item_ids, id) {
                Some(i) => vectors.push(&self.item_vectors[i as usize * k..(i as usize + 1) * k]),
                None => cold.extend(texts.get(&id).copied()),
            }
        }
        let encoded = self.encoded(&cold)?;
        vectors.extend(encoded.chunks(k.max(1)));
        self.user_vector(&vectors)
    }
}

impl Recommender for TwoTower {
    fn name(&self) -> &'static str {
        "two_tower"
    }

    fn scores_unknown_history(&self) -> bool {
        true
    }

    /// Every trained item by its stored vector, and the eligible items of the live items table
    /// it was not trained on by their text.
    fn score(&self, m: &Model, req: &Request, _: &[(u32, f32)]) -> Result<Option<Scored>> {
        let Some(u) = self.user_of(m, req.history, req.items)? else { return Ok(None) };
        let mut scores = vec![0f32; m.n_items()];
        crate::engine::linalg::matvec(&self.item_vectors, self.k, &u, &mut scores);
        let rows = untrained_eligible(m, req);
        let texts: Vec<&str> = rows.iter().map(|r| r.1.as_str()).collect();
        let encoded = self.encoded(&texts)?;
        let cold = rows.iter().zip(encoded.chunks(self.k.max(1))).map(|(r, e)| (r.0, crate::engine::linalg::dot(&u, e))).collect();
        Ok(Some(Scored { cold, ..Scored::all(scores) }))
    }

    fn explain_items(&self, m: &Model, req: &Request, _: &[(u32, f32)], targets: &[Option<usize>]) -> Result<Vec<Vec<(u32, f32)>>> {
        m.occlusion(req, targets)
    }

    fn similar_items(&self, _: &Model, item: Option<usize>, n: usize) -> Result<Vec<(u32, f32)>> {
        Ok(item.map(|i| Factors::nearest(&self.item_vectors, self.k, i, n)).unwrap_or_default())
    }

    fn reads_item_text(&self) -> bool {
        true
    }

    /// Its part of the model file: the towers' `weights.*` (token_emb, id_emb, the projection),
    /// `weights.idf` per hash bucket and `weights.item_vectors` (the item tower on every trained
    /// item, [n_items, k]).
    fn store<'a>(&'a self, out: &mut Out<'_, 'a>) -> Result<()> {
        self.weights.store(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::format::round_trip;
    use crate::engine::interactions::two_groups;
    use crate::engine::linalg::dot;
    use crate::engine::NoProgress;

    #[test]
    fn tokens_hash_stably_and_bags_are_normalised() {
        assert_eq!(bucket("comedy", 1 << 14), bucket("comedy", 1 << 14));
        let idf = idf(&["red apple", "red car", "blue car"], 64);
        let b = bag("red red apple", &idf);
        assert!((b.iter().map(|p| p.1 * p.1).sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(bag("", &idf).is_empty());
    }

    #[test]
    fn recommends_a_cold_item_by_its_text_and_round_trips() {
        // two taste groups; group 0's items are about fruit, group 1's about cars
        let mut data = two_groups(10, 5);
        let text = |i: usize| if i < 5 { format!("red fruit apple pear {i}") } else { format!("fast car engine wheel {i}") };
        data.item_text = Some((0..10).map(text).collect());
        let p = TwoTowerParams { factors: 16, buckets: 256, id_dropout: 0.5, train: Schedule { epochs: 30, batch_size: 32, lr: 0.01, weight_decay: 0.0, seed: 1 } };
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        let m = fit(&data, &p, DeviceChoice::Cpu, &pool, &mut NoProgress).unwrap();
        let cold = m.encode_texts(&["fruit apple cherry", "car engine truck"]).unwrap();
        let (fruit, car) = (&cold[..16], &cold[16..]);
        for (user, likes_fruit) in [(0usize, true), (15, false)] {
            let (items, _) = data.matrix.row(user);
            let hist: Vec<&[f32]> = items.iter().map(|&i| &m.item_vectors[i as usize * 16..(i as usize + 1) * 16]).collect();
            let u = m.user_vector(&hist).unwrap().unwrap();
            assert_eq!(dot(&u, fruit) > dot(&u, car), likes_fruit, "user {user}");
        }
        let again = fit(&data, &p, DeviceChoice::Cpu, &pool, &mut NoProgress).unwrap();
        assert_eq!(m.item_vectors, again.item_vectors);
        let back = round_trip(|o| m.store(o), |r| TwoTower::load(r, 10)).unwrap();
        assert_eq!(back, m);
        assert!(TwoTower::from_weights(m.weights.clone(), 9).is_err());
    }
}
