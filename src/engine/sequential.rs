//! Next-item recommendation from the ordered history: SASRec (Kang & McAuley 2018), a causal
//! self-attention encoder over the user's latest `max_len` items whose last position is matched
//! against the item embeddings. Chosen over GRU4Rec because every position of a sequence trains
//! in one pass of a few large matrix products (no step-by-step recurrence), which is what a CPU
//! and Candle do well, and it is the stronger of the two in the published comparisons.
//!
//! Trained with the full softmax over the catalogue at every position (cross-entropy; Klenitskiy
//! & Vasilev 2023 show this beats SASRec's original one-negative BCE), AdamW, seeded dropout.
//! Long histories are cut into windows of max_len + 1 items so every transition is trained on.

use candle_core::{Module, Tensor};
use candle_nn::{Init, VarBuilder};

use crate::engine::factors::Factors;
use crate::engine::format::{In, Out};
use crate::engine::interactions::Interactions;
use crate::engine::interactions::index_of;
use crate::engine::model::{Model, Request, Scored};
use crate::engine::neural::{self, AttentionMask, Dense, DeviceChoice, Norm, Schedule, Weights};
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

/// The trained encoder and its stored weights; item embedding row 0 is padding, item index i
/// is row i + 1.
#[derive(Clone, Debug)]
pub struct Sasrec {
    pub max_len: usize,
    pub blocks: usize,
    pub weights: Weights,
    encoder: Encoder,
}

impl PartialEq for Sasrec {
    fn eq(&self, other: &Sasrec) -> bool {
        (self.max_len, self.blocks) == (other.max_len, other.blocks) && self.weights == other.weights
    }
}

/// Dropout while training: the generator and the rate.
type Dropout<'a> = Option<(&'a mut Rng, f64)>;

/// The dropout multipliers for `count` elements, drawn from the training's generator.
fn keep(dropout: &mut Dropout, count: usize) -> Option<Vec<f32>> {
    dropout.as_mut().and_then(|(rng, p)| neural::dropout_keep(rng, count, *p))
}

fn drop(x: Tensor, dropout: &mut Dropout) -> Result<Tensor> {
    let keep = keep(dropout, x.elem_count());
    Ok(neural::dropout(&x, keep)?)
}

/// One pre-norm self-attention block (`b<k>.*`): one head, then a two-layer ReLU feed-forward.
#[derive(Clone, Debug)]
struct Block {
    ln1: Norm,
    ln2: Norm,
    q: Dense,
    k: Dense,
    v: Dense,
    o: Dense,
    ffn1: Dense,
    ffn2: Dense,
}

const EPS: f32 = 1e-8;

impl Block {
    fn new(d: usize, vb: VarBuilder) -> candle_core::Result<Block> {
        let layer = |name: &str| neural::linear(d, d, Init::Const(0.0), vb.pp(name));
        Ok(Block {
            ln1: Norm::new(d, EPS, vb.pp("ln1"))?,
            ln2: Norm::new(d, EPS, vb.pp("ln2"))?,
            q: layer("q")?,
            k: layer("k")?,
            v: layer("v")?,
            o: layer("o")?,
            ffn1: layer("ffn1")?,
            ffn2: layer("ffn2")?,
        })
    }

    /// x: (batch·len × d) rows of the batch's sequences, `mask` their attention mask.
    fn forward(&self, x: &Tensor, mask: &AttentionMask, dropout: &mut Dropout) -> Result<Tensor> {
        let q_in = self.ln1.forward(x)?;
        let (q, k, v) = (self.q.forward(&q_in)?, self.k.forward(x)?, self.v.forward(x)?);
        let weights = keep(dropout, mask.weights());
        let out = neural::attention(&q, &k, &v, mask, weights)?;
        let out = drop(self.o.forward(&out)?, dropout)?;
        let y = self.ln2.forward(&q_in.add(&out)?)?;
        let f = drop(self.ffn2.forward(&self.ffn1.forward(&y)?.relu()?)?, dropout)?;
        Ok(y.add(&f)?)
    }
}

/// SASRec's encoder: item and position embeddings (`item_emb`, `pos_emb`), the blocks, a final
/// layer norm (`ln`).
#[derive(Clone, Debug)]
struct Encoder {
    item_emb: Tensor,
    pos_emb: Tensor,
    blocks: Vec<Block>,
    ln: Norm,
}

