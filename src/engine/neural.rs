//! What the Candle models (ncf, sequential, two_tower) share: the device choice, the typed
//! building blocks (linear layers, layer norm) and a variable builder that initialises every
//! weight from our seeded generator, seeded dropout, one optimiser step on the per-call pool, the
//! fused CPU kernels with their backward passes, and named weights persisted as safetensors.
//!
//! Every model is a typed module built by `new(vb)`: while training `vb` creates each weight on
//! the training's device the first time a module asks for it (`Seeded`), when serving it reads
//! the stored weights on the CPU (`Weights::vb`); the weight names are the safetensors keys.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Device, Layout, Module, Shape, Tensor, Var, D};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{AdamW, Init, Linear, Optimizer, ParamsAdamW, VarBuilder};
use faer::linalg::matmul::matmul;
use rayon::prelude::*;

use crate::engine::format::{In, Out};
use crate::engine::params::Params;
use crate::engine::rng::Rng;
use crate::engine::{ErrorKind, Progress, RecsysError, Result};

/// A failure inside Candle while training or scoring: nobody's input and no stored data is at
/// fault, so it is an internal error (out of memory when Candle says so), not "data corrupted".
/// The one conversion from Candle's error, so `?` works across the boundary.
impl From<candle_core::Error> for RecsysError {
    fn from(e: candle_core::Error) -> RecsysError {
        let text = e.to_string();
        let lower = text.to_ascii_lowercase();
        let kind = if lower.contains("out of memory") || lower.contains("alloc") { ErrorKind::OutOfMemory } else { ErrorKind::Internal };
        RecsysError::new(kind, format!("candle: {text}"))
    }
}

/// Stored weights that Candle cannot read back (a name missing, a shape that does not match the
/// module): the model blob is damaged.
pub fn corrupt(e: candle_core::Error) -> RecsysError {
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

    /// The device to train `algorithm` on, announced through `progress` ("ncf trains on cuda").
    pub fn open(self, algorithm: &str, progress: &mut dyn Progress) -> Result<Device> {
        let dev = self.device()?;
        let how = match self {
            DeviceChoice::Auto => " (recsys.device = 'auto')",
            _ => "",
        };
        progress.note(&format!("{algorithm} trains on {}{how}", device_name(&dev)));
        Ok(dev)
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

/// The name of the device a training runs on, for its NOTICE.
pub fn device_name(d: &Device) -> &'static str {
    if d.is_cuda() {
        "cuda"
    } else if d.is_cpu() {
        "cpu"
    } else {
        "other"
    }
}

/// Settles how Candle's CPU backend picks its threads, once, where the process starts (the
/// extension's `_PG_init`, the bench binary), before any thread of ours exists. Candle 0.11 runs
/// large element-wise ops on a persistent pool of its own, sized from `CANDLE_NUM_THREADS` or the
/// host's physical cores, spinning between ops: in a database backend that is threads outside
/// `recsys.max_threads` (63 on a 64-core host). `CANDLE_NUM_THREADS=1` gives that pool no
/// threads, so those ops run on the calling thread, a thread of the training's own pool. And each
/// matrix product asks for a thread count through `RAYON_NUM_THREADS`, else it reads
/// /proc/cpuinfo — every product, 7 % of a SASRec epoch: setting it to the host's cores (rayon's
/// own default) keeps the products split over the training's pool as before. A value already in
/// the environment (the administrator's) is kept.
pub fn settle_candle_threads() {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        std::env::set_var("RAYON_NUM_THREADS", cores.to_string());
    }
}

/// Makes the calling thread the one and only thread of rayon's global pool, once per process
/// (later calls, or a global pool already built, change nothing). Serving a model runs outside
/// any training pool, and there Candle's products and our parallel ops would start rayon's
/// global pool: one thread per core, kept for the backend's life and outside
/// `recsys.max_threads`. With the backend as its only worker, they run on the backend's own
/// thread and no thread is started; trainings still run on the pools they are given.
pub fn serve_on_this_thread() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // An error means a global pool exists already (a bench, a test): nothing to settle.
        let _ = rayon::ThreadPoolBuilder::new().num_threads(1).use_current_thread().build_global();
    });
}

/// The variables of a training: each weight a module asks for is created the first time, on the
/// training's device, from our seeded generator with the init the module names (Candle's own
/// CPU generator cannot be seeded), and kept in the order asked for.
struct Seeded {
    rng: Mutex<Rng>,
    vars: Mutex<Vec<(String, Var)>>,
}

/// The backend behind a training's `VarBuilder` (shares `Seeded` with `build`).
struct SeededBackend(Arc<Seeded>);

impl SimpleBackend for SeededBackend {
    fn get(&self, s: Shape, name: &str, init: Init, _: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let mut vars = self.0.vars.lock().map_err(|_| candle_core::Error::Msg("poisoned".into()))?;
        if let Some((_, v)) = vars.iter().find(|(n, _)| n == name) {
            if v.shape() != &s {
                candle_core::bail!("weight {name} asked for as {s:?} and as {:?}", v.shape());
            }
            return Ok(v.as_tensor().clone());
        }
        let mut rng = self.0.rng.lock().map_err(|_| candle_core::Error::Msg("poisoned".into()))?;
        let count = s.elem_count();
        let values: Vec<f32> = match init {
            Init::Const(c) => vec![c as f32; count],
            Init::Randn { mean, stdev } => (0..count).map(|_| (mean + rng.normal() * stdev) as f32).collect(),
            Init::Uniform { lo, up } => {
                let (mid, half) = ((lo + up) / 2.0, (up - lo) / 2.0);
                (0..count).map(|_| (mid + (rng.next_f64() * 2.0 - 1.0) * half) as f32).collect()
            }
            Init::Kaiming { .. } => candle_core::bail!("weight {name}: Kaiming init is not seeded here; name its bounds"),
        };
        let var = Var::from_tensor(&Tensor::from_vec(values, s, dev)?)?;
        let t = var.as_tensor().clone();
        vars.push((name.to_string(), var));
        Ok(t)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("weight {name} asked for without a shape")
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.0.vars.lock().is_ok_and(|v| v.iter().any(|(n, _)| n == name))
    }
}

/// Builds a module for training on `dev`: its weights drawn from `rng` (which goes on from
/// where they leave it), returned with the module's variables, in the order it created them.
pub fn build<M>(rng: &mut Rng, dev: &Device, new: impl FnOnce(VarBuilder) -> candle_core::Result<M>) -> Result<(M, Vec<(String, Var)>)> {
    let seeded = Arc::new(Seeded { rng: Mutex::new(rng.clone()), vars: Mutex::new(Vec::new()) });
    let vb = VarBuilder::from_backend(Box::new(SeededBackend(seeded.clone())), DType::F32, dev.clone());
    let module = new(vb)?;
    let poisoned = || RecsysError::new(ErrorKind::Internal, "weight initialisation failed");
    *rng = seeded.rng.lock().map_err(|_| poisoned())?.clone();
    let vars = std::mem::take(&mut *seeded.vars.lock().map_err(|_| poisoned())?);
    Ok((module, vars))
}

