//! What the Candle models (ncf, sequential, two_tower) share: the device choice, seeded weight
//! initialisation, seeded dropout, one optimiser step on the per-call pool, and named weights
//! persisted as safetensors.

use std::collections::HashMap;

use candle_core::{CpuStorage, CustomOp2, DType, Device, Layout, Shape, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use rayon::prelude::*;

use crate::engine::format::{In, Out};
use crate::engine::params::Params;
use crate::engine::rng::Rng;
use crate::engine::{ErrorKind, Progress, RecsysError, Result};

/// A failure inside Candle while training or scoring: nobody's input and no stored data is at
/// fault, so it is an internal error (out of memory when Candle says so), not "data corrupted".
pub fn candle(e: candle_core::Error) -> RecsysError {
    let text = e.to_string();
    let lower = text.to_ascii_lowercase();
    let kind = if lower.contains("out of memory") || lower.contains("alloc") { ErrorKind::OutOfMemory } else { ErrorKind::Internal };
    RecsysError::new(kind, format!("candle: {text}"))
}

/// Stored weights that Candle cannot read back: the model blob is damaged.
fn corrupt(e: candle_core::Error) -> RecsysError {
    RecsysError::new(ErrorKind::Corrupt, format!("model weights do not decode: {e}"))
}

/// How a neural model is optimised: the parameters every Candle model takes.
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub weight_decay: f64,
    pub seed: u64,
}

impl Schedule {
    pub fn from_params(p: &mut Params, epochs: i64, batch_size: i64, lr: f64) -> Result<Schedule> {
        Ok(Schedule {
            epochs: p.int("epochs", epochs, 1, 10_000)? as usize,
            batch_size: p.int("batch_size", batch_size, 1, 1 << 20)? as usize,
            lr: p.float("lr", lr, 1e-9, 10.0)?,
            weight_decay: p.float("weight_decay", 0.0, 0.0, 10.0)?,
            seed: p.int("seed", 42, 0, i64::MAX)? as u64,
        })
    }
}

/// The variables' tensors by name; they share storage with the variables, so the optimiser's
/// updates show through.
pub struct Named(HashMap<String, Tensor>);

impl Named {
    pub fn new(vars: &[(String, Var)]) -> Named {
        Named(vars.iter().map(|(n, v)| (n.clone(), v.as_tensor().clone())).collect())
    }

    pub fn get(&self, name: &str) -> Result<Tensor> {
        self.0.get(name).cloned().ok_or_else(|| RecsysError::new(ErrorKind::Corrupt, format!("weight {name} missing")))
    }
}

/// Where neural models train (`recsys.device`). Serving always runs on the CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceChoice {
    Cpu,
    Cuda,
    /// CUDA when this build has it and a GPU answers, else the CPU.
    Auto,
}

pub const DEVICES: &[&str] = &["cpu", "cuda", "auto"];

impl DeviceChoice {
    pub fn parse(name: &str) -> Result<DeviceChoice> {
        match name {
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" => Ok(DeviceChoice::Cuda),
            "auto" => Ok(DeviceChoice::Auto),
            other => Err(RecsysError::invalid(format!("unknown device \"{other}\"")).with_detail("known devices: cpu, cuda, auto")),
        }
    }

    /// The Candle device to train on.
    pub fn device(self) -> Result<Device> {
        match self {
            DeviceChoice::Cpu => Ok(Device::Cpu),
            DeviceChoice::Cuda if !cfg!(feature = "cuda") => Err(RecsysError::new(
                ErrorKind::Unsupported,
                "recsys.device = 'cuda' but this build of pg_recsys has no CUDA support",
            )
            .with_hint("SET recsys.device = 'cpu' (or 'auto'), or rebuild pg_recsys with its cuda feature (README: CUDA)")),
            DeviceChoice::Cuda => Device::new_cuda(0).map_err(|e| {
                RecsysError::new(ErrorKind::Unsupported, format!("no usable CUDA device: {e}"))
                    .with_hint("SET recsys.device = 'cpu' or 'auto'")
            }),
            DeviceChoice::Auto if cfg!(feature = "cuda") => Ok(Device::new_cuda(0).unwrap_or(Device::Cpu)),
            DeviceChoice::Auto => Ok(Device::Cpu),
        }
    }
}

