//! The model file: one safetensors file per model version, stored chunked in
//! `recsys.model_blobs` and returned by `recsys.export_model`.
//!
//! Every array is a named tensor (little-endian, row-major, as numpy reads it). The safetensors
//! `__metadata__` holds strings: `format` ("pg_recsys"), `format_version`, `algorithm`, `params`
//! (the effective training params, JSON), `state` (the algorithm's scalars, JSON; for a hybrid
//! also its members, each with the tensor-name prefix of its arrays) and `checksum`. Tensors
//! common to every model: `item_ids` (i64 [n_items], ascending: row i of any per-item array
//! belongs to `item_ids[i]`) and `popularity` (f32 [n_items]). Per-user arrays come with
//! `user_ids` the same way. The README lists each algorithm's tensors.
//!
//! Files written before format version 2 (pg_recsys 0.1.0 to 0.3.0) are read by `legacy`.

use std::borrow::Cow;
use std::collections::HashMap;

use safetensors::tensor::{SafeTensors, TensorView};
use safetensors::Dtype;
use serde_json::{Map, Value};

use crate::engine::interactions::Csr;
use crate::engine::knn::Neighbors;
use crate::engine::{ErrorKind, RecsysError, Result};

pub const FORMAT: &str = "pg_recsys";
/// Version 1 was the positional binary codec of 0.1.0 to 0.3.0 (see `legacy`).
pub const FORMAT_VERSION: u64 = 2;

pub fn corrupt(what: &str) -> RecsysError {
    RecsysError::new(ErrorKind::Corrupt, format!("stored model is corrupt: {what}"))
}

/// Tensors being written, borrowing the model's arrays (the file is the only copy made).
#[derive(Default)]
pub struct Tensors<'a> {
    tensors: Vec<Pending<'a>>,
}

struct Pending<'a> {
    name: String,
    dtype: Dtype,
    shape: Vec<usize>,
    data: Cow<'a, [u8]>,
}

impl<'a> Tensors<'a> {
    fn push(&mut self, name: String, dtype: Dtype, shape: Vec<usize>, data: Cow<'a, [u8]>) {
        self.tensors.push(Pending { name, dtype, shape, data });
    }

    /// The file: these tensors, the metadata strings and the checksum.
    pub fn finish(mut self, mut metadata: HashMap<String, String>) -> Result<Vec<u8>> {
        self.tensors.sort_by(|a, b| a.name.cmp(&b.name));
        if let Some(w) = self.tensors.windows(2).find(|w| w[0].name == w[1].name) {
            return Err(RecsysError::new(ErrorKind::Internal, format!("tensor {} written twice", w[0].name)));
        }
        metadata.insert("checksum".to_string(), checksum(self.tensors.iter().map(|t| (t.name.as_str(), &t.data[..]))));
        let views = self
            .tensors
            .iter()
            .map(|t| Ok((t.name.as_str(), TensorView::new(t.dtype, t.shape.clone(), &t.data).map_err(internal)?)))
            .collect::<Result<Vec<_>>>()?;
        safetensors::tensor::serialize(views, Some(metadata)).map_err(internal)
    }
}

/// FNV-1a over little-endian 64-bit words (then the tail bytes) of every tensor's name and data,
/// in name order, as 16 hex digits: a damaged file is reported as corrupt instead of being
/// served. Files made elsewhere may leave `checksum` out.
fn checksum<'a>(tensors: impl Iterator<Item = (&'a str, &'a [u8])>) -> String {
    let mut sum = Checksum::default();
    for (name, data) in tensors {
        sum.add(name.as_bytes());
        sum.add(data);
    }
    format!("{:016x}", sum.finish())
}

struct Checksum {
    h: u64,
    tail: Vec<u8>,
}

impl Default for Checksum {
    fn default() -> Self {
        Checksum { h: 0xcbf2_9ce4_8422_2325, tail: Vec::new() }
    }
}

impl Checksum {
    fn mix(&mut self, w: u64) {
        self.h = (self.h ^ w).wrapping_mul(0x0100_0000_01b3);
    }

    fn add(&mut self, mut bytes: &[u8]) {
        if !self.tail.is_empty() {
            let take = (8 - self.tail.len()).min(bytes.len());
            self.tail.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.tail.len() == 8 {
                let w = u64::from_le_bytes(self.tail[..].try_into().expect("8 bytes"));
                self.mix(w);
                self.tail.clear();
            }
        }
        let words = bytes.chunks_exact(8);
        let rest = words.remainder();
        words.for_each(|c| self.mix(u64::from_le_bytes(c.try_into().expect("8 bytes"))));
        self.tail.extend_from_slice(rest);
    }