/// U(−1/√fan_in, 1/√fan_in), how dense layers start (PyTorch's default bound).
pub fn fan_in(fan_in: usize) -> Init {
    let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
    Init::Uniform { lo: -bound, up: bound }
}

/// A dense layer `inputs` → `outputs` (weight `weight` [outputs, inputs], fan-in uniform; bias
/// `bias` [outputs] from `bias_init`).
pub fn linear(inputs: usize, outputs: usize, bias_init: Init, vb: VarBuilder) -> candle_core::Result<Dense> {
    let weight = vb.get_with_hints((outputs, inputs), "weight", fan_in(inputs))?;
    let bias = vb.get_with_hints(outputs, "bias", bias_init)?;
    Ok(Dense { weight, bias })
}

/// x·Wᵀ + b, candle-nn's `Linear` with the same weights. On the CPU, for rows of a matrix, the
/// bias is added by one fused op whose backward sums the gradient's columns in one pass (Candle's
/// broadcast add keeps a broadcast copy and reduces over the strided rows: a tenth of a SASRec
/// epoch); elsewhere, or for batched inputs, Candle's `Linear`.
#[derive(Clone, Debug)]
pub struct Dense {
    weight: Tensor,
    bias: Tensor,
}

impl Module for Dense {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        if x.device().is_cpu() && x.rank() == 2 && x.dtype() == DType::F32 {
            x.matmul(&self.weight.t()?)?.apply_op2(&self.bias, BiasAdd)
        } else {
            Linear::new(self.weight.clone(), Some(self.bias.clone())).forward(x)
        }
    }
}

/// Each row plus the bias.
struct BiasAdd;
/// The sum of a matrix's rows (its column sums).
struct ColumnSum;

impl CustomOp2 for BiasAdd {
    fn name(&self) -> &'static str {
        "bias-add"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, d) = rows_of(s1, l1, "bias-add input")?;
        let (b, _) = rows_of(s2, l2, "bias")?;
        if b.len() != d {
            candle_core::bail!("bias add: the bias must have the input's last dimension");
        }
        let mut out = vec![0f32; x.len()];
        let task = d * ROWS_PER_TASK;
        out.par_chunks_mut(task).zip(x.par_chunks(task)).for_each(|(o, x)| {
            for (o, x) in o.chunks_mut(d).zip(x.chunks(d)) {
                o.iter_mut().zip(x).zip(b).for_each(|((o, x), b)| *o = x + b);
            }
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, _b: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((Some(grad.clone()), Some(grad.contiguous()?.apply_op1_no_bwd(&ColumnSum)?)))
    }
}

impl CustomOp1 for ColumnSum {
    fn name(&self) -> &'static str {
        "column-sum"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (g, d) = rows_of(s, l, "column sum input")?;
        let task = d * ROWS_PER_TASK * 4;
        // Partial sums per task, added in task order: the same sum whatever the threads did.
        let partial: Vec<Vec<f32>> = g
            .par_chunks(task)
            .map(|rows| {
                let mut acc = vec![0f32; d];
                for row in rows.chunks(d) {
                    acc.iter_mut().zip(row).for_each(|(a, v)| *a += v);
                }
                acc
            })
            .collect();
        let mut sums = vec![0f32; d];
        for acc in partial {
            sums.iter_mut().zip(acc).for_each(|(s, a)| *s += a);
        }
        Ok((CpuStorage::F32(sums), Shape::from(d)))
    }
}

/// Layer normalisation over the last dimension, `weight` (ones) and `bias` (zeros) as its
/// weights. On the CPU one fused pass forward and one backward; elsewhere Candle's composed ops.
#[derive(Clone, Debug)]
pub struct Norm {
    weight: Tensor,
    bias: Tensor,
    eps: f32,
}

impl Norm {
    pub fn new(size: usize, eps: f32, vb: VarBuilder) -> candle_core::Result<Norm> {
        Ok(Norm { weight: vb.get_with_hints(size, "weight", Init::Const(1.0))?, bias: vb.get_with_hints(size, "bias", Init::Const(0.0))?, eps })
    }
}

impl Module for Norm {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        if x.device().is_cpu() {
            x.contiguous()?.apply_op3(&self.weight, &self.bias, LayerNormOp { eps: self.eps })
        } else {
            candle_nn::ops::layer_norm_slow(x, &self.weight, &self.bias, self.eps)
        }
    }
}

/// Inverted-dropout multipliers drawn from our generator, one per element: 0 with probability
/// `p`, else 1/(1−p). None when p is 0.
pub fn dropout_keep(rng: &mut Rng, count: usize, p: f64) -> Option<Vec<f32>> {
    if p <= 0.0 {
        return None;
    }
    let keep = (1.0 / (1.0 - p)) as f32;
    let draw = rng.take_f64(count);
    Some((0..count).into_par_iter().map(|k| if draw(k) < p { 0.0 } else { keep }).collect())
}

/// x ⊙ keep (the multipliers of `dropout_keep`, as many as x has elements); x itself when None.
/// On the CPU a fused op whose backward multiplies the gradient by the same multipliers (Candle's
/// product would also form, and add up, a gradient for the constant mask); elsewhere Candle's.
pub fn dropout(x: &Tensor, keep: Option<Vec<f32>>) -> candle_core::Result<Tensor> {
    match keep {
        None => Ok(x.clone()),
        Some(keep) if keep.len() != x.elem_count() => candle_core::bail!("dropout: {} multipliers for {} elements", keep.len(), x.elem_count()),
        Some(keep) if x.device().is_cpu() && x.dtype() == DType::F32 => x.contiguous()?.apply_op1(Dropout(Arc::new(keep))),
        Some(keep) => x.mul(&Tensor::from_vec(keep, x.shape(), x.device())?),
    }
}

/// Multiplies by its multipliers; its own backward pass (the product is linear in x).
#[derive(Clone)]
struct Dropout(Arc<Vec<f32>>);

impl CustomOp1 for Dropout {
    fn name(&self) -> &'static str {
        "dropout"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, _) = rows_of(s, l, "dropout input")?;
        if x.len() != self.0.len() {
            candle_core::bail!("dropout: the multipliers do not match the input");
        }
        let out = x.par_iter().zip(self.0.par_iter()).with_min_len(4096).map(|(x, m)| x * m).collect();
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(self)?))
    }
}

/// AdamW over a training's variables. On the CPU one fused, parallel pass per variable updates
/// its weights and both moments in place (Candle's AdamW makes a dozen single-threaded
/// element-wise passes per variable, each allocating: a quarter of two_tower's epoch went there);
/// on other devices Candle's AdamW. The same update as `SparseTable::update`.
pub enum Adam {
    Fused { vars: Vec<Var>, moments: Vec<(Vec<f32>, Vec<f32>)>, t: usize, schedule: Schedule },
    Candle(AdamW),
}

pub fn adamw(vars: &[(String, Var)], s: &Schedule) -> Result<Adam> {
    if vars.iter().all(|(_, v)| v.device().is_cpu() && v.dtype() == DType::F32) {
        let moments = vars.iter().map(|(_, v)| (vec![0f32; v.elem_count()], vec![0f32; v.elem_count()])).collect();
        return Ok(Adam::Fused { vars: vars.iter().map(|(_, v)| v.clone()).collect(), moments, t: 0, schedule: s.clone() });
    }
    let params = ParamsAdamW { lr: s.lr, weight_decay: s.weight_decay, ..Default::default() };
    Ok(Adam::Candle(AdamW::new(vars.iter().map(|(_, v)| v.clone()).collect(), params)?))
}