/// How a weight starts.
#[derive(Clone, Copy, Debug)]
pub enum Init {
    /// N(0, σ²), for embeddings.
    Normal(f64),
    /// U(−1/√fan_in, 1/√fan_in) with fan_in the last dimension, for dense layers.
    FanIn,
    Zeros,
    Ones,
}

/// Trainable variables, created from our seeded generator so a seed gives the same model
/// (Candle's own CPU generator cannot be seeded).
pub fn init_vars(shapes: &[(String, Vec<usize>, Init)], rng: &mut Rng, device: &Device) -> Result<Vec<(String, Var)>> {
    let mut vars = Vec::with_capacity(shapes.len());
    for (name, shape, init) in shapes {
        let count: usize = shape.iter().product();
        let values: Vec<f32> = match *init {
            Init::Normal(sd) => (0..count).map(|_| (rng.normal() * sd) as f32).collect(),
            Init::FanIn => {
                let bound = 1.0 / (*shape.last().unwrap_or(&1) as f64).sqrt();
                (0..count).map(|_| ((rng.next_f64() * 2.0 - 1.0) * bound) as f32).collect()
            }
            Init::Zeros => vec![0.0; count],
            Init::Ones => vec![1.0; count],
        };
        let t = Tensor::from_vec(values, shape.clone(), device).map_err(candle)?;
        vars.push((name.clone(), Var::from_tensor(&t).map_err(candle)?));
    }
    Ok(vars)
}

/// Inverted dropout as a multiplicative mask drawn from our generator: 0 with probability `p`,
/// else 1/(1−p). None when p is 0.
pub fn dropout_mask(rng: &mut Rng, shape: &[usize], p: f64, device: &Device) -> Result<Option<Tensor>> {
    if p <= 0.0 {
        return Ok(None);
    }
    let keep = (1.0 / (1.0 - p)) as f32;
    let count: usize = shape.iter().product();
    let values: Vec<f32> = (0..count).map(|_| if rng.next_f64() < p { 0.0 } else { keep }).collect();
    Tensor::from_vec(values, shape.to_vec(), device).map(Some).map_err(candle)
}

pub fn adamw(vars: &[(String, Var)], s: &Schedule) -> Result<AdamW> {
    let params = ParamsAdamW { lr: s.lr, weight_decay: s.weight_decay, ..Default::default() };
    AdamW::new(vars.iter().map(|(_, v)| v.clone()).collect(), params).map_err(candle)
}

/// One optimiser step: the loss is built and back-propagated on `pool` (Candle's CPU kernels then
/// use its threads, sized by recsys.max_threads, not every core), and cancel is honoured on the
/// calling thread afterwards, so a cancel stops training within one batch.
pub fn step(
    pool: &rayon::ThreadPool,
    opt: &mut AdamW,
    progress: &mut dyn Progress,
    done: usize,
    total: usize,
    loss: impl FnOnce() -> Result<Tensor> + Send,
) -> Result<f64> {
    step_with(pool, opt, progress, done, total, || Ok((loss()?, Vec::new()))).map(|(value, _)| value)
}

