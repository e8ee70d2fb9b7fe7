//! Next-item recommendation from the ordered history: SASRec (Kang & McAuley 2018), a causal
//! self-attention encoder over the user's latest `max_len` items whose last position is matched
//! against the item embeddings. Chosen over GRU4Rec because every position of a sequence trains
//! in one pass of a few large matrix products (no step-by-step recurrence), which is what a CPU
//! and Candle do well, and it is the stronger of the two in the published comparisons.
//!
//! Trained with the full softmax over the catalogue at every position (cross-entropy; Klenitskiy
//! & Vasilev 2023 show this beats SASRec's original one-negative BCE), AdamW, seeded dropout.
//! Long histories are cut into windows of max_len + 1 items so every transition is trained on.

use candle_core::{Device, Tensor, D};

use crate::engine::factors::Factors;
use crate::engine::format::{In, Out};
use crate::engine::interactions::Interactions;
use crate::engine::interactions::index_of;
use crate::engine::model::{Model, Request, Scored};
use crate::engine::neural::{self, candle, DeviceChoice, Init, Named, Schedule, Weights};
use crate::engine::params::Params;
use crate::engine::recommender::{Recommender, Trainer};
use crate::engine::rng::Rng;
use crate::engine::{Progress, RecsysError, Result};

#[derive(Clone, Debug, PartialEq)]
pub struct SeqParams {
    pub factors: usize,
    pub max_len: usize,
    pub blocks: usize,
    pub dropout: f64,
    pub train: Schedule,
}

impl SeqParams {
    pub fn from_params(p: &mut Params) -> Result<Self> {
        Ok(SeqParams {
            factors: p.int("factors", 64, 2, 1024)? as usize,
            max_len: p.int("max_len", 50, 2, 1000)? as usize,
            blocks: p.int("blocks", 2, 1, 8)? as usize,
            dropout: p.float("dropout", 0.2, 0.0, 0.9)?,
            train: Schedule::from_params(p, 30, 128, 0.001)?,
        })
    }
}

pub fn memory_estimate(n_items: usize, p: &SeqParams) -> usize {
    let weights = ((n_items + 1 + p.max_len) * p.factors + p.blocks * 6 * p.factors * p.factors) * 4 * 4;
    let rows = p.train.batch_size * p.max_len;
    weights + rows * (n_items * 12 + p.factors * 4 * 40) + p.train.batch_size * p.max_len * p.max_len * p.blocks * 16
}

/// The trained encoder; item embedding row 0 is padding, item index i is row i + 1.
#[derive(Clone, Debug, PartialEq)]
pub struct Sasrec {
    pub max_len: usize,
    pub blocks: usize,
    pub weights: Weights,
}

fn shapes(n_items: usize, p: &SeqParams) -> Vec<(String, Vec<usize>, Init)> {
    let d = p.factors;
    let emb = Init::Normal(1.0 / (d as f64).sqrt());
    let mut v = vec![("item_emb".to_string(), vec![n_items + 1, d], emb), ("pos_emb".to_string(), vec![p.max_len, d], emb)];
    let norm = |v: &mut Vec<(String, Vec<usize>, Init)>, name: String| {
        v.push((format!("{name}.weight"), vec![d], Init::Ones));
        v.push((format!("{name}.bias"), vec![d], Init::Zeros));
    };
    for b in 0..p.blocks {
        norm(&mut v, format!("b{b}.ln1"));
        norm(&mut v, format!("b{b}.ln2"));
        for l in ["q", "k", "v", "o", "ffn1", "ffn2"] {
            v.push((format!("b{b}.{l}.weight"), vec![d, d], Init::FanIn));
            v.push((format!("b{b}.{l}.bias"), vec![d], Init::Zeros));
        }
    }
    norm(&mut v, "ln".to_string());
    v
}

/// Dropout while training: the generator and the rate.
type Dropout<'a> = Option<(&'a mut Rng, f64)>;

struct Net<'a> {
    get: &'a (dyn Fn(&str) -> Result<Tensor> + Sync),
    blocks: usize,
    dev: &'a Device,
}