impl Adam {
    pub fn step(&mut self, grads: &candle_core::backprop::GradStore) -> Result<()> {
        match self {
            Adam::Candle(opt) => Ok(opt.step(grads)?),
            Adam::Fused { vars, moments, t, schedule } => {
                *t += 1;
                for (var, (m, v)) in vars.iter().zip(moments.iter_mut()) {
                    if let Some(g) = grads.get(var.as_tensor()) {
                        let step = AdamStep { moments: Mutex::new((m, v)), t: *t, schedule };
                        var.as_tensor().inplace_op2(&g.contiguous()?, &step)?;
                    }
                }
                Ok(())
            }
        }
    }
}

/// Adam's constants at step `t` (from 1): (β1, β2, ε, 1/(1−β1ᵗ), 1/(1−β2ᵗ), lr, 1 − lr·decay).
fn adam_constants(t: usize, s: &Schedule) -> [f32; 7] {
    let (b1, b2) = (0.9f32, 0.999f32);
    [b1, b2, 1e-8, 1.0 / (1.0 - b1.powi(t as i32)), 1.0 / (1.0 - b2.powi(t as i32)), s.lr as f32, 1.0 - (s.lr * s.weight_decay) as f32]
}

/// One AdamW step of weights `x` with moments `m`, `v` and gradient `g` (decoupled weight decay).
fn adam_update(x: &mut [f32], m: &mut [f32], v: &mut [f32], g: &[f32], c: &[f32; 7]) {
    let [b1, b2, eps, scale_m, scale_v, lr, decay] = *c;
    for j in 0..x.len() {
        m[j] = b1 * m[j] + (1.0 - b1) * g[j];
        v[j] = b2 * v[j] + (1.0 - b2) * g[j] * g[j];
        x[j] = x[j] * decay - lr * (m[j] * scale_m) / ((v[j] * scale_v).sqrt() + eps);
    }
}

/// The fused CPU step of one variable, applied in place to its storage.
struct AdamStep<'a> {
    moments: Mutex<(&'a mut Vec<f32>, &'a mut Vec<f32>)>,
    t: usize,
    schedule: &'a Schedule,
}

impl candle_core::InplaceOp2 for AdamStep<'_> {
    fn name(&self) -> &'static str {
        "fused-adamw"
    }

    fn cpu_fwd(&self, s1: &mut CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> candle_core::Result<()> {
        let (a, b) = l1.contiguous_offsets().ok_or_else(|| candle_core::Error::Msg("adamw: weights not contiguous".into()))?;
        let (g, _) = rows_of(s2, l2, "adamw gradient")?;
        let CpuStorage::F32(x) = s1 else { candle_core::bail!("adamw: weights are not f32") };
        let x = &mut x[a..b];
        let mut moments = self.moments.lock().map_err(|_| candle_core::Error::Msg("poisoned".into()))?;
        let (m, v) = &mut *moments;
        if g.len() != x.len() || m.len() != x.len() {
            candle_core::bail!("adamw: gradient and weights differ in size");
        }
        let c = adam_constants(self.t, self.schedule);
        const CHUNK: usize = 16 * 1024;
        x.par_chunks_mut(CHUNK)
            .zip(m.par_chunks_mut(CHUNK))
            .zip(v.par_chunks_mut(CHUNK))
            .zip(g.par_chunks(CHUNK))
            .for_each(|(((x, m), v), g)| adam_update(x, m, v, g, &c));
        Ok(())
    }
}