/// `step` for a loss that also depends on variables outside the optimiser (the rows a batch
/// gathered from `SparseTable`s): returns their gradients, flattened, in the order given.
pub fn step_with(
    pool: &rayon::ThreadPool,
    opt: &mut AdamW,
    progress: &mut dyn Progress,
    done: usize,
    total: usize,
    loss: impl FnOnce() -> Result<(Tensor, Vec<Var>)> + Send,
) -> Result<(f64, Vec<Vec<f32>>)> {
    let (value, extra) = pool.install(|| -> Result<(f32, Vec<Vec<f32>>)> {
        let (loss, extra) = loss()?;
        let grads = loss.backward().map_err(candle)?;
        opt.step(&grads).map_err(candle)?;
        let extra = extra
            .iter()
            .map(|v| match grads.get(v.as_tensor()) {
                Some(g) => g.flatten_all().and_then(|f| f.to_device(&Device::Cpu)).and_then(|f| f.to_vec1::<f32>()).map_err(candle),
                None => Ok(vec![0.0; v.elem_count()]),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((loss.to_dtype(DType::F32).and_then(|l| l.to_scalar::<f32>()).map_err(candle)?, extra))
    })?;
    progress.step(done, total)?;
    if !value.is_finite() {
        return Err(RecsysError::invalid(format!("training diverged (loss {value})")).with_hint("lower lr"));
    }
    Ok((value as f64, extra))
}

/// An embedding table trained sparsely, with lazy Adam (as PyTorch's SparseAdam): a batch gathers
/// the rows it uses into a small variable, and only those rows' weights and moments are updated.
/// A dense AdamW step over the whole table costs rows × width per batch, which at 138k users is
/// hours per epoch; this costs the batch's rows × width.
pub struct SparseTable {
    width: usize,
    values: Vec<f32>,
    m: Vec<f32>,
    v: Vec<f32>,
}

impl SparseTable {
    /// `rows` × `width`, drawn N(0, sd²) from the seeded generator.
    pub fn new(rows: usize, width: usize, sd: f64, rng: &mut Rng) -> SparseTable {
        let values = (0..rows * width).map(|_| (rng.normal() * sd) as f32).collect();
        SparseTable { width, values, m: vec![0.0; rows * width], v: vec![0.0; rows * width] }
    }

    /// The given rows as one trainable (rows.len() × width) variable.
    pub fn gather(&self, rows: &[u32], device: &Device) -> Result<Var> {
        let w = self.width;
        let mut out = Vec::with_capacity(rows.len() * w);
        for &r in rows {
            out.extend_from_slice(&self.values[r as usize * w..(r as usize + 1) * w]);
        }
        Var::from_tensor(&Tensor::from_vec(out, (rows.len(), w), device).map_err(candle)?).map_err(candle)
    }

    /// One AdamW step (step number `t`, from 1) of the given rows with their gradient
    /// (rows.len() × width), with the schedule's learning rate and decoupled weight decay.
    pub fn update(&mut self, rows: &[u32], grad: &[f32], t: usize, s: &Schedule) {
        let (b1, b2, eps) = (0.9f32, 0.999f32, 1e-8f32);
        let scale_m = 1.0 / (1.0 - b1.powi(t as i32));
        let scale_v = 1.0 / (1.0 - b2.powi(t as i32));
        let (lr, decay) = (s.lr as f32, 1.0 - (s.lr * s.weight_decay) as f32);
        let w = self.width;
        for (k, &r) in rows.iter().enumerate() {
            let at = r as usize * w;
            for j in 0..w {
                let g = grad[k * w + j];
                let (m, v) = (&mut self.m[at + j], &mut self.v[at + j]);
                *m = b1 * *m + (1.0 - b1) * g;
                *v = b2 * *v + (1.0 - b2) * g * g;
                let x = &mut self.values[at + j];
                *x = *x * decay - lr * (*m * scale_m) / ((*v * scale_v).sqrt() + eps);
            }
        }
    }

    /// The trained table as a (rows × width) CPU tensor.
    pub fn into_tensor(self) -> Result<Tensor> {
        let rows = self.values.len() / self.width.max(1);
        Tensor::from_vec(self.values, (rows, self.width), &Device::Cpu).map_err(candle)
    }
}

/// The distinct ids of a batch (sorted) and each id's position among them, so a batch indexes the
/// small gathered variables instead of the whole tables.
pub fn localize(ids: &[u32]) -> (Vec<u32>, Vec<u32>) {
    let mut distinct = ids.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    let local = ids.iter().map(|id| distinct.binary_search(id).unwrap_or(0) as u32).collect();
    (distinct, local)
}

/// Mean softmax cross-entropy of `logits` (rows × classes, f32) against `labels` (rows, u32).
/// On the CPU one fused pass per row forward and one backward (Candle's composed log-softmax makes
/// a dozen passes over the rows × catalogue matrix, the largest tensor of a full-softmax model).
pub fn cross_entropy(logits: &Tensor, labels: &Tensor) -> candle_core::Result<Tensor> {
    if logits.device().is_cpu() {
        logits.contiguous()?.apply_op2(labels, SoftmaxXent)
    } else {
        candle_nn::loss::cross_entropy(logits, labels)
    }
}

struct SoftmaxXent;
struct SoftmaxXentGrad;

fn xent_inputs<'a>(s1: &'a CpuStorage, l1: &Layout, s2: &'a CpuStorage, l2: &Layout) -> candle_core::Result<(&'a [f32], &'a [u32], usize)> {
    let msg = |m: &str| candle_core::Error::Msg(format!("cross_entropy: {m}"));
    let (a, b) = l1.contiguous_offsets().ok_or_else(|| msg("logits not contiguous"))?;
    let (c, d) = l2.contiguous_offsets().ok_or_else(|| msg("labels not contiguous"))?;
    let (x, y) = (&s1.as_slice::<f32>()?[a..b], &s2.as_slice::<u32>()?[c..d]);
    let dims = l1.dims();
    if dims.len() != 2 || dims[0] != y.len() || dims[1] == 0 || y.iter().any(|&l| l as usize >= dims[1]) {
        return Err(msg("expects rows × classes logits and one label below classes per row"));
    }
    Ok((x, y, dims[1]))
}

/// log Σ exp(row), stably.
fn log_sum_exp(row: &[f32]) -> f32 {
    let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    max + row.iter().map(|&v| (v - max).exp()).sum::<f32>().ln()
}

impl CustomOp2 for SoftmaxXent {
    fn name(&self) -> &'static str {
        "softmax-cross-entropy"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, y, classes) = xent_inputs(s1, l1, s2, l2)?;
        let per_row: Vec<f64> =
            x.par_chunks(classes).zip(y.par_iter()).map(|(row, &l)| (log_sum_exp(row) - row[l as usize]) as f64).collect();
        let mean = per_row.iter().sum::<f64>() / y.len().max(1) as f64;
        Ok((CpuStorage::F32(vec![mean as f32]), Shape::from(())))
    }

    fn bwd(&self, logits: &Tensor, labels: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let g = logits.apply_op2_no_bwd(labels, &SoftmaxXentGrad)?;
        Ok((Some(g.broadcast_mul(grad)?), None))
    }
}