impl Net<'_> {
    fn linear(&self, x: &Tensor, name: &str) -> Result<Tensor> {
        let (w, b) = ((self.get)(&format!("{name}.weight"))?, (self.get)(&format!("{name}.bias"))?);
        x.matmul(&w.t().map_err(candle)?).and_then(|y| y.broadcast_add(&b)).map_err(candle)
    }

    fn norm(&self, x: &Tensor, name: &str) -> Result<Tensor> {
        let (w, b) = ((self.get)(&format!("{name}.weight"))?, (self.get)(&format!("{name}.bias"))?);
        candle_nn::ops::layer_norm_slow(x, &w, &b, 1e-8).map_err(candle)
    }

    fn drop(&self, x: Tensor, dropout: &mut Dropout) -> Result<Tensor> {
        match dropout {
            Some((rng, p)) => match neural::dropout_mask(rng, x.dims(), *p, self.dev)? {
                Some(mask) => x.mul(&mask).map_err(candle),
                None => Ok(x),
            },
            None => Ok(x),
        }
    }

    /// Hidden states (batch·len × d) for left-padded sequences (0 = padding, item i = i + 1).
    fn forward(&self, seqs: &[u32], len: usize, mut dropout: Dropout) -> Result<Tensor> {
        let c = candle;
        let batch = seqs.len() / len;
        let emb = (self.get)("item_emb")?;
        let d = emb.dim(1).map_err(c)?;
        let ids = Tensor::from_slice(seqs, seqs.len(), self.dev).map_err(c)?;
        let positions: Vec<u32> = (0..seqs.len()).map(|k| (k % len) as u32).collect();
        let positions = Tensor::from_vec(positions, seqs.len(), self.dev).map_err(c)?;
        let keep: Vec<f32> = seqs.iter().map(|&s| if s > 0 { 1.0 } else { 0.0 }).collect();
        let keep = Tensor::from_vec(keep, (seqs.len(), 1), self.dev).map_err(c)?;
        // Attention mask: a position sees itself and earlier non-padding positions.
        let mut mask = vec![0f32; batch * len * len];
        for b in 0..batch {
            for i in 0..len {
                for j in 0..len {
                    if j > i || seqs[b * len + j] == 0 {
                        mask[(b * len + i) * len + j] = -1e9;
                    }
                }
            }
        }
        let mask = Tensor::from_vec(mask, (batch, len, len), self.dev).map_err(c)?;
        let scale = (d as f64).sqrt();
        let x = (emb.index_select(&ids, 0).map_err(c)? * scale).map_err(c)?;
        let x = x.add(&(self.get)("pos_emb")?.index_select(&positions, 0).map_err(c)?).map_err(c)?;
        let mut x = self.drop(x, &mut dropout)?.broadcast_mul(&keep).map_err(c)?;
        for b in 0..self.blocks {
            let q_in = self.norm(&x, &format!("b{b}.ln1"))?;
            let shape = (batch, len, d);
            let q = self.linear(&q_in, &format!("b{b}.q"))?.reshape(shape).map_err(c)?;
            let k = self.linear(&x, &format!("b{b}.k"))?.reshape(shape).map_err(c)?;
            let v = self.linear(&x, &format!("b{b}.v"))?.reshape(shape).map_err(c)?;
            let scores = (q.matmul(&k.t().map_err(c)?.contiguous().map_err(c)?).map_err(c)? / scale).map_err(c)?;
            let attn = candle_nn::ops::softmax(&scores.add(&mask).map_err(c)?, D::Minus1).map_err(c)?;
            let attn = self.drop(attn, &mut dropout)?;
            let out = attn.matmul(&v).map_err(c)?.reshape((batch * len, d)).map_err(c)?;
            let out = self.drop(self.linear(&out, &format!("b{b}.o"))?, &mut dropout)?;
            let y = self.norm(&q_in.add(&out).map_err(c)?, &format!("b{b}.ln2"))?;
            let f = self.linear(&self.linear(&y, &format!("b{b}.ffn1"))?.relu().map_err(c)?, &format!("b{b}.ffn2"))?;
            let f = self.drop(f, &mut dropout)?;
            x = y.add(&f).map_err(c)?.broadcast_mul(&keep).map_err(c)?;
        }
        self.norm(&x, "ln")
    }
}

/// The last `len` items of `history`, left-padded with 0, shifted to embedding rows.
fn window(history: &[u32], len: usize) -> Vec<u32> {
    let tail = &history[history.len().saturating_sub(len)..];
    let mut w = vec![0u32; len - tail.len()];
    w.extend(tail.iter().map(|&i| i + 1));
    w
}

impl Sasrec {
    pub fn n_items(&self) -> usize {
        self.weights.0.get("item_emb").map_or(0, |t| t.dims()[0].saturating_sub(1))
    }

    /// A score for every item given the user's items, oldest first (only the latest max_len count).
    pub fn score(&self, history: &[u32]) -> Result<Vec<f32>> {
        let get = |n: &str| self.weights.get(n).cloned();
        let net = Net { get: &get, blocks: self.blocks, dev: &Device::Cpu };
        let h = net.forward(&window(history, self.max_len), self.max_len, None)?;
        let last = h.narrow(0, self.max_len - 1, 1).map_err(candle)?;
        let items = self.item_embeddings()?;
        last.matmul(&items.t().map_err(candle)?).and_then(|s| s.squeeze(0)).and_then(|s| s.to_vec1::<f32>()).map_err(candle)
    }

