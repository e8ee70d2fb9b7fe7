//! The binary format of a trained model, stored chunked in `recsys.model_blobs`.
//! Little-endian fields after a magic and a format version, and an FNV-1a checksum at the end,
//! so a damaged blob is reported as corrupt instead of being served.

use crate::engine::{ErrorKind, RecsysError, Result};

const MAGIC: &[u8; 4] = b"RSYS";
pub const FORMAT_VERSION: u32 = 1;

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

pub struct Writer {
    buf: Vec<u8>,
}

impl Default for Writer {
    fn default() -> Self {
        Self::new()
    }
}

impl Writer {
    pub fn new() -> Self {
        let mut buf = Vec::new();
        buf.extend_from_slice(MAGIC);
        buf.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        Writer { buf }
    }
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn str(&mut self, s: &str) {
        self.u64(s.len() as u64);
        self.buf.extend_from_slice(s.as_bytes());
    }
    pub fn i64s(&mut self, v: &[i64]) {
        self.u64(v.len() as u64);
        v.iter().for_each(|x| self.buf.extend_from_slice(&x.to_le_bytes()));
    }
    pub fn u32s(&mut self, v: &[u32]) {
        self.u64(v.len() as u64);
        v.iter().for_each(|x| self.buf.extend_from_slice(&x.to_le_bytes()));
    }
    pub fn f32s(&mut self, v: &[f32]) {
        self.u64(v.len() as u64);
        v.iter().for_each(|x| self.buf.extend_from_slice(&x.to_le_bytes()));
    }
    pub fn bytes(&mut self, v: &[u8]) {
        self.u64(v.len() as u64);
        self.buf.extend_from_slice(v);
    }
    pub fn u64s(&mut self, v: &[u64]) {
        self.u64(v.len() as u64);
        v.iter().for_each(|x| self.buf.extend_from_slice(&x.to_le_bytes()));
    }
    pub fn usizes(&mut self, v: &[usize]) {
        self.u64(v.len() as u64);
        v.iter().for_each(|&x| self.buf.extend_from_slice(&(x as u64).to_le_bytes()));
    }
    pub fn finish(mut self) -> Vec<u8> {
        let sum = fnv1a(&self.buf);
        self.buf.extend_from_slice(&sum.to_le_bytes());
        self.buf
    }
}

pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

/// The error for a damaged or unreadable model blob.
pub fn corrupt(what: &str) -> RecsysError {
    RecsysError::new(ErrorKind::Corrupt, format!("model blob is corrupt: {what}"))
        .with_hint("retrain the model with recsys.train")
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Result<Self> {
        if bytes.len() < 16 || &bytes[..4] != MAGIC {
            return Err(corrupt("bad header"));
        }
        let (body, sum) = bytes.split_at(bytes.len() - 8);
        if fnv1a(body) != u64::from_le_bytes(sum.try_into().unwrap()) {
            return Err(corrupt("checksum mismatch"));
        }
        let version = u32::from_le_bytes(body[4..8].try_into().unwrap());
        if version != FORMAT_VERSION {
            return Err(corrupt(&format!("format version {version}, this build reads {FORMAT_VERSION}")));
        }
        Ok(Reader { buf: body, pos: 8 })
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len()).ok_or_else(|| corrupt("truncated"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    pub fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
    fn len(&mut self, width: usize) -> Result<usize> {
        let n = self.u64()? as usize;
        if n.checked_mul(width).is_none_or(|b| b > self.buf.len() - self.pos) {
            return Err(corrupt("length out of range"));
        }
        Ok(n)
    }
    pub fn str(&mut self) -> Result<String> {
        let n = self.len(1)?;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| corrupt("bad string"))
    }
    pub fn i64s(&mut self) -> Result<Vec<i64>> {
        let n = self.len(8)?;
        Ok(self.take(n * 8)?.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect())
    }
    pub fn u32s(&mut self) -> Result<Vec<u32>> {
        let n = self.len(4)?;
        Ok(self.take(n * 4)?.chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().unwrap())).collect())
    }
    pub fn f32s(&mut self) -> Result<Vec<f32>> {
        let n = self.len(4)?;
        Ok(self.take(n * 4)?.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect())
    }
    pub fn bytes(&mut self) -> Result<Vec<u8>> {
        let n = self.len(1)?;
        Ok(self.take(n)?.to_vec())
    }
    pub fn u64s(&mut self) -> Result<Vec<u64>> {
        let n = self.len(8)?;
        Ok(self.take(n * 8)?.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap())).collect())
    }
    pub fn usizes(&mut self) -> Result<Vec<usize>> {
        let n = self.len(8)?;
        Ok(self.take(n * 8)?.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap()) as usize).collect())
    }
    pub fn finish(self) -> Result<()> {
        if self.pos != self.buf.len() {
            return Err(corrupt("trailing bytes"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corruption() {
        let mut w = Writer::new();
        w.str("item_knn");
        w.i64s(&[-5, 7]);
        w.f32s(&[1.5]);
        w.u32s(&[3, 4]);
        w.usizes(&[0, 2]);
        w.u64s(&[u64::MAX]);
        let bytes = w.finish();
        let mut r = Reader::new(&bytes).unwrap();
        assert_eq!(r.str().unwrap(), "item_knn");
        assert_eq!(r.i64s().unwrap(), vec![-5, 7]);
        assert_eq!(r.f32s().unwrap(), vec![1.5]);
        assert_eq!(r.u32s().unwrap(), vec![3, 4]);
        assert_eq!(r.usizes().unwrap(), vec![0, 2]);
        assert_eq!(r.u64s().unwrap(), vec![u64::MAX]);
        r.finish().unwrap();

        let mut bad = bytes.clone();
        bad[12] ^= 1;
        assert_eq!(Reader::new(&bad).err().unwrap().kind, ErrorKind::Corrupt);
        assert!(Reader::new(&bytes[..10]).is_err());
    }
}
