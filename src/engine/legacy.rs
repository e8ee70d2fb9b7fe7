//! The model format of pg_recsys 0.1.0 to 0.3.0 (format version 1), read-only: a magic, a
//! version, positional little-endian fields and an FNV-1a checksum. Models stored by those
//! versions keep serving after `ALTER EXTENSION pg_recsys UPDATE`, and `recsys.export_model`
//! writes them in the current format (`format`). Nothing writes this format any more.

use serde_json::Value;

use crate::engine::content::Content;
use crate::engine::ease::Ease;
use crate::engine::factors::{FactorKind, Factors};
use crate::engine::format::{check_csr, check_neighbors};
use crate::engine::hybrid::{Fusion, Hybrid};
use crate::engine::interactions::Csr;
use crate::engine::knn::{Baselines, Neighbors, RatingKnn};
use crate::engine::model::Model;
use crate::engine::popularity::Popularity;
use crate::engine::recommender::Recommender;
use crate::engine::ncf::Ncf;
use crate::engine::neural::Weights;
use crate::engine::sequential::Sasrec;
use crate::engine::two_tower::TwoTower;
use crate::engine::userknn::{UserKnn, UserKnnParams};
use crate::engine::{ErrorKind, RecsysError, Result};

const MAGIC: &[u8; 4] = b"RSYS";
const FORMAT_VERSION: u32 = 1;

/// Whether `bytes` starts like a version-1 model.
pub fn is_legacy(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

fn corrupt(what: &str) -> RecsysError {
    RecsysError::new(ErrorKind::Corrupt, format!("stored model is corrupt: {what}")).with_hint("retrain the model with recsys.train")
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Result<Self> {
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
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
    fn len(&mut self, width: usize) -> Result<usize> {
        let n = self.u64()? as usize;
        if n.checked_mul(width).is_none_or(|b| b > self.buf.len() - self.pos) {
            return Err(corrupt("length out of range"));
        }
        Ok(n)
    }
    fn str(&mut self) -> Result<String> {
        let n = self.len(1)?;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| corrupt("bad string"))
    }
    fn i64s(&mut self) -> Result<Vec<i64>> {
        let n = self.len(8)?;
        Ok(self.take(n * 8)?.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect())
    }
    fn u32s(&mut self) -> Result<Vec<u32>> {
        let n = self.len(4)?;
        Ok(self.take(n * 4)?.chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().unwrap())).collect())
    }
    fn f32s(&mut self) -> Result<Vec<f32>> {
        let n = self.len(4)?;
        Ok(self.take(n * 4)?.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect())
    }
    fn bytes(&mut self) -> Result<Vec<u8>> {
        let n = self.len(1)?;
        Ok(self.take(n)?.to_vec())
    }
    fn u64s(&mut self) -> Result<Vec<u64>> {
        let n = self.len(8)?;
        Ok(self.take(n * 8)?.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap())).collect())
    }
    fn usizes(&mut self) -> Result<Vec<usize>> {
        let n = self.len(8)?;
        Ok(self.take(n * 8)?.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap()) as usize).collect())
    }
    fn finish(self) -> Result<()> {
        if self.pos != self.buf.len() {
            return Err(corrupt("trailing bytes"));
        }
        Ok(())
    }
}