impl Encoder {
    fn new(n_items: usize, max_len: usize, d: usize, blocks: usize, vb: VarBuilder) -> candle_core::Result<Encoder> {
        let emb = Init::Randn { mean: 0.0, stdev: 1.0 / (d as f64).sqrt() };
        Ok(Encoder {
            item_emb: vb.get_with_hints((n_items + 1, d), "item_emb", emb)?,
            pos_emb: vb.get_with_hints((max_len, d), "pos_emb", emb)?,
            blocks: (0..blocks).map(|b| Block::new(d, vb.pp(format!("b{b}")))).collect::<candle_core::Result<_>>()?,
            ln: Norm::new(d, EPS, vb.pp("ln"))?,
        })
    }

    /// The item embeddings without the padding row (n_items × d).
    fn items(&self) -> Result<Tensor> {
        let n = self.item_emb.dim(0)?;
        Ok(self.item_emb.narrow(0, 1, n - 1)?)
    }

    /// Hidden states (batch·len × d) for left-padded sequences (0 = padding, item i = i + 1).
    fn forward(&self, seqs: &[u32], len: usize, mut dropout: Dropout) -> Result<Tensor> {
        let dev = self.item_emb.device();
        let d = self.item_emb.dim(1)?;
        let ids = Tensor::from_slice(seqs, seqs.len(), dev)?;
        let positions: Vec<u32> = (0..seqs.len()).map(|k| (k % len) as u32).collect();
        let positions = Tensor::from_vec(positions, seqs.len(), dev)?;
        // Attention mask: a position sees itself and earlier non-padding positions.
        let mask = AttentionMask::causal(seqs, len);
        let x = (self.item_emb.index_select(&ids, 0)? * (d as f64).sqrt())?;
        let x = x.add(&self.pos_emb.index_select(&positions, 0)?)?;
        // Padding positions are not zeroed after each block (SASRec's reference code multiplies
        // by a padding mask there): no other position attends to them (the mask gives them
        // weight exactly 0, so 0·v adds nothing) and no loss is taken at them, so every scored
        // position's state, and every gradient, is the same without those multiplications.
        let mut x = drop(x, &mut dropout)?;
        for block in &self.blocks {
            x = block.forward(&x, &mask, &mut dropout)?;
        }
        Ok(self.ln.forward(&x)?)
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
        self.encoder.item_emb.dims()[0].saturating_sub(1)
    }

    /// A score for every item given the user's items, oldest first (only the latest max_len count).
    pub fn score(&self, history: &[u32]) -> Result<Vec<f32>> {
        let h = self.encoder.forward(&window(history, self.max_len), self.max_len, None)?;
        let last = h.narrow(0, self.max_len - 1, 1)?;
        Ok(last.matmul(&self.encoder.items()?.t()?)?.squeeze(0)?.to_vec1::<f32>()?)
    }

    /// The item embeddings without the padding row (n_items × d).
    pub fn item_embeddings(&self) -> Result<Tensor> {
        self.encoder.items()
    }

    /// The model of stored weights, checked against the catalogue.
    pub fn checked(max_len: usize, blocks: usize, n_items: usize, weights: Weights) -> Result<Sasrec> {
        let e = weights.dims("item_emb", 2)?;
        if e[0] != n_items + 1 {
            return Err(RecsysError::new(crate::engine::ErrorKind::Corrupt, "sequential weights do not match the catalogue"));
        }
        let encoder = Encoder::new(n_items, max_len, e[1], blocks, weights.vb()).map_err(neural::corrupt)?;
        Ok(Sasrec { max_len, blocks, weights, encoder })
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
    let dev = device.open("sequential", progress)?;
    let n_items = data.n_items();
    let mut rng = Rng::new(p.train.seed);
    let (encoder, vars) = neural::build(&mut rng, &dev, |vb| Encoder::new(n_items, p.max_len, p.factors, p.blocks, vb))?;
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
            let done = epoch * examples.len() + b * p.train.batch_size + batch.len();
            sum += neural::step(pool, &mut opt, progress, done, total, || {
                let h = encoder.forward(&inputs, p.max_len, Some((&mut drop_rng, p.dropout)))?;
                let n = rows.len();
                let h = h.index_select(&Tensor::from_vec(rows, n, &dev)?, 0)?;
                Ok(neural::catalogue_cross_entropy(&h, &encoder.items()?, &labels)?)
            })?;
            batches += 1;
        }
        progress.epoch("sequential", epoch + 1, p.train.epochs, "cross-entropy", sum / batches.max(1) as f64)?;
    }
    Sasrec::checked(p.max_len, p.blocks, n_items, Weights::from_vars(vars)?)
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
        let e = self.item_embeddings()?.flatten_all()?.to_vec1::<f32>()?;
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
