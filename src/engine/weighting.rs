//! How interaction values become model weights, for the models that do not predict ratings:
//! the same transform is applied to the training matrix and to every live history served, so a
//! play count of 3,000 does not weigh 3,000 times a single play.
//!
//! - `none`: the value as it is (every row weighs 1 when there is no rating column; duplicate
//!   rows are summed, so a table of plays gives counts).
//! - `log`: sign(w)·log2(1 + |w|), so 1 stays 1 and 1,000 plays weigh about 10.
//! - `bm25` (as the implicit library's `bm25_weight`, K1 = `bm25_k1`, B = `bm25_b`):
//!   w·(K1 + 1) / (K1·((1 − B) + B·len_u / avg_len) + w) · idf_i, with len_u the sum of the user's
//!   values and idf_i = ln(n_users) − ln(1 + users of i).
//! - `tfidf` (implicit's `tfidf_weight`): sqrt(w)·idf_i.
//! - `auto` (the default): `log` when some value exceeds 1 (counts, ratings), else `none`, so a
//!   binary table trains exactly as before.
//!
//! idf is floored at 0.01 (an item nearly every user has would otherwise get a zero or negative
//! weight and flip the sign of a positive). The sign of a negative value (a dislike) is kept.

use crate::engine::format::{In, Out};
use crate::engine::interactions::Csr;
use crate::engine::params::Params;
use crate::engine::{RecsysError, Result};

pub const SCHEMES: &[&str] = &["auto", "none", "log", "bm25", "tfidf"];

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Scheme {
    Auto,
    None,
    Log,
    Bm25 { k1: f32, b: f32 },
    Tfidf,
}

impl Scheme {
    /// The `weighting` param (and bm25's `bm25_k1`, `bm25_b`); rating models take only `none`.
    pub fn from_params(p: &mut Params, for_ratings: bool) -> Result<Scheme> {
        if for_ratings {
            p.choice("weighting", "none", &["none"])?;
            return Ok(Scheme::None);
        }
        Ok(match p.choice("weighting", "auto", SCHEMES)? {
            "none" => Scheme::None,
            "log" => Scheme::Log,
            "bm25" => Scheme::Bm25 { k1: p.float("bm25_k1", 100.0, 0.0, 1e6)? as f32, b: p.float("bm25_b", 0.8, 0.0, 1.0)? as f32 },
            "tfidf" => Scheme::Tfidf,
            _ => Scheme::Auto,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Scheme::Auto => "auto",
            Scheme::None => "none",
            Scheme::Log => "log",
            Scheme::Bm25 { .. } => "bm25",
            Scheme::Tfidf => "tfidf",
        }
    }
}

/// A scheme resolved on the training matrix, with what it learned there (idf, mean length).
#[derive(Clone, Debug, PartialEq)]
pub struct Weighting {
    pub scheme: Scheme,
    pub idf: Vec<f32>,
    pub avg_len: f32,
}

impl Default for Weighting {
    fn default() -> Self {
        Weighting { scheme: Scheme::None, idf: Vec::new(), avg_len: 1.0 }
    }
}

const IDF_FLOOR: f32 = 0.01;

impl Weighting {
    /// `scheme` resolved on the users × items matrix `m` (raw values).
    pub fn fit(scheme: Scheme, m: &Csr) -> Weighting {
        let scheme = match scheme {
            Scheme::Auto if m.values.iter().any(|&v| v.abs() > 1.0) => Scheme::Log,
            Scheme::Auto => Scheme::None,
            s => s,
        };
        let needs_idf = matches!(scheme, Scheme::Bm25 { .. } | Scheme::Tfidf);
        if !needs_idf {
            return Weighting { scheme, ..Weighting::default() };
        }
        let mut df = vec![0u32; m.n_cols];
        m.indices.iter().for_each(|&i| df[i as usize] += 1);
        let n = m.n_rows().max(1) as f32;
        let idf = df.iter().map(|&d| (n.ln() - (1.0 + d as f32).ln()).max(IDF_FLOOR)).collect();
        let total: f64 = m.values.iter().map(|&v| v.abs() as f64).sum();
        let avg_len = (total / m.n_rows().max(1) as f64).max(1e-12) as f32;
        Weighting { scheme, idf, avg_len }
    }

    pub fn is_identity(&self) -> bool {
        self.scheme == Scheme::None
    }

    /// One user's (item index, value) entries, weighted in place.
    pub fn apply(&self, entries: &mut [(u32, f32)]) {
        if self.is_identity() {
            return;
        }
        let len: f32 = entries.iter().map(|e| e.1.abs()).sum();
        entries.iter_mut().for_each(|e| e.1 = self.weigh(e.0, e.1, len));
    }