pub fn decode(bytes: &[u8]) -> Result<Model> {
    let mut r = Reader::new(bytes)?;
    let name = r.str()?;
    let item_ids = r.i64s()?;
    let popularity = r.f32s()?;
    if popularity.len() != item_ids.len() {
        return Err(corrupt("popularity length"));
    }
    let algorithm: Box<dyn Recommender> = match name.as_str() {
        "popularity" => Box::new(Popularity),
        "item_knn" => Box::new(decode_neighbors(&mut r, item_ids.len())?),
        "user_knn" => Box::new(decode_user_knn(&mut r, item_ids.len())?),
        "ncf" => {
            let user_ids = r.i64s()?;
            let bytes = r.bytes()?;
            Box::new(Weights::from_safetensors(&bytes).and_then(|w| Ncf::checked(user_ids, item_ids.len(), w)).map_err(|e| corrupt(&e.message))?)
        }
        "sequential" => {
            let (max_len, blocks, bytes) = (r.u64()? as usize, r.u64()? as usize, r.bytes()?);
            Box::new(
                Weights::from_safetensors(&bytes).and_then(|w| Sasrec::checked(max_len, blocks, item_ids.len(), w)).map_err(|e| corrupt(&e.message))?,
            )
        }
        "two_tower" => Box::new(
            Weights::from_safetensors(&r.bytes()?)
                .and_then(|w| TwoTower::from_weights(w, item_ids.len()))
                .map_err(|e| corrupt(&e.message))?,
        ),
        "content" => {
            let neighbors = decode_neighbors(&mut r, item_ids.len())?;
            let (terms, idf, flags) = (r.str()?, r.f32s()?, r.u64s()?);
            let terms: Vec<String> = terms.split('\n').map(str::to_string).collect();
            let vectors = Csr { indptr: r.usizes()?, indices: r.u32s()?, values: r.f32s()?, n_cols: terms.len() };
            let ok = flags.len() == 3
                && idf.len() == terms.len()
                && terms.windows(2).all(|w| w[0] < w[1])
                && vectors.indptr.len() == item_ids.len() + 1
                && vectors.indptr.windows(2).all(|w| w[0] <= w[1])
                && vectors.indptr.last() == Some(&vectors.indices.len())
                && vectors.values.len() == vectors.indices.len()
                && vectors.indices.iter().all(|&t| (t as usize) < terms.len());
            if !ok {
                return Err(corrupt("content vectors"));
            }
            let mut c = Content::new(terms, idf, flags[0] as usize, flags[1] == 1, vectors, neighbors);
            c.half_life = f32::from_bits(flags[2] as u32);
            Box::new(c)
        }
        "hybrid" => {
            let fusion = Fusion::from_code(r.u64()?).ok_or_else(|| corrupt("hybrid fusion"))?;
            let weights = r.f32s()?;
            let members = weights
                .iter()
                .map(|&w| {
                    let m = decode(&r.bytes()?)?;
                    if m.item_ids != item_ids || m.algorithm.name() == "hybrid" {
                        return Err(corrupt("hybrid member catalogue"));
                    }
                    Ok((w, m))
                })
                .collect::<Result<Vec<_>>>()?;
            if members.len() < 2 {
                return Err(corrupt("hybrid members"));
            }
            Box::new(Hybrid { members, fusion })
        }
        "item_knn_ratings" => {
            let neighbors = decode_neighbors(&mut r, item_ids.len())?;
            let (item_bias, s, k) = (r.f32s()?, r.f32s()?, r.u64()? as usize);
            if item_bias.len() != item_ids.len() || s.len() != 4 || k == 0 {
                return Err(corrupt("rating baselines"));
            }
            let baselines = Baselines { mean: s[0], item_bias, reg_u: s[1], range: (s[2], s[3]) };
            Box::new(RatingKnn { neighbors, baselines, k })
        }
        "ease" => {
            let n = item_ids.len();
            let weights = r.f32s()?;
            if weights.len() != n * n {
                return Err(corrupt("EASE weights"));
            }
            Box::new(Ease { weights: crate::engine::ease::Weights::Dense(weights), neighbors: decode_neighbors(&mut r, n)? })
        }
        other => match FactorKind::from_name(other) {
            Some(kind) => Box::new(decode_factors(&mut r, kind, item_ids.len())?),
            None => return Err(corrupt(&format!("unknown algorithm \"{other}\""))),
        },
    };
    r.finish()?;
    Ok(Model { item_ids, popularity, algorithm, params: Value::Null, weighting: Default::default() })
}

fn decode_user_knn(r: &mut Reader, n_items: usize) -> Result<UserKnn> {
    let params = UserKnnParams::decode(&r.f32s()?).ok_or_else(|| corrupt("user_knn parameters"))?;
    let user_ids = r.i64s()?;
    let by_user = Csr { indptr: r.usizes()?, indices: r.u32s()?, values: r.f32s()?, n_cols: n_items };
    check_csr(&by_user, user_ids.len(), "user_knn interactions")?;
    let neighbors = decode_neighbors(r, user_ids.len())?;
    Ok(UserKnn::new(params, user_ids, by_user, neighbors))
}

fn decode_neighbors(r: &mut Reader, n: usize) -> Result<Neighbors> {
    let nb = Neighbors { indptr: r.usizes()?, indices: r.u32s()?, scores: r.f32s()? };
    check_neighbors(&nb, n)?;
    Ok(nb)
}