    fn finish(mut self) -> u64 {
        for b in std::mem::take(&mut self.tail) {
            self.mix(b as u64);
        }
        self.h
    }
}

fn internal(e: safetensors::SafeTensorError) -> RecsysError {
    RecsysError::new(ErrorKind::Internal, format!("cannot write the model file: {e}"))
}

/// Plain numbers without padding, whose bytes on a little-endian machine are their file form.
trait Plain: Copy {
    fn put(self, out: &mut Vec<u8>);
}

macro_rules! plain {
    ($($t:ty),*) => {$(impl Plain for $t {
        fn put(self, out: &mut Vec<u8>) {
            out.extend_from_slice(&self.to_le_bytes());
        }
    })*};
}
plain!(f32, i64, u32, u64);

fn le_bytes<T: Plain>(v: &[T]) -> Cow<'_, [u8]> {
    if cfg!(target_endian = "little") {
        // SAFETY: f32, i64, u32 and u64 have no padding and no invalid bit patterns, and the
        // byte slice covers exactly the memory of `v`, for as long as `v` is borrowed.
        Cow::Borrowed(unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<u8>(), std::mem::size_of_val(v)) })
    } else {
        let mut out = Vec::with_capacity(std::mem::size_of_val(v));
        v.iter().for_each(|&x| x.put(&mut out));
        Cow::Owned(out)
    }
}

/// One model's part of a file: its tensors under a name prefix, and its state scalars.
pub struct Out<'f, 'a> {
    file: &'f mut Tensors<'a>,
    prefix: String,
    pub state: Map<String, Value>,
}

impl<'f, 'a> Out<'f, 'a> {
    pub fn new(file: &'f mut Tensors<'a>, prefix: &str) -> Out<'f, 'a> {
        Out { file, prefix: prefix.to_string(), state: Map::new() }
    }