    /// The item embeddings without the padding row (n_items × d).
    pub fn item_embeddings(&self) -> Result<Tensor> {
        self.weights.get("item_emb")?.narrow(0, 1, self.n_items()).map_err(candle)
    }

    pub fn checked(max_len: usize, blocks: usize, n_items: usize, weights: Weights) -> Result<Sasrec> {
        let m = Sasrec { max_len, blocks, weights };
        let (e, p) = (m.weights.dims("item_emb", 2)?, m.weights.dims("pos_emb", 2)?);
        let complete = (0..blocks).all(|b| m.weights.0.contains_key(&format!("b{b}.ffn2.weight")));
        if e[0] != n_items + 1 || p[0] != max_len || p[1] != e[1] || !complete {
            return Err(RecsysError::new(crate::engine::ErrorKind::Corrupt, "sequential weights do not match the catalogue"));
        }
        Ok(m)
    }
}

/// Training windows (inputs, next-item targets), each `max_len` long, left-padded with 0.
fn windows(data: &Interactions, max_len: usize) -> Vec<(Vec<u32>, Vec<u32>)> {
    let Some(seqs) = &data.sequences else { return Vec::new() };
    let mut out = Vec::new();
    for u in 0..data.n_users() {
        let s = seqs.row(u);
        let mut end = s.len();
        while end >= 2 {
            let start = end.saturating_sub(max_len + 1);
            let w = &s[start..end];
            out.push((window(&w[..w.len() - 1], max_len), window(&w[1..], max_len)));
            if start == 0 {
                break;
            }
            end = start + 1;
        }
    }
    out
}

pub fn fit(
    data: &Interactions,
    p: &SeqParams,
    device: DeviceChoice,
    pool: &rayon::ThreadPool,
    progress: &mut dyn Progress,
) -> Result<Sasrec> {
    if data.sequences.is_none() {
        return Err(RecsysError::invalid("sequential needs the time order of the interactions")
            .with_hint("pass time_column => 'your_timestamp_column'"));
    }
    let mut examples = windows(data, p.max_len);
    if examples.is_empty() {
        return Err(RecsysError::invalid("sequential needs at least one user with two or more interactions"));
    }
    let dev = device.device()?;
    let n_items = data.n_items();
    let mut rng = Rng::new(p.train.seed);
    let vars = neural::init_vars(&shapes(n_items, p), &mut rng, &dev)?;
    let named = Named::new(&vars);
    let get = |n: &str| named.get(n);
    let mut opt = neural::adamw(&vars, &p.train)?;
    let total = p.train.epochs * examples.len();
    for epoch in 0..p.train.epochs {
        rng.shuffle(&mut examples);
        let (mut sum, mut batches) = (0f64, 0usize);
        for (b, batch) in examples.chunks(p.train.batch_size).enumerate() {
            let inputs: Vec<u32> = batch.iter().flat_map(|e| e.0.iter().copied()).collect();
            let targets: Vec<u32> = batch.iter().flat_map(|e| e.1.iter().copied()).collect();
            // Only positions with a next item are scored.
            let rows: Vec<u32> = (0..targets.len() as u32).filter(|&k| targets[k as usize] > 0).collect();
            let labels: Vec<u32> = rows.iter().map(|&k| targets[k as usize] - 1).collect();
            let mut drop_rng = Rng::new(rng.next_u64());
            let net = Net { get: &get, blocks: p.blocks, dev: &dev };
            let done = epoch * examples.len() + b * p.train.batch_size + batch.len();
            sum += neural::step(pool, &mut opt, progress, done, total, || {
                let c = candle;
                let h = net.forward(&inputs, p.max_len, Some((&mut drop_rng, p.dropout)))?;
                let n = rows.len();
                let h = h.index_select(&Tensor::from_vec(rows, n, &dev).map_err(c)?, 0).map_err(c)?;
                let items = get("item_emb")?.narrow(0, 1, n_items).map_err(c)?;
                let logits = h.matmul(&items.t().map_err(c)?).map_err(c)?;
                neural::cross_entropy(&logits, &Tensor::from_vec(labels, n, &dev).map_err(c)?).map_err(c)
            })?;
            batches += 1;
        }
        progress.epoch("sequential", epoch + 1, p.train.epochs, "cross-entropy", sum / batches.max(1) as f64)?;
    }
    Ok(Sasrec { max_len: p.max_len, blocks: p.blocks, weights: Weights::from_vars(vars)? })
}

impl Sasrec {
    pub fn load(r: &In, n_items: usize) -> Result<Sasrec> {
        Sasrec::checked(
            r.usize("max_len")?,
            r.usize("blocks")?,
            n_items,
            Weights::load(r)?,
        )
    }
}

impl Trainer for SeqParams {
    fn needs_time(&self) -> bool {
        true
    }

    fn is_neural(&self) -> bool {
        true
    }