impl CustomOp2 for SoftmaxXentGrad {
    fn name(&self) -> &'static str {
        "softmax-cross-entropy-grad"
    }

    /// (softmax(row) − onehot(label)) / rows.
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, y, classes) = xent_inputs(s1, l1, s2, l2)?;
        let scale = 1.0 / y.len().max(1) as f32;
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(classes).zip(x.par_chunks(classes)).zip(y.par_iter()).for_each(|((o, row), &l)| {
            let lse = log_sum_exp(row);
            o.iter_mut().zip(row).for_each(|(o, &v)| *o = (v - lse).exp() * scale);
            o[l as usize] -= scale;
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// Named weights on the CPU, as stored in safetensors.
#[derive(Clone, Debug)]
pub struct Weights(pub HashMap<String, Tensor>);

impl PartialEq for Weights {
    fn eq(&self, other: &Weights) -> bool {
        let flat = |t: &Tensor| t.flatten_all().and_then(|f| f.to_vec1::<f32>()).ok();
        self.0.len() == other.0.len()
            && self.0.iter().all(|(k, t)| other.0.get(k).is_some_and(|o| t.dims() == o.dims() && flat(t) == flat(o)))
    }
}

impl Weights {
    /// The trained variables, brought back to the CPU for serving and storage.
    pub fn from_vars(vars: Vec<(String, Var)>) -> Result<Weights> {
        let mut out = HashMap::with_capacity(vars.len());
        for (name, v) in vars {
            out.insert(name, v.as_tensor().to_device(&Device::Cpu).map_err(candle)?);
        }
        Ok(Weights(out))
    }

    pub fn get(&self, name: &str) -> Result<&Tensor> {
        self.0.get(name).ok_or_else(|| RecsysError::new(ErrorKind::Corrupt, format!("weight {name} missing")))
    }

    /// The dimensions of `name`, which must have `rank` of them.
    pub fn dims(&self, name: &str, rank: usize) -> Result<Vec<usize>> {
        let d = self.get(name)?.dims().to_vec();
        if d.len() != rank {
            return Err(RecsysError::new(ErrorKind::Corrupt, format!("weight {name} has shape {d:?}")));
        }
        Ok(d)
    }

    /// Weights stored by 0.1.0-0.3.0 (a safetensors file inside the version-1 model).
    pub fn from_safetensors(bytes: &[u8]) -> Result<Weights> {
        Ok(Weights(candle_core::safetensors::load_buffer(bytes, &Device::Cpu).map_err(corrupt)?))
    }
}

impl Weights {
    /// Every weight as an f32 tensor named `weights.<name>` (its candle name).
    pub fn store<'a>(&'a self, out: &mut Out<'_, 'a>) -> Result<()> {
        let mut named: Vec<(&String, &Tensor)> = self.0.iter().collect();
        named.sort_by(|a, b| a.0.cmp(b.0));
        for (name, t) in named {
            let v = t
                .flatten_all()
                .and_then(|f| f.to_dtype(candle_core::DType::F32))
                .and_then(|f| f.to_vec1::<f32>())
                .map_err(candle)?;
            out.f32s_owned(&format!("weights.{name}"), t.dims(), v);
        }
        Ok(())
    }

    pub fn load(r: &In) -> Result<Weights> {
        let mut out = HashMap::new();
        for name in r.names("weights.") {
            let shape = r.shape(&format!("weights.{name}"))?;
            let v = r.f32s(&format!("weights.{name}"), None)?;
            out.insert(
                name,
                Tensor::from_vec(v, shape, &Device::Cpu).map_err(candle)?,
            );
        }
        Ok(Weights(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fused_cross_entropy_matches_candle_and_its_gradient() {
        let x = Var::from_tensor(&Tensor::new(&[[1.0f32, 2.0, -1.0], [0.5, 0.5, 3.0]], &Device::Cpu).unwrap()).unwrap();
        let y = Tensor::new(&[1u32, 0], &Device::Cpu).unwrap();
        let ours = cross_entropy(x.as_tensor(), &y).unwrap();
        let theirs = candle_nn::loss::cross_entropy(x.as_tensor(), &y).unwrap();
        let (a, b) = (ours.to_scalar::<f32>().unwrap(), theirs.to_scalar::<f32>().unwrap());
        assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        let (ga, gb) = (ours.backward().unwrap(), theirs.backward().unwrap());
        let flat = |g: &candle_core::backprop::GradStore| g.get(x.as_tensor()).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for (p, q) in flat(&ga).iter().zip(flat(&gb)) {
            assert!((p - q).abs() < 1e-6, "{p} vs {q}");
        }
        assert!(cross_entropy(x.as_tensor(), &Tensor::new(&[3u32, 0], &Device::Cpu).unwrap()).is_err());
    }

    #[test]
    fn sparse_table_steps_like_adamw_on_the_rows_it_touches() {
        let s = Schedule { epochs: 1, batch_size: 1, lr: 0.05, weight_decay: 0.1, seed: 1 };
        let mut table = SparseTable::new(4, 3, 1.0, &mut Rng::new(9));
        let before = table.values.clone();
        let rows = [1u32, 3];
        let dense = table.gather(&rows, &Device::Cpu).unwrap();
        let mut opt = adamw(&[("x".to_string(), dense.clone())], &s).unwrap();
        for t in 1..=3 {
            let x = table.gather(&rows, &Device::Cpu).unwrap();
            let loss = |v: &Var| v.as_tensor().sqr().unwrap().sum_all().unwrap();
            let grads = loss(&x).backward().unwrap();
            let g = grads.get(x.as_tensor()).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            table.update(&rows, &g, t, &s);
            opt.backward_step(&loss(&dense)).unwrap();
        }
        let ours = table.gather(&rows, &Device::Cpu).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let theirs = dense.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for (a, b) in ours.iter().zip(&theirs) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        assert_ne!(ours, before[3..6].iter().chain(&before[9..12]).copied().collect::<Vec<_>>());
        // Untouched rows keep their values.
        assert_eq!(&table.values[0..3], &before[0..3]);
        assert_eq!(&table.values[6..9], &before[6..9]);
        assert_eq!(localize(&[7, 3, 7, 5]), (vec![3, 5, 7], vec![2, 0, 2, 1]));
    }
}