/// One optimiser step: the loss is built and back-propagated on `pool` (Candle's CPU kernels then
/// use its threads, sized by recsys.max_threads, not every core), and cancel is honoured on the
/// calling thread afterwards, so a cancel stops training within one batch.
pub fn step(
    pool: &rayon::ThreadPool,
    opt: &mut Adam,
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
    opt: &mut Adam,
    progress: &mut dyn Progress,
    done: usize,
    total: usize,
    loss: impl FnOnce() -> Result<(Tensor, Vec<Var>)> + Send,
) -> Result<(f64, Vec<Vec<f32>>)> {
    let (value, extra) = pool.install(|| -> Result<(f32, Vec<Vec<f32>>)> {
        let (loss, extra) = loss()?;
        let grads = loss.backward()?;
        opt.step(&grads)?;
        let extra = extra
            .iter()
            .map(|v| match grads.get(v.as_tensor()) {
                Some(g) => g.flatten_all().and_then(|f| f.to_device(&Device::Cpu)).and_then(|f| f.to_vec1::<f32>()).map_err(RecsysError::from),
                None => Ok(vec![0.0; v.elem_count()]),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((loss.to_dtype(DType::F32).and_then(|l| l.to_scalar::<f32>())?, extra))
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
        Var::from_tensor(&Tensor::from_vec(out, (rows.len(), w), device)?).map_err(RecsysError::from)
    }

    /// One AdamW step (step number `t`, from 1) of the given rows with their gradient
    /// (rows.len() × width), with the schedule's learning rate and decoupled weight decay.
    pub fn update(&mut self, rows: &[u32], grad: &[f32], t: usize, s: &Schedule) {
        let c = adam_constants(t, s);
        let w = self.width;
        for (k, &r) in rows.iter().enumerate() {
            let at = r as usize * w..(r as usize + 1) * w;
            adam_update(&mut self.values[at.clone()], &mut self.m[at.clone()], &mut self.v[at], &grad[k * w..(k + 1) * w], &c);
        }
    }

    /// The trained table as a (rows × width) CPU tensor.
    pub fn into_tensor(self) -> Result<Tensor> {
        let rows = self.values.len() / self.width.max(1);
        Tensor::from_vec(self.values, (rows, self.width), &Device::Cpu).map_err(RecsysError::from)
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

/// e^x for f32 within 2 ulp (|relative error| < 3e-7), branch-free so a loop of it vectorises
/// (libm's expf is a scalar call; the softmax over a catalogue makes millions of them per batch).
/// Range reduction x = k·ln2 + r, |r| ≤ ln2/2, then a degree-6 polynomial for e^r and 2^k
/// built in the exponent bits. Below −87 (e^−87 ≈ 1.6e−38) it is 0, so a masked position gets
/// exactly nothing.
#[inline(always)]
pub fn exp_fast(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // 1.5·2^23: adding and subtracting it rounds to the nearest integer without an intrinsic.
    const ROUND: f32 = 12_582_912.0;
    let c = x.clamp(-87.0, 88.0);
    let t = c * LOG2E + ROUND;
    // k as a float, and as an integer read off t's mantissa (no float-to-int conversion).
    let k = t - ROUND;
    let k_int = t.to_bits() as i32 - ROUND.to_bits() as i32;
    let r = c - k * LN2_HI - k * LN2_LO;
    let p = 1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    let y = f32::from_bits(((k_int + 127) << 23) as u32) * p;
    if x < -87.0 {
        0.0
    } else {
        y
    }
}

/// Lanes of the row reductions: eight independent partial results, so the loops vectorise
/// (a single running max or sum is one long dependency chain the compiler may not reorder).
const LANES: usize = 8;

#[inline(always)]
fn row_max(row: &[f32]) -> f32 {
    let mut m = [f32::NEG_INFINITY; LANES];
    let chunks = row.chunks_exact(LANES);
    let tail = chunks.remainder().iter().fold(f32::NEG_INFINITY, |a, &v| a.max(v));
    for c in chunks {
        for j in 0..LANES {
            m[j] = m[j].max(c[j]);
        }
    }
    m.iter().fold(tail, |a, &v| a.max(v))
}

#[inline(always)]
fn row_sum(row: &[f32]) -> f32 {
    let mut s = [0f32; LANES];
    let chunks = row.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for j in 0..LANES {
            s[j] += c[j];
        }
    }
    s.iter().sum::<f32>() + tail
}

/// Softmax of a row in place; returns log Σ exp(row) of the values it had. Compiled twice: for
/// AVX2 and FMA, chosen at run time where the CPU has them (8 lanes), and for the baseline x86-64
/// of the build (SSE2, 4 lanes), as the matrix kernels Candle and faer use choose theirs.
fn softmax_in_place(row: &mut [f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA, checked just above.
        return unsafe { softmax_avx2(row) };
    }
    softmax_rows(row)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn softmax_avx2(row: &mut [f32]) -> f32 {
    softmax_rows(row)
}

#[inline(always)]
fn softmax_rows(row: &mut [f32]) -> f32 {
    let max = row_max(row);
    row.iter_mut().for_each(|v| *v = exp_fast(*v - max));
    let sum = row_sum(row);
    let inv = 1.0 / sum;
    row.iter_mut().for_each(|v| *v *= inv);
    max + sum.ln()
}

/// Mean softmax cross-entropy of scoring each row of `h` (rows × d) against every row of `items`
/// (classes × d) — the full softmax over a catalogue — with `labels` (one class per row). On the
/// CPU the logits are never materialised: blocks of rows are scored, their softmax gradient
/// formed and folded into the gradients of `h` and `items` at once (the rows × catalogue logits
/// and their gradient were the largest tensors and half of a SASRec epoch); elsewhere
/// Candle's composed cross-entropy of h · itemsᵀ.
pub fn catalogue_cross_entropy(h: &Tensor, items: &Tensor, labels: &[u32]) -> candle_core::Result<Tensor> {
    if h.device().is_cpu() && items.device().is_cpu() {
        let op = CatalogueXent { labels: labels.to_vec(), grads: Mutex::new(None) };
        h.contiguous()?.apply_op2(&items.contiguous()?, op)
    } else {
        let labels = Tensor::from_slice(labels, labels.len(), h.device())?;
        candle_nn::loss::cross_entropy(&h.matmul(&items.t()?)?, &labels)
    }
}

struct CatalogueXent {
    labels: Vec<u32>,
    /// The gradients of the summed (not yet averaged) loss for h and items, from the forward pass.
    grads: Mutex<Option<(Vec<f32>, Vec<f32>)>>,
}

/// Rows scored at a time by `CatalogueXent` (a block's logits: BLOCK × classes floats).
const XENT_BLOCK: usize = 64;
/// At most this many parallel tasks in `CatalogueXent`, each with its own classes × d item
/// gradient (memory: XENT_TASKS × catalogue × d floats, whatever the batch).
const XENT_TASKS: usize = 8;

impl CustomOp2 for CatalogueXent {
    fn name(&self) -> &'static str {
        "catalogue-cross-entropy"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        use faer::{Accum, MatMut, MatRef, Par};
        let (h, d) = rows_of(s1, l1, "catalogue cross-entropy rows")?;
        let (items, d2) = rows_of(s2, l2, "catalogue cross-entropy items")?;
        let (n, classes) = (h.len() / d, items.len() / d2.max(1));
        if d != d2 || l1.dims().len() != 2 || l2.dims().len() != 2 || self.labels.len() != n || classes == 0 || self.labels.iter().any(|&l| l as usize >= classes) {
            candle_core::bail!("catalogue cross-entropy: expects rows × d, classes × d and one label below classes per row");
        }
        let item_m = MatRef::from_row_major_slice(items, classes, d);
        let mut dh = vec![0f32; n * d];
        // Per task of consecutive blocks: (Σ loss, d items); the tasks' partial sums are then added
        // in task order, so the result does not depend on how the threads shared the work.
        let per_task = n.div_ceil(XENT_BLOCK).div_ceil(XENT_TASKS).max(1);
        let partial: Vec<(f64, Vec<f32>)> = dh
            .par_chunks_mut(per_task * XENT_BLOCK * d)
            .enumerate()
            .map(|(t, dh_task)| {
                let (mut loss, mut ditems, mut logits) = (0f64, vec![0f32; classes * d], vec![0f32; XENT_BLOCK * classes]);
                for (k, dh_block) in dh_task.chunks_mut(XENT_BLOCK * d).enumerate() {
                    let rows = dh_block.len() / d;
                    let start = (t * per_task + k) * XENT_BLOCK;
                    let h_m = MatRef::from_row_major_slice(&h[start * d..(start + rows) * d], rows, d);
                    let z = &mut logits[..rows * classes];
                    matmul(MatMut::from_row_major_slice_mut(z, rows, classes), Accum::Replace, h_m, item_m.transpose(), 1.0, Par::Seq);
                    for (r, row) in z.chunks_mut(classes).enumerate() {
                        let label = self.labels[start + r] as usize;
                        let target = row[label];
                        loss += (softmax_in_place(row) - target) as f64;
                        row[label] -= 1.0;
                    }
                    let g = MatRef::from_row_major_slice(z, rows, classes);
                    matmul(MatMut::from_row_major_slice_mut(dh_block, rows, d), Accum::Replace, g, item_m, 1.0, Par::Seq);
                    matmul(MatMut::from_row_major_slice_mut(&mut ditems, classes, d), Accum::Add, g.transpose(), h_m, 1.0, Par::Seq);
                }
                (loss, ditems)
            })
            .collect();
        let (mut loss, mut ditems) = (0f64, vec![0f32; classes * d]);
        for (l, p) in partial {
            loss += l;
            ditems.iter_mut().zip(&p).for_each(|(x, y)| *x += y);
        }
        *self.grads.lock().map_err(|_| candle_core::Error::Msg("poisoned".into()))? = Some((dh, ditems));
        Ok((CpuStorage::F32(vec![(loss / n.max(1) as f64) as f32]), Shape::from(())))
    }

    fn bwd(&self, h: &Tensor, items: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let scale = grad.to_dtype(DType::F32)?.to_scalar::<f32>()? / self.labels.len().max(1) as f32;
        let Some((mut dh, mut ditems)) = self.grads.lock().map_err(|_| candle_core::Error::Msg("poisoned".into()))?.take() else {
            candle_core::bail!("catalogue cross-entropy: backward without its forward pass")
        };
        dh.par_iter_mut().chain(ditems.par_iter_mut()).for_each(|v| *v *= scale);
        Ok((Some(Tensor::from_vec(dh, h.shape(), h.device())?), Some(Tensor::from_vec(ditems, items.shape(), items.device())?)))
    }
}

/// The contiguous f32 rows of a CPU tensor (rows × the last dimension).
fn rows_of<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> candle_core::Result<(&'a [f32], usize)> {
    let (a, b) = l.contiguous_offsets().ok_or_else(|| candle_core::Error::Msg(format!("{what}: not contiguous")))?;
    let width = *l.dims().last().unwrap_or(&1);
    Ok((&s.as_slice::<f32>()?[a..b], width.max(1)))
}

/// Mean and 1/√(variance + ε) of one row (population variance, as PyTorch's layer norm).
fn moments(row: &[f32], eps: f32) -> (f32, f32) {
    let n = row.len() as f32;
    let mean = row.iter().sum::<f32>() / n;
    let var = row.iter().map(|&v| (v - mean) * (v - mean)).sum::<f32>() / n;
    (mean, 1.0 / (var + eps).sqrt())
}

/// Rows per rayon task in the fused kernels (each row is a few hundred bytes).
const ROWS_PER_TASK: usize = 64;

/// Layer norm of every row: (x − mean)·rstd·weight + bias, one pass per row.
struct LayerNormOp {
    eps: f32,
}

/// Its backward pass: from x, weight and the output's gradient, [dx rows…, dweight, dbias].
struct LayerNormGrad {
    eps: f32,
}

impl CustomOp3 for LayerNormOp {
    fn name(&self) -> &'static str {
        "fused-layer-norm"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout, s3: &CpuStorage, l3: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, d) = rows_of(s1, l1, "layer norm input")?;
        let (w, _) = rows_of(s2, l2, "layer norm weight")?;
        let (b, _) = rows_of(s3, l3, "layer norm bias")?;
        if w.len() != d || b.len() != d {
            candle_core::bail!("layer norm: weight and bias must have the input's last dimension");
        }
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(d * ROWS_PER_TASK).zip(x.par_chunks(d * ROWS_PER_TASK)).for_each(|(o, x)| {
            for (o, row) in o.chunks_mut(d).zip(x.chunks(d)) {
                let (mean, rstd) = moments(row, self.eps);
                for j in 0..d {
                    o[j] = (row[j] - mean) * rstd * w[j] + b[j];
                }
            }
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, _b: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let rows = x.elem_count() / x.dim(D::Minus1)?.max(1);
        let all = x.apply_op3_no_bwd(w, &grad.contiguous()?, &LayerNormGrad { eps: self.eps })?;
        let dx = all.narrow(0, 0, rows)?.reshape(x.shape())?;
        Ok((Some(dx), Some(all.get(rows)?), Some(all.get(rows + 1)?)))
    }
}

impl CustomOp3 for LayerNormGrad {
    fn name(&self) -> &'static str {
        "fused-layer-norm-grad"
    }

    /// dx = rstd·(g·w − mean(g·w) − x̂·mean(g·w·x̂)); dweight = Σ g·x̂; dbias = Σ g.
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout, s3: &CpuStorage, l3: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, d) = rows_of(s1, l1, "layer norm input")?;
        let (w, _) = rows_of(s2, l2, "layer norm weight")?;
        let (g, _) = rows_of(s3, l3, "layer norm gradient")?;
        if g.len() != x.len() || w.len() != d {
            candle_core::bail!("layer norm gradient: shapes do not match");
        }
        let rows = x.len() / d;
        let mut out = vec![0f32; (rows + 2) * d];
        let (dx, sums) = out.split_at_mut(rows * d);
        let partial: Vec<Vec<f32>> = dx
            .par_chunks_mut(d * ROWS_PER_TASK)
            .zip(x.par_chunks(d * ROWS_PER_TASK).zip(g.par_chunks(d * ROWS_PER_TASK)))
            .map(|(dx, (x, g))| {
                // this task's Σ g·x̂ (first d) and Σ g (last d)
                let mut acc = vec![0f32; 2 * d];
                let mut xhat = vec![0f32; d];
                for ((dx, row), g) in dx.chunks_mut(d).zip(x.chunks(d)).zip(g.chunks(d)) {
                    let (mean, rstd) = moments(row, self.eps);
                    let (mut m1, mut m2) = (0f32, 0f32);
                    for j in 0..d {
                        xhat[j] = (row[j] - mean) * rstd;
                        let gw = g[j] * w[j];
                        m1 += gw;
                        m2 += gw * xhat[j];
                        acc[j] += g[j] * xhat[j];
                        acc[d + j] += g[j];
                    }
                    let (m1, m2) = (m1 / d as f32, m2 / d as f32);
                    for j in 0..d {
                        dx[j] = rstd * (g[j] * w[j] - m1 - xhat[j] * m2);
                    }
                }
                acc
            })
            .collect();
        for acc in partial {
            sums.iter_mut().zip(acc).for_each(|(s, a)| *s += a);
        }
        Ok((CpuStorage::F32(out), Shape::from((rows + 2, d))))
    }
}

/// The additive attention mask of a batch of left-padded sequences (0 = padding): (batch, len,
/// len), 0 where query position i may attend key position j (j ≤ i and j not padding), −1e9
/// elsewhere. Shared by every block of a forward pass.
#[derive(Clone, Debug)]
pub struct AttentionMask {
    values: Arc<Vec<f32>>,
    batch: usize,
    len: usize,
}

impl AttentionMask {
    pub fn causal(seqs: &[u32], len: usize) -> AttentionMask {
        let batch = seqs.len() / len.max(1);
        let mut values = vec![0f32; batch * len * len];
        for (b, m) in values.chunks_mut(len * len).enumerate() {
            for (i, row) in m.chunks_mut(len).enumerate() {
                for (j, v) in row.iter_mut().enumerate() {
                    if j > i || seqs[b * len + j] == 0 {
                        *v = -1e9;
                    }
                }
            }
        }
        AttentionMask { values: Arc::new(values), batch, len }
    }

    /// How many attention weights a batch has (batch·len·len).
    pub fn weights(&self) -> usize {
        self.values.len()
    }
}

/// One-head scaled dot-product attention of each sequence of a batch: softmax(q·kᵀ/√d + mask)·v,
/// with q, k and v (batch·len × d) rows and inverted dropout `keep` (batch·len·len multipliers)
/// on the attention weights. On the CPU one fused op: per sequence two small matrix products and
/// the masked softmax forward, four products and the softmax backward, keeping only the weights
/// (Candle's composed attention makes a dozen graph nodes of batch·len² or batch·len·d floats,
/// each with a gradient allocated, zeroed and added to: a fifth of a SASRec epoch); elsewhere
/// Candle's composed ops.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, mask: &AttentionMask, keep: Option<Vec<f32>>) -> candle_core::Result<Tensor> {
    let d = q.dim(D::Minus1)?;
    let scale = 1.0 / (d as f64).sqrt();
    if [q, k, v].iter().all(|t| t.device().is_cpu() && t.dtype() == DType::F32 && t.rank() == 2) {
        let op = Attention { mask: mask.clone(), keep, scale: scale as f32, probs: Mutex::new(None) };
        return q.contiguous()?.apply_op3(&k.contiguous()?, &v.contiguous()?, op);
    }
    let (batch, len) = (mask.batch, mask.len);
    let dev = q.device();
    let [q, k, v] = [q, k, v].map(|t| t.reshape((batch, len, d)));
    let scores = (q?.matmul(&k?.t()?.contiguous()?)? * scale)?;
    let additive = Tensor::from_slice(&mask.values, (batch, len, len), dev)?;
    let weights = dropout(&candle_nn::ops::softmax(&scores.add(&additive)?, D::Minus1)?, keep)?;
    weights.matmul(&v?)?.reshape((batch * len, d))
}