    fn memory_estimate(&self, data: &Interactions, _: usize) -> usize {
        memory_estimate(data.n_items(), self) + data.nnz() * 16
    }

    fn fit(&self, data: &Interactions, device: DeviceChoice, pool: &rayon::ThreadPool, progress: &mut dyn Progress) -> Result<Box<dyn Recommender>> {
        Ok(Box::new(fit(data, self, device, pool, progress)?))
    }
}

impl Recommender for Sasrec {
    fn name(&self) -> &'static str {
        "sequential"
    }

    /// Scores from the known history in its given (time) order.
    fn score(&self, m: &Model, req: &Request, _: &[(u32, f32)]) -> Result<Option<Scored>> {
        let known: Vec<u32> = req.history.iter().filter_map(|&(id, _)| index_of(&m.item_ids, id)).collect();
        if known.is_empty() {
            return Ok(None);
        }
        Ok(Some(Scored::all(Sasrec::score(self, &known)?)))
    }

    fn explain_items(&self, m: &Model, req: &Request, _: &[(u32, f32)], targets: &[Option<usize>]) -> Result<Vec<Vec<(u32, f32)>>> {
        m.occlusion(req, targets)
    }

    fn similar_items(&self, m: &Model, item: Option<usize>, n: usize) -> Result<Vec<(u32, f32)>> {
        let Some(i) = item else { return Ok(Vec::new()) };
        let e = self.item_embeddings().and_then(|t| t.flatten_all().and_then(|f| f.to_vec1::<f32>()).map_err(candle))?;
        Ok(Factors::nearest(&e, e.len() / m.n_items().max(1), i, n))
    }

    /// Its part of the model file: the encoder's `weights.*` (item_emb with a padding row 0,
    /// pos_emb, the blocks' layer norms and projections); state: max_len, blocks.
    fn store<'a>(&'a self, out: &mut Out<'_, 'a>) -> Result<()> {
        out.set("max_len", self.max_len);
        out.set("blocks", self.blocks);
        self.weights.store(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::format::round_trip;
    use crate::engine::NoProgress;

    /// Every user walks a cycle of `n` items from their own starting point; the next item after
    /// the latest is known.
    fn cycles(users: i64, n: i64, steps: i64) -> Interactions {
        let (mut u, mut i, mut t) = (Vec::new(), Vec::new(), Vec::new());
        for user in 0..users {
            for s in 0..steps {
                u.push(user);
                i.push((user + s) % n);
                t.push(Some(s as f64));
            }
        }
        Interactions::with_times(&u, &i, &vec![1.0; u.len()], &t).unwrap()
    }

    fn params() -> SeqParams {
        SeqParams { factors: 16, max_len: 6, blocks: 1, dropout: 0.1, train: Schedule { epochs: 40, batch_size: 16, lr: 0.01, weight_decay: 0.0, seed: 5 } }
    }

    #[test]
    fn windows_cover_every_transition() {
        let data = cycles(1, 10, 10);
        let w = windows(&data, 4);
        let transitions: usize = w.iter().map(|(_, t)| t.iter().filter(|&&x| x > 0).count()).sum();
        assert_eq!(transitions, 9);
        assert_eq!(w[0], (vec![6, 7, 8, 9], vec![7, 8, 9, 10]));
        assert_eq!(windows(&Interactions::from_triplets(&[1], &[1], &[1.0]).unwrap(), 4), vec![]);
    }

    #[test]
    fn learns_the_next_item_deterministically_and_round_trips() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        let data = cycles(12, 8, 9);
        let m = fit(&data, &params(), DeviceChoice::Cpu, &pool, &mut NoProgress).unwrap();
        for start in 0..8u32 {
            // after start, start+1, start+2 comes start+3
            let h: Vec<u32> = (0..3).map(|s| (start + s) % 8).collect();
            let s = m.score(&h).unwrap();
            let best = (0..8).max_by(|&a, &b| s[a].total_cmp(&s[b])).unwrap();
            assert_eq!(best as u32, (start + 3) % 8, "history {h:?}: {s:?}");
        }
        let again = fit(&data, &params(), DeviceChoice::Cpu, &pool, &mut NoProgress).unwrap();
        assert_eq!(m.score(&[1, 2]).unwrap(), again.score(&[1, 2]).unwrap());
        let back = round_trip(|o| m.store(o), |r| Sasrec::load(r, 8)).unwrap();
        assert_eq!(m.score(&[4, 5, 6]).unwrap(), back.score(&[4, 5, 6]).unwrap());
        assert!(Sasrec::checked(7, 1, 8, m.weights.clone()).is_err());
        let unordered = Interactions::from_triplets(&[1, 1], &[1, 2], &[1.0, 1.0]).unwrap();
        assert!(fit(&unordered, &params(), DeviceChoice::Cpu, &pool, &mut NoProgress).is_err());
    }
}