    /// A member's part of this file, under `prefix` + `name`.
    pub fn nested(&mut self, name: &str) -> Out<'_, 'a> {
        Out { file: self.file, prefix: format!("{}{name}", self.prefix), state: Map::new() }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn set(&mut self, key: &str, v: impl Into<Value>) {
        self.state.insert(key.to_string(), v.into());
    }

    fn put(&mut self, name: &str, dtype: Dtype, shape: Vec<usize>, data: Cow<'a, [u8]>) {
        let name = format!("{}{name}", self.prefix);
        self.file.push(name, dtype, shape, data);
    }

    pub fn f32s(&mut self, name: &str, shape: &[usize], v: &'a [f32]) {
        self.put(name, Dtype::F32, shape.to_vec(), le_bytes(v));
    }

    /// Values computed while storing (e.g. neural weights brought out of their tensors).
    pub fn f32s_owned(&mut self, name: &str, shape: &[usize], v: Vec<f32>) {
        self.put(name, Dtype::F32, shape.to_vec(), Cow::Owned(le_bytes(&v).into_owned()));
    }

    pub fn i64s(&mut self, name: &str, v: &'a [i64]) {
        self.put(name, Dtype::I64, vec![v.len()], le_bytes(v));
    }

    pub fn u32s(&mut self, name: &str, v: &'a [u32]) {
        self.put(name, Dtype::U32, vec![v.len()], le_bytes(v));
    }

    pub fn u64s(&mut self, name: &str, v: &'a [u64]) {
        self.put(name, Dtype::U64, vec![v.len()], le_bytes(v));
    }

    /// Offsets, as u64.
    pub fn usizes(&mut self, name: &str, v: &[usize]) {
        let words: Vec<u64> = v.iter().map(|&x| x as u64).collect();
        self.put(name, Dtype::U64, vec![v.len()], Cow::Owned(le_bytes(&words).into_owned()));
    }

    pub fn bytes(&mut self, name: &str, v: Vec<u8>) {
        self.put(name, Dtype::U8, vec![v.len()], Cow::Owned(v));
    }

    /// Top-k neighbour lists as CSR: `<name>.indptr` (u64 [rows + 1]), `.indices` (u32, row
    /// positions in the same id map), `.scores` (f32).
    pub fn neighbors(&mut self, name: &str, nb: &'a Neighbors) {
        self.usizes(&format!("{name}.indptr"), &nb.indptr);
        self.u32s(&format!("{name}.indices"), &nb.indices);
        self.f32s(&format!("{name}.scores"), &[nb.scores.len()], &nb.scores);
    }

    /// A sparse matrix as CSR: `<name>.indptr`, `.indices`, `.values`.
    pub fn csr(&mut self, name: &str, m: &'a Csr) {
        self.usizes(&format!("{name}.indptr"), &m.indptr);
        self.u32s(&format!("{name}.indices"), &m.indices);
        self.f32s(&format!("{name}.values"), &[m.values.len()], &m.values);
    }
}

/// A parsed file's metadata strings.
pub struct Header {
    pub algorithm: String,
    pub version: u64,
    pub params: Value,
    pub state: Map<String, Value>,
}

/// Whether `bytes` is a safetensors file (an 8-byte header length, then a JSON object).
pub fn is_file(bytes: &[u8]) -> bool {
    bytes.len() >= 10 && bytes[8] == b'{'
}

/// The file and its header, checked: the format name, a version this code reads, the algorithm.
pub fn open(bytes: &[u8]) -> Result<(SafeTensors<'_>, Header)> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| corrupt(&format!("not a safetensors file ({e})")))?;
    let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| corrupt(&e.to_string()))?;
    let meta = meta.metadata().clone().unwrap_or_default();
    let get = |k: &str| meta.get(k).map(String::as_str);
    if get("format") != Some(FORMAT) {
        return Err(corrupt("metadata \"format\" is not \"pg_recsys\""));
    }
    if let Some(expected) = get("checksum") {
        let mut named = st.tensors();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        if checksum(named.iter().map(|(n, t)| (n.as_str(), t.data()))) != expected {
            return Err(corrupt("checksum mismatch"));
        }
    }
    let version: u64 = get("format_version").and_then(|v| v.parse().ok()).ok_or_else(|| corrupt("metadata \"format_version\" missing"))?;
    if version > FORMAT_VERSION {
        return Err(RecsysError::new(
            ErrorKind::Unsupported,
            format!("the model file has format version {version}; this pg_recsys reads up to {FORMAT_VERSION}"),
        )
        .with_hint("upgrade pg_recsys, or export the model from the version that wrote it".to_string()));
    }
    let algorithm = get("algorithm").ok_or_else(|| corrupt("metadata \"algorithm\" missing"))?.to_string();
    let json = |k: &str| -> Result<Value> {
        match get(k) {
            None => Ok(Value::Null),
            Some(s) => serde_json::from_str(s).map_err(|e| corrupt(&format!("metadata \"{k}\" is not JSON ({e})"))),
        }
    };
    let params = json("params")?;
    let state = match json("state")? {
        Value::Null => Map::new(),
        Value::Object(m) => m,
        _ => return Err(corrupt("metadata \"state\" is not an object")),
    };
    Ok((st, Header { algorithm, version, params, state }))
}

/// The metadata strings of a file written now.
pub fn metadata(algorithm: &str, params: &Value, state: Map<String, Value>) -> HashMap<String, String> {
    HashMap::from([
        ("format".to_string(), FORMAT.to_string()),
        ("format_version".to_string(), FORMAT_VERSION.to_string()),
        ("algorithm".to_string(), algorithm.to_string()),
        ("params".to_string(), params.to_string()),
        ("state".to_string(), Value::Object(state).to_string()),
    ])
}

/// One model's part of a file being read.
pub struct In<'a> {
    st: &'a SafeTensors<'a>,
    prefix: String,
    pub state: &'a Map<String, Value>,
}

impl<'a> In<'a> {
    pub fn new(st: &'a SafeTensors<'a>, prefix: &str, state: &'a Map<String, Value>) -> In<'a> {
        In { st, prefix: prefix.to_string(), state }
    }

    /// A member's part: the file of `r`, the absolute `prefix`, its own state.
    pub fn new_at(r: &In<'a>, prefix: &str, state: &'a Map<String, Value>) -> In<'a> {
        In { st: r.st, prefix: prefix.to_string(), state }
    }

    /// The names under `prefix` (after it), sorted.
    pub fn names(&self, prefix: &str) -> Vec<String> {
        let full = format!("{}{prefix}", self.prefix);
        let mut v: Vec<String> = self.st.names().into_iter().filter_map(|n| n.strip_prefix(full.as_str()).map(str::to_string)).collect();
        v.sort();
        v
    }