/// Sequence b's rows (len × d) of a batch's row-major rows.
fn sequence_rows(x: &[f32], b: usize, len: usize, d: usize) -> faer::MatRef<'_, f32> {
    faer::MatRef::from_row_major_slice(&x[b * len * d..(b + 1) * len * d], len, d)
}

struct Attention {
    mask: AttentionMask,
    keep: Option<Vec<f32>>,
    scale: f32,
    /// The attention weights before dropout (batch·len·len), from the forward pass.
    probs: Mutex<Option<Vec<f32>>>,
}

impl Attention {
    /// Sequence b's attention weights after dropout.
    fn dropped<'a>(&self, p: &'a [f32], b: usize) -> std::borrow::Cow<'a, [f32]> {
        match &self.keep {
            Some(keep) => p.iter().zip(&keep[b * p.len()..(b + 1) * p.len()]).map(|(p, m)| p * m).collect(),
            None => p.into(),
        }
    }
}

impl CustomOp3 for Attention {
    fn name(&self) -> &'static str {
        "fused-attention"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout, s3: &CpuStorage, l3: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        use faer::{Accum, MatMut, MatRef, Par};
        let (q, d) = rows_of(s1, l1, "attention queries")?;
        let (k, dk) = rows_of(s2, l2, "attention keys")?;
        let (v, dv) = rows_of(s3, l3, "attention values")?;
        let (batch, len) = (self.mask.batch, self.mask.len);
        let (ll, ld) = (len * len, len * d);
        if [q.len(), k.len(), v.len()] != [batch * ld; 3] || (dk, dv) != (d, d) || self.keep.as_ref().is_some_and(|m| m.len() != batch * ll) {
            candle_core::bail!("attention: expects batch·len × d queries, keys and values for a batch × len mask");
        }
        let mut probs = vec![0f32; batch * ll];
        let mut out = vec![0f32; batch * ld];
        probs.par_chunks_mut(ll).zip(out.par_chunks_mut(ld)).enumerate().for_each(|(b, (p, o))| {
            let rows = |x| sequence_rows(x, b, len, d);
            matmul(MatMut::from_row_major_slice_mut(p, len, len), Accum::Replace, rows(q), rows(k).transpose(), self.scale, Par::Seq);
            for (row, m) in p.chunks_mut(len).zip(self.mask.values[b * ll..(b + 1) * ll].chunks(len)) {
                row.iter_mut().zip(m).for_each(|(s, m)| *s += m);
                softmax_in_place(row);
            }
            let w = self.dropped(p, b);
            matmul(MatMut::from_row_major_slice_mut(o, len, d), Accum::Replace, MatRef::from_row_major_slice(&w, len, len), rows(v), 1.0, Par::Seq);
        });
        *self.probs.lock().map_err(|_| candle_core::Error::Msg("poisoned".into()))? = Some(probs);
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    /// With W the weights after dropout and P before: dV = Wᵀ·dO, dW = dO·Vᵀ, dP = dW ⊙ keep,
    /// dS = P ⊙ (dP − Σ dP·P) per row, dQ = dS·K/√d, dK = dSᵀ·Q/√d.
    fn bwd(&self, q: &Tensor, k: &Tensor, v: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        use faer::{Accum, MatMut, MatRef, Par};
        let Some(probs) = self.probs.lock().map_err(|_| candle_core::Error::Msg("poisoned".into()))?.take() else {
            candle_core::bail!("attention: backward without its forward pass")
        };
        let grad = grad.contiguous()?;
        let guards = [q, k, v, &grad].map(|t| t.storage_and_layout());
        let mut inputs = Vec::with_capacity(4);
        for (storage, layout) in &guards {
            let candle_core::Storage::Cpu(s) = &**storage else { candle_core::bail!("attention: backward off the CPU") };
            inputs.push(rows_of(s, layout, "attention backward")?.0);
        }
        let (q, k, v, g) = (inputs[0], inputs[1], inputs[2], inputs[3]);
        let (len, d) = (self.mask.len, q.len() / (self.mask.batch * self.mask.len).max(1));
        let (ll, ld) = (len * len, len * d);
        if g.len() != q.len() || probs.len() != self.mask.batch * ll {
            candle_core::bail!("attention: the gradient does not match the forward pass");
        }
        let (mut dq, mut dk, mut dv) = (vec![0f32; q.len()], vec![0f32; q.len()], vec![0f32; q.len()]);
        dq.par_chunks_mut(ld).zip(dk.par_chunks_mut(ld).zip(dv.par_chunks_mut(ld))).enumerate().for_each(|(b, (dq, (dk, dv)))| {
            let rows = |x| sequence_rows(x, b, len, d);
            let p = &probs[b * ll..(b + 1) * ll];
            let w = self.dropped(p, b);
            matmul(MatMut::from_row_major_slice_mut(dv, len, d), Accum::Replace, MatRef::from_row_major_slice(&w, len, len).transpose(), rows(g), 1.0, Par::Seq);
            let mut ds = vec![0f32; ll];
            matmul(MatMut::from_row_major_slice_mut(&mut ds, len, len), Accum::Replace, rows(g), rows(v).transpose(), 1.0, Par::Seq);
            if let Some(keep) = &self.keep {
                ds.iter_mut().zip(&keep[b * ll..(b + 1) * ll]).for_each(|(x, m)| *x *= m);
            }
            for (dsr, pr) in ds.chunks_mut(len).zip(p.chunks(len)) {
                let dot: f32 = dsr.iter().zip(pr).map(|(a, b)| a * b).sum();
                dsr.iter_mut().zip(pr).for_each(|(x, p)| *x = p * (*x - dot));
            }
            let ds = MatRef::from_row_major_slice(&ds, len, len);
            matmul(MatMut::from_row_major_slice_mut(dq, len, d), Accum::Replace, ds, rows(k), self.scale, Par::Seq);
            matmul(MatMut::from_row_major_slice_mut(dk, len, d), Accum::Replace, ds.transpose(), rows(q), self.scale, Par::Seq);
        });
        let shape = guards[0].1.shape().clone();
        let dev = grad.device();
        drop(guards);
        Ok((Some(Tensor::from_vec(dq, shape.clone(), dev)?), Some(Tensor::from_vec(dk, shape.clone(), dev)?), Some(Tensor::from_vec(dv, shape, dev)?)))
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
            out.insert(name, v.as_tensor().to_device(&Device::Cpu)?);
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

    /// A builder over these weights on the CPU, for serving: a module built from it gets each
    /// weight it names with the shape it expects, or the model is corrupt.
    pub fn vb(&self) -> VarBuilder<'static> {
        VarBuilder::from_tensors(self.0.clone(), DType::F32, &Device::Cpu)
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
            let v = t.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
            out.f32s_owned(&format!("weights.{name}"), t.dims(), v);
        }
        Ok(())
    }

    pub fn load(r: &In) -> Result<Weights> {
        let mut out = HashMap::new();
        for name in r.names("weights.") {
            let shape = r.shape(&format!("weights.{name}"))?;
            let v = r.f32s(&format!("weights.{name}"), None)?;
            out.insert(name, Tensor::from_vec(v, shape, &Device::Cpu)?);
        }
        Ok(Weights(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_cross_entropy_matches_candles_composed_one_and_its_gradients() {
        let mut rng = Rng::new(6);
        let mut t = |r: usize, c: usize| Var::from_tensor(&Tensor::from_vec((0..r * c).map(|_| rng.normal() as f32).collect::<Vec<_>>(), (r, c), &Device::Cpu).unwrap()).unwrap();
        // 1100 rows: 18 blocks, the last one short, in 6 tasks of 3 blocks; 37 classes.
        let (h, items) = (t(1100, 8), t(37, 8));
        let labels: Vec<u32> = (0..1100).map(|r| (r * 7 % 37) as u32).collect();
        let ours = catalogue_cross_entropy(h.as_tensor(), items.as_tensor(), &labels).unwrap();
        let logits = h.as_tensor().matmul(&items.as_tensor().t().unwrap()).unwrap();
        let theirs = candle_nn::loss::cross_entropy(&logits, &Tensor::new(labels.as_slice(), &Device::Cpu).unwrap()).unwrap();
        let (a, b) = (ours.to_scalar::<f32>().unwrap(), theirs.to_scalar::<f32>().unwrap());
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        // The upstream gradient scales the result (a loss used ×3).
        let one = Tensor::new(3f32, &Device::Cpu).unwrap();
        let (g1, g2) = (grads_of(&ours, &one, &[&h, &items]), grads_of(&theirs, &one, &[&h, &items]));
        for (p, q) in g1.iter().zip(&g2) {
            assert_close(p, q, 1e-4);
        }
        assert!(catalogue_cross_entropy(h.as_tensor(), items.as_tensor(), &[37; 150]).is_err());
        assert!(catalogue_cross_entropy(h.as_tensor(), items.as_tensor(), &labels[..10]).is_err());
    }

    /// The gradients of Σ (out ⊙ probe) with respect to `vars`, flattened.
    fn grads_of(out: &Tensor, probe: &Tensor, vars: &[&Var]) -> Vec<Vec<f32>> {
        let g = out.mul(probe).unwrap().sum_all().unwrap().backward().unwrap();
        vars.iter().map(|v| g.get(v.as_tensor()).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap()).collect()
    }

    fn assert_close(a: &[f32], b: &[f32], tol: f32) {
        assert_eq!(a.len(), b.len());
        for (p, q) in a.iter().zip(b) {
            assert!((p - q).abs() <= tol * (1.0 + q.abs()), "{p} vs {q}");
        }
    }

    #[test]
    fn fast_exp_is_within_two_ulp() {
        let mut worst = 0f64;
        for k in 0..=200_000 {
            let x = -87.0 + 97.0 * k as f32 / 200_000.0;
            let (ours, libm) = (exp_fast(x) as f64, (x as f64).exp());
            worst = worst.max(((ours - libm) / libm).abs());
        }
        assert!(worst < 3e-7, "worst relative error {worst}");
        assert_eq!(exp_fast(0.0), 1.0);
        assert_eq!(exp_fast(-1e9), 0.0);
        let mut row = [1.0f32, 2.0, 3.0];
        let lse = softmax_in_place(&mut row);
        assert!((lse - (1f32.exp() + 2f32.exp() + 3f32.exp()).ln()).abs() < 1e-6);
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6 && row[2] > row[1]);
    }

    #[test]
    fn fused_adamw_steps_like_candles() {
        let s = Schedule { epochs: 1, batch_size: 1, lr: 0.03, weight_decay: 0.2, seed: 1 };
        let mut rng = Rng::new(3);
        // More values than one parallel chunk holds.
        let start: Vec<f32> = (0..40_000).map(|_| rng.normal() as f32).collect();
        let var = |v: &Vec<f32>| Var::from_tensor(&Tensor::from_vec(v.clone(), (200, 200), &Device::Cpu).unwrap()).unwrap();
        let (ours, theirs) = (var(&start), var(&start));
        let mut fused = adamw(&[("w".to_string(), ours.clone())], &s).unwrap();
        assert!(matches!(fused, Adam::Fused { .. }));
        let params = ParamsAdamW { lr: s.lr, weight_decay: s.weight_decay, ..Default::default() };
        let mut reference = AdamW::new(vec![theirs.clone()], params).unwrap();
        let loss = |v: &Var| v.as_tensor().sqr().unwrap().sum_all().unwrap().sqrt().unwrap();
        for _ in 0..4 {
            fused.step(&loss(&ours).backward().unwrap()).unwrap();
            reference.backward_step(&loss(&theirs)).unwrap();
        }
        let flat = |v: &Var| v.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_close(&flat(&ours), &flat(&theirs), 1e-5);
        assert_ne!(flat(&ours), start);
    }

    #[test]
    fn fused_layer_norm_matches_the_composed_one_and_its_gradients() {
        let mut rng = Rng::new(4);
        let t = |shape: &[usize], rng: &mut Rng| {
            let n: usize = shape.iter().product();
            Tensor::from_vec((0..n).map(|_| rng.normal() as f32).collect::<Vec<_>>(), shape.to_vec(), &Device::Cpu).unwrap()
        };
        // 3-D input, more rows than one task holds, so the partial sums are reduced across tasks.
        let x = Var::from_tensor(&t(&[3, 50, 8], &mut rng)).unwrap();
        let w = Var::from_tensor(&t(&[8], &mut rng)).unwrap();
        let b = Var::from_tensor(&t(&[8], &mut rng)).unwrap();
        let probe = t(&[3, 50, 8], &mut rng);
        let ours = x.as_tensor().apply_op3(w.as_tensor(), b.as_tensor(), LayerNormOp { eps: 1e-8 }).unwrap();
        let theirs = candle_nn::ops::layer_norm_slow(x.as_tensor(), w.as_tensor(), b.as_tensor(), 1e-8).unwrap();
        let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_close(&flat(&ours), &flat(&theirs), 1e-5);
        let (g1, g2) = (grads_of(&ours, &probe, &[&x, &w, &b]), grads_of(&theirs, &probe, &[&x, &w, &b]));
        for (a, b) in g1.iter().zip(&g2) {
            assert_close(a, b, 1e-4);
        }
        // The module takes the fused path on the CPU.
        let norm = Norm { weight: w.as_tensor().clone(), bias: b.as_tensor().clone(), eps: 1e-8 };
        assert_close(&flat(&norm.forward(x.as_tensor()).unwrap()), &flat(&theirs), 1e-5);
    }

    #[test]
    fn dense_matches_candles_linear_and_its_gradients() {
        let mut rng = Rng::new(6);
        let t = |shape: &[usize], rng: &mut Rng| {
            let n: usize = shape.iter().product();
            Tensor::from_vec((0..n).map(|_| rng.normal() as f32).collect::<Vec<_>>(), shape.to_vec(), &Device::Cpu).unwrap()
        };
        // 700 rows: more than one column-sum task, so the partial sums are reduced across tasks.
        let x = Var::from_tensor(&t(&[700, 6], &mut rng)).unwrap();
        let w = Var::from_tensor(&t(&[4, 6], &mut rng)).unwrap();
        let b = Var::from_tensor(&t(&[4], &mut rng)).unwrap();
        let probe = t(&[700, 4], &mut rng);
        let dense = Dense { weight: w.as_tensor().clone(), bias: b.as_tensor().clone() };
        let ours = dense.forward(x.as_tensor()).unwrap();
        let theirs = Linear::new(w.as_tensor().clone(), Some(b.as_tensor().clone())).forward(x.as_tensor()).unwrap();
        let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_close(&flat(&ours), &flat(&theirs), 1e-5);
        let (g1, g2) = (grads_of(&ours, &probe, &[&x, &w, &b]), grads_of(&theirs, &probe, &[&x, &w, &b]));
        for (a, b) in g1.iter().zip(&g2) {
            assert_close(a, b, 1e-3);
        }
        // a batched (3-D) input takes Candle's path and gives the same rows
        let x3 = x.as_tensor().reshape((7, 100, 6)).unwrap();
        assert_close(&flat(&dense.forward(&x3).unwrap()), &flat(&theirs), 1e-5);
    }

    #[test]
    fn fused_attention_and_dropout_match_the_composed_ones_and_their_gradients() {
        let mut rng = Rng::new(8);
        let (batch, len, d) = (3, 7, 5);
        let t = |shape: &[usize], rng: &mut Rng| {
            let n: usize = shape.iter().product();
            Tensor::from_vec((0..n).map(|_| rng.normal() as f32).collect::<Vec<_>>(), shape.to_vec(), &Device::Cpu).unwrap()
        };
        let [q, k, v] = [0; 3].map(|_| Var::from_tensor(&t(&[batch * len, d], &mut rng)).unwrap());
        // left padding of 0, 3 and 6 positions (the last sequence has one item)
        let seqs: Vec<u32> = (0..batch * len).map(|p| u32::from(p % len >= 3 * (p / len))).collect();
        let mask = AttentionMask::causal(&seqs, len);
        let keep = dropout_keep(&mut rng, mask.weights(), 0.3);
        let probe = t(&[batch * len, d], &mut rng);
        let ours = attention(q.as_tensor(), k.as_tensor(), v.as_tensor(), &mask, keep.clone()).unwrap();
        // batched (3-D) inputs take Candle's composed path, as every device but the CPU does
        let three = |x: &Var| x.as_tensor().reshape((batch, len, d)).unwrap();
        let theirs = attention(&three(&q), &three(&k), &three(&v), &mask, keep).unwrap();
        let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_close(&flat(&ours), &flat(&theirs), 1e-5);
        let (g1, g2) = (grads_of(&ours, &probe, &[&q, &k, &v]), grads_of(&theirs, &probe, &[&q, &k, &v]));
        for (a, b) in g1.iter().zip(&g2) {
            assert_close(a, b, 1e-4);
        }
        // a position attends only to itself and earlier items: changing a later or a padding
        // key and value leaves its output alone
        let (mut k2, mut v2) = (flat(k.as_tensor()), flat(v.as_tensor()));
        for j in [len + 2, len + 5] {
            k2[j * d] += 3.0;
            v2[j * d] -= 2.0;
        }
        let moved = |x: Vec<f32>| Tensor::from_vec(x, (batch * len, d), &Device::Cpu).unwrap();
        let changed = flat(&attention(q.as_tensor(), &moved(k2), &moved(v2), &mask, None).unwrap());
        let before = flat(&attention(q.as_tensor(), k.as_tensor(), v.as_tensor(), &mask, None).unwrap());
        let row = |x: &[f32], r: usize| x[r * d..(r + 1) * d].to_vec();
        assert_eq!(row(&changed, len + 4), row(&before, len + 4), "position 4 of sequence 1 sees only positions 3 and 4");
        assert_ne!(row(&changed, len + 6), row(&before, len + 6));
        // dropout: the fused op and Candle's product, values and gradient
        let x = Var::from_tensor(&t(&[40, 9], &mut rng)).unwrap();
        let keep = dropout_keep(&mut rng, 360, 0.5).unwrap();
        assert!(keep.iter().all(|&m| m == 0.0 || m == 2.0) && keep.contains(&0.0) && keep.contains(&2.0));
        let masked = dropout(x.as_tensor(), Some(keep.clone())).unwrap();
        let product = x.as_tensor().mul(&Tensor::from_vec(keep, (40, 9), &Device::Cpu).unwrap()).unwrap();
        assert_eq!(flat(&masked), flat(&product));
        let probe = t(&[40, 9], &mut rng);
        assert_eq!(grads_of(&masked, &probe, &[&x]), grads_of(&product, &probe, &[&x]));
        assert!(dropout_keep(&mut rng, 10, 0.0).is_none());
    }

    #[test]
    fn seeded_builder_draws_each_weight_once_in_order_and_reads_stored_ones() {
        let build_one = |seed| {
            let mut rng = Rng::new(seed);
            let (lin, vars) = build(&mut rng, &Device::Cpu, |vb| linear(3, 2, Init::Const(0.5), vb.pp("l"))).unwrap();
            (lin, vars, rng.next_u64())
        };
        let (a, vars, after) = build_one(1);
        let (b, _, again) = build_one(1);
        let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(flat(&a.weight), flat(&b.weight));
        assert_eq!(after, again, "the generator goes on from where the weights left it");
        assert_eq!(vars.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["l.weight", "l.bias"]);
        assert_eq!(flat(&a.bias), [0.5, 0.5]);
        assert!(flat(&a.weight).iter().all(|v| v.abs() <= 1.0 / 3f32.sqrt()));
        // Served from stored weights: the same values; a missing or misshapen weight is corrupt.
        let stored = Weights::from_vars(vars).unwrap();
        let served = linear(3, 2, Init::Const(0.0), stored.vb().pp("l")).unwrap();
        assert_eq!(flat(&served.weight), flat(&a.weight));
        assert!(linear(4, 2, Init::Const(0.0), stored.vb().pp("l")).is_err());
        assert!(linear(3, 2, Init::Const(0.0), stored.vb().pp("m")).is_err());
    }

    #[test]
    fn sparse_table_steps_like_adamw_on_the_rows_it_touches() {
        let s = Schedule { epochs: 1, batch_size: 1, lr: 0.05, weight_decay: 0.1, seed: 1 };
        let mut table = SparseTable::new(4, 3, 1.0, &mut Rng::new(9));
        let before = table.values.clone();
        let rows = [1u32, 3];
        let dense = table.gather(&rows, &Device::Cpu).unwrap();
        let params = ParamsAdamW { lr: s.lr, weight_decay: s.weight_decay, ..Default::default() };
        let mut opt = AdamW::new(vec![dense.clone()], params).unwrap();
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