    /// The matrix's values weighted in place, row by row.
    pub fn apply_matrix(&self, m: &mut Csr) {
        if self.is_identity() {
            return;
        }
        for u in 0..m.n_rows() {
            let (a, z) = (m.indptr[u], m.indptr[u + 1]);
            let len: f32 = m.values[a..z].iter().map(|v| v.abs()).sum();
            for p in a..z {
                m.values[p] = self.weigh(m.indices[p], m.values[p], len);
            }
        }
    }

    fn weigh(&self, item: u32, w: f32, len: f32) -> f32 {
        let (sign, a) = (w.signum(), w.abs());
        let idf = || self.idf.get(item as usize).copied().unwrap_or(IDF_FLOOR);
        sign * match self.scheme {
            Scheme::None | Scheme::Auto => a,
            Scheme::Log => (1.0 + a).log2(),
            Scheme::Bm25 { k1, b } => a * (k1 + 1.0) / (k1 * ((1.0 - b) + b * len / self.avg_len) + a) * idf(),
            Scheme::Tfidf => a.sqrt() * idf(),
        }
    }

    /// Its part of the model file: state `weighting` (absent: none) and `weighting.idf`.
    pub fn store<'a>(&'a self, out: &mut Out<'_, 'a>) {
        if self.is_identity() {
            return;
        }
        let mut state = serde_json::json!({"scheme": self.scheme.name(), "avg_len": self.avg_len});
        if let Scheme::Bm25 { k1, b } = self.scheme {
            state["k1"] = k1.into();
            state["b"] = b.into();
        }
        out.set("weighting", state);
        if !self.idf.is_empty() {
            out.f32s("weighting.idf", &[self.idf.len()], &self.idf);
        }
    }

    pub fn load(r: &In, n_items: usize) -> Result<Weighting> {
        let Some(state) = r.state.get("weighting") else { return Ok(Weighting::default()) };
        let corrupt = |what: &str| RecsysError::new(crate::engine::ErrorKind::Corrupt, format!("stored model is corrupt: weighting {what}"));
        let num = |k: &str| state.get(k).and_then(|v| v.as_f64()).map(|v| v as f32).ok_or_else(|| corrupt(&format!("has no {k}")));
        let scheme = match state.get("scheme").and_then(|v| v.as_str()) {
            Some("log") => Scheme::Log,
            Some("bm25") => Scheme::Bm25 { k1: num("k1")?, b: num("b")? },
            Some("tfidf") => Scheme::Tfidf,
            _ => return Err(corrupt("names no known scheme")),
        };
        let idf = if matches!(scheme, Scheme::Bm25 { .. } | Scheme::Tfidf) { r.f32s("weighting.idf", Some(&[n_items]))? } else { Vec::new() };
        Ok(Weighting { scheme, idf, avg_len: num("avg_len")? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m() -> Csr {
        // 2 users × 3 items: user 0 {0: 1, 1: 3000}, user 1 {1: 1, 2: -2}
        Csr { indptr: vec![0, 2, 4], indices: vec![0, 1, 1, 2], values: vec![1.0, 3000.0, 1.0, -2.0], n_cols: 3 }
    }

    #[test]
    fn auto_is_log_for_counts_and_none_for_binary() {
        let w = Weighting::fit(Scheme::Auto, &m());
        assert_eq!(w.scheme, Scheme::Log);
        let mut x = m();
        w.apply_matrix(&mut x);
        assert_eq!(x.values[0], 1.0);
        assert!((x.values[1] - 3001f32.log2()).abs() < 1e-5);
        assert!((x.values[3] + 3f32.log2()).abs() < 1e-6, "a dislike stays negative");
        let binary = Csr { values: vec![1.0; 4], ..m() };
        assert!(Weighting::fit(Scheme::Auto, &binary).is_identity());
    }

    #[test]
    fn bm25_as_implicit_computes_it_and_histories_match_training() {
        let w = Weighting::fit(Scheme::Bm25 { k1: 100.0, b: 0.8 }, &m());
        // idf = ln 2 − ln(1 + df): item 0 (df 1): 0; floored. Item 1 (df 2): ln(2/3) < 0: floored.
        assert_eq!(w.idf, vec![IDF_FLOOR; 3]);
        assert!((w.avg_len - 3004.0 / 2.0).abs() < 1e-3);
        let mut x = m();
        w.apply_matrix(&mut x);
        let norm = 0.2 + 0.8 * 3001.0 / 1502.0;
        assert!((x.values[1] - 3000.0 * 101.0 / (100.0 * norm + 3000.0) * IDF_FLOOR).abs() < 1e-6);
        // a served history is weighted as its training row was
        let mut h = vec![(0u32, 1.0f32), (1, 3000.0)];
        w.apply(&mut h);
        assert_eq!((h[0].1, h[1].1), (x.values[0], x.values[1]));
    }
}