    pub fn has(&self, name: &str) -> bool {
        self.st.tensor(&format!("{}{name}", self.prefix)).is_ok()
    }

    fn view(&self, name: &str, dtype: Dtype) -> Result<TensorView<'a>> {
        let full = format!("{}{name}", self.prefix);
        let t = self.st.tensor(&full).map_err(|_| corrupt(&format!("tensor {full} missing")))?;
        if t.dtype() != dtype {
            return Err(corrupt(&format!("tensor {full} is {:?}, expected {dtype:?}", t.dtype())));
        }
        Ok(t)
    }

    /// The tensor's shape.
    pub fn shape(&self, name: &str) -> Result<Vec<usize>> {
        let full = format!("{}{name}", self.prefix);
        Ok(self.st.tensor(&full).map_err(|_| corrupt(&format!("tensor {full} missing")))?.shape().to_vec())
    }

    /// An f32 tensor, flattened, whose shape must be `shape` (None: any).
    pub fn f32s(&self, name: &str, shape: Option<&[usize]>) -> Result<Vec<f32>> {
        let t = self.view(name, Dtype::F32)?;
        if let Some(s) = shape {
            if t.shape() != s {
                return Err(corrupt(&format!("tensor {}{name} has shape {:?}, expected {s:?}", self.prefix, t.shape())));
            }
        }
        Ok(t.data().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes"))).collect())
    }

    /// An f32 matrix and its (rows, columns).
    pub fn matrix(&self, name: &str) -> Result<(Vec<f32>, usize, usize)> {
        let s = self.shape(name)?;
        let [r, c] = s[..] else {
            return Err(corrupt(&format!("tensor {}{name} is not a matrix", self.prefix)));
        };
        Ok((self.f32s(name, None)?, r, c))
    }

    pub fn i64s(&self, name: &str) -> Result<Vec<i64>> {
        Ok(self.view(name, Dtype::I64)?.data().chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes"))).collect())
    }

    pub fn u32s(&self, name: &str) -> Result<Vec<u32>> {
        Ok(self.view(name, Dtype::U32)?.data().chunks_exact(4).map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes"))).collect())
    }

    pub fn u64s(&self, name: &str) -> Result<Vec<u64>> {
        Ok(self.view(name, Dtype::U64)?.data().chunks_exact(8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes"))).collect())
    }

    pub fn usizes(&self, name: &str) -> Result<Vec<usize>> {
        self.u64s(name)?.into_iter().map(|x| usize::try_from(x).map_err(|_| corrupt(name))).collect()
    }

    pub fn bytes(&self, name: &str) -> Result<Vec<u8>> {
        Ok(self.view(name, Dtype::U8)?.data().to_vec())
    }

    /// Neighbour lists over `n` rows (see `Out::neighbors`), checked.
    pub fn neighbors(&self, name: &str, n: usize) -> Result<Neighbors> {
        let nb = Neighbors {
            indptr: self.usizes(&format!("{name}.indptr"))?,
            indices: self.u32s(&format!("{name}.indices"))?,
            scores: self.f32s(&format!("{name}.scores"), None)?,
        };
        check_neighbors(&nb, n)?;
        Ok(nb)
    }

    /// A CSR matrix of `rows` × `cols` (see `Out::csr`), checked.
    pub fn csr(&self, name: &str, rows: usize, cols: usize) -> Result<Csr> {
        let m = Csr {
            indptr: self.usizes(&format!("{name}.indptr"))?,
            indices: self.u32s(&format!("{name}.indices"))?,
            values: self.f32s(&format!("{name}.values"), None)?,
            n_cols: cols,
        };
        check_csr(&m, rows, name)?;
        Ok(m)
    }

    /// A state scalar.
    pub fn get(&self, key: &str) -> Result<&'a Value> {
        self.state.get(key).ok_or_else(|| corrupt(&format!("state \"{}{key}\" missing", self.prefix)))
    }

    pub fn f32(&self, key: &str) -> Result<f32> {
        self.get(key)?.as_f64().map(|v| v as f32).ok_or_else(|| corrupt(&format!("state \"{key}\" is not a number")))
    }

    pub fn usize(&self, key: &str) -> Result<usize> {
        self.get(key)?.as_u64().map(|v| v as usize).ok_or_else(|| corrupt(&format!("state \"{key}\" is not a count")))
    }

    pub fn str(&self, key: &str) -> Result<&'a str> {
        self.get(key)?.as_str().ok_or_else(|| corrupt(&format!("state \"{key}\" is not a string")))
    }
}

/// Neighbour rows over `n` items (or users), each pointing inside the same id map.
pub fn check_neighbors(nb: &Neighbors, n: usize) -> Result<()> {
    let ok = nb.indptr.len() == n + 1
        && nb.indptr.first() == Some(&0)
        && nb.indptr.windows(2).all(|w| w[0] <= w[1])
        && nb.indptr.last() == Some(&nb.indices.len())
        && nb.scores.len() == nb.indices.len()
        && nb.indices.iter().all(|&j| (j as usize) < n);
    if ok {
        Ok(())
    } else {
        Err(corrupt("neighbour lists"))
    }
}

pub fn check_csr(m: &Csr, rows: usize, what: &str) -> Result<()> {
    let ok = m.indptr.len() == rows + 1
        && m.indptr.first() == Some(&0)
        && m.indptr.windows(2).all(|w| w[0] <= w[1])
        && m.indptr.last() == Some(&m.indices.len())
        && m.values.len() == m.indices.len()
        && m.indices.iter().all(|&c| (c as usize) < m.n_cols);
    if ok {
        Ok(())
    } else {
        Err(corrupt(what))
    }
}

/// Ids of an id map: strictly ascending (the position is the row).
pub fn check_ids(ids: &[i64], what: &str) -> Result<()> {
    if ids.windows(2).all(|w| w[0] < w[1]) {
        Ok(())
    } else {
        Err(corrupt(&format!("{what} are not strictly ascending")))
    }
}

/// A part stored with `store` and read back with `load`, through a whole file (tests).
#[cfg(test)]
pub fn round_trip<'a, T>(store: impl FnOnce(&mut Out<'_, 'a>) -> Result<()>, load: impl FnOnce(&In) -> Result<T>) -> Result<T> {
    let mut file = Tensors::default();
    let mut out = Out::new(&mut file, "");
    store(&mut out)?;
    let state = std::mem::take(&mut out.state);
    let bytes = file.finish(metadata("test", &Value::Null, state))?;
    let (st, h) = open(&bytes)?;
    load(&In::new(&st, "", &h.state))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensors_and_state_round_trip_and_are_checked() {
        let mut file = Tensors::default();
        let mut out = Out::new(&mut file, "");
        out.f32s("m", &[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        out.i64s("item_ids", &[-5, 7]);
        out.set("k", 3);
        let mut member = out.nested("members.0.");
        member.u32s("x", &[9]);
        let state = std::mem::take(&mut out.state);
        let bytes = file.finish(metadata("als", &serde_json::json!({"factors": 3}), state)).unwrap();
        assert!(is_file(&bytes));
        // One flipped bit in the data is corrupt, not served.
        let mut bad = bytes.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(open(&bad).err().unwrap().message.contains("checksum"));
        let (st, h) = open(&bytes).unwrap();
        assert_eq!((h.algorithm.as_str(), h.version, h.params["factors"].as_u64()), ("als", FORMAT_VERSION, Some(3)));
        let r = In::new(&st, "", &h.state);
        assert_eq!(r.matrix("m").unwrap(), (vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 2, 3));
        assert_eq!(r.i64s("item_ids").unwrap(), vec![-5, 7]);
        assert_eq!(r.usize("k").unwrap(), 3);
        let empty = Map::new();
        assert_eq!(In::new_at(&r, "members.0.", &empty).u32s("x").unwrap(), vec![9]);
        assert_eq!(r.f32s("m", Some(&[3, 2])).unwrap_err().kind, ErrorKind::Corrupt);
        assert_eq!(r.i64s("m").unwrap_err().kind, ErrorKind::Corrupt);
        assert_eq!(r.f32s("nope", None).unwrap_err().kind, ErrorKind::Corrupt);
        // Another program's safetensors file, or a newer format, is refused with the reason.
        let foreign = Tensors::default().finish(HashMap::new()).unwrap();
        assert!(open(&foreign).err().unwrap().message.contains("format"));
        let mut newer = metadata("als", &Value::Null, Map::new());
        newer.insert("format_version".into(), "99".into());
        assert_eq!(open(&Tensors::default().finish(newer).unwrap()).err().unwrap().kind, ErrorKind::Unsupported);
    }
}