fn decode_factors(r: &mut Reader, kind: FactorKind, n_items: usize) -> Result<Factors> {
    let k = r.u64()? as usize;
    let user_ids = r.i64s()?;
    let (users, items, item_bias, user_bias, implicit) = (r.f32s()?, r.f32s()?, r.f32s()?, r.f32s()?, r.f32s()?);
    let scalars = r.f32s()?;
    let fingerprints = r.u64s()?;
    let n_users = user_ids.len();
    let ok = k > 0
        && scalars.len() == 5
        && users.len() == n_users * k
        && items.len() == n_items * k
        && (item_bias.is_empty() || item_bias.len() == n_items)
        && (user_bias.is_empty() || user_bias.len() == n_users)
        && (implicit.is_empty() || implicit.len() == n_items * k)
        && fingerprints.len() == n_users
        && user_ids.windows(2).all(|w| w[0] < w[1])
        && (!kind.explicit() || (item_bias.len() == n_items && user_bias.len() == n_users));
    if !ok {
        return Err(corrupt("factor matrices"));
    }
    Ok(Factors {
        kind,
        k,
        user_ids,
        users,
        items,
        item_bias,
        user_bias,
        implicit,
        mean: scalars[0],
        fingerprints,
        regularization: scalars[1],
        alpha: scalars[2],
        range: (scalars[3], scalars[4]),
        gram: Vec::new(),
        reg_scale: (0.0, 1.0),
    }
    .with_gram())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::engine::model::Request;

    fn fixture(name: &str) -> String {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/models-0.2.0/");
        std::fs::read_to_string(format!("{dir}{name}")).unwrap()
    }

    fn rows(csv: &str) -> Vec<Vec<String>> {
        csv.lines().skip(1).map(|l| l.splitn(5, ',').map(str::to_string).collect()).collect()
    }

    /// Models written by the 0.2.0 code (tests/fixtures/models-0.2.0, see generate.rs there) give
    /// the same top 10 as 0.2.0 gave, read from the old format and again after a round trip
    /// through the current one.
    #[test]
    fn models_written_by_0_2_0_answer_as_they_did() {
        let data = rows(&fixture("data.csv"));
        let items: Vec<(i64, String)> = rows(&fixture("items.csv")).into_iter().map(|r| (r[0].parse().unwrap(), r[1..].join(","))).collect();
        let mut expected: BTreeMap<(String, i64), Vec<(i64, f32)>> = BTreeMap::new();
        for r in rows(&fixture("expected.csv")) {
            expected.entry((r[0].clone(), r[1].parse().unwrap())).or_default().push((r[3].parse().unwrap(), r[4].parse().unwrap()));
        }
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/models-0.2.0/");
        let mut checked = 0;
        for name in ["popularity", "item_knn", "item_knn_ratings", "user_knn", "ease", "svd", "biased_mf", "svdpp", "als", "bpr", "ncf", "sequential", "two_tower", "content", "hybrid"] {
            let bytes = std::fs::read(format!("{dir}{name}.bin")).unwrap();
            assert!(is_legacy(&bytes), "{name}");
            let old = Model::decode(&bytes).unwrap();
            let again = Model::decode(&old.encode().unwrap()).unwrap();
            assert_eq!(again, old, "{name}: the current format keeps every part");
            let explicit = matches!(name, "item_knn_ratings" | "biased_mf" | "svdpp");
            for u in 1..=8i64 {
                // The user's rows in time order (data.csv is), as the live table is read.
                let history: Vec<(i64, f32)> = data
                    .iter()
                    .filter(|r| r[0].parse::<i64>().unwrap() == u)
                    .map(|r| (r[1].parse().unwrap(), if explicit { r[2].parse().unwrap() } else { 1.0 }))
                    .collect();
                let texts: &[(i64, String)] = if old.reads_item_text() { &items } else { &[] };
                let req = Request { user_id: Some(u), history: &history, n: 10, exclude_seen: true, candidates: None, items: texts, diversity: 0.0 };
                let want = &expected[&(name.to_string(), u)];
                for m in [&old, &again] {
                    let got = m.recommend(&req).unwrap();
                    assert_eq!(got.iter().map(|p| p.0).collect::<Vec<_>>(), want.iter().map(|p| p.0).collect::<Vec<_>>(), "{name} user {u}");
                    for (g, w) in got.iter().zip(want) {
                        assert!((g.1 - w.1).abs() <= 1e-5 * w.1.abs().max(1.0), "{name} user {u}: {g:?} vs {w:?}");
                    }
                }
                checked += 1;
            }
        }
        assert_eq!(checked, 15 * 8);
    }

    #[test]
    fn damaged_old_models_are_corrupt() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/models-0.2.0/");
        let mut bytes = std::fs::read(format!("{dir}als.bin")).unwrap();
        bytes[40] ^= 1;
        assert_eq!(Model::decode(&bytes).unwrap_err().kind, ErrorKind::Corrupt);
        assert!(Model::decode(&bytes[..12]).is_err());
    }
}
