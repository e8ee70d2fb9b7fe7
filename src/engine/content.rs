//! Content-based recommendation: TF-IDF vectors of the items' text (sublinear tf, smooth idf,
//! L2-normalised, sparse), a user profile that is the weighted sum of the vectors of the user's
//! items, and the cosine of the profile with every item, through an inverted index. Items'
//! nearest content neighbours are kept for `recsys.item_neighbors` and `similar_items`.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use rayon::prelude::*;

use crate::engine::format::{corrupt, In, Out};
use crate::engine::interactions::index_of;
use crate::engine::interactions::{Csr, Interactions};
use crate::engine::knn::Neighbors;
use crate::engine::model::{item_label, similar_from, text_bytes, untrained_eligible, untrained_texts, Model, Request, Scored};
use crate::engine::neural::DeviceChoice;
use crate::engine::params::Params;
use crate::engine::recommender::{Recommender, Trainer};
use crate::engine::text::terms;
use crate::engine::topk::top_k;
use crate::engine::text::Memo;
use crate::engine::{Progress, RecsysError, Result};

#[derive(Clone, Debug, PartialEq)]
pub struct ContentParams {
    pub ngrams: usize,
    pub min_df: usize,
    pub max_df: f64,
    pub stop_words: bool,
    pub neighbors: usize,
    /// With a time column: the weight of a history item halves every this many more recent
    /// items (0: no decay).
    pub half_life: f64,
}

impl ContentParams {
    pub fn from_params(p: &mut Params) -> Result<Self> {
        Ok(ContentParams {
            ngrams: p.int("ngrams", 1, 1, 3)? as usize,
            min_df: p.int("min_df", 1, 1, i32::MAX as i64)? as usize,
            max_df: p.float("max_df", 1.0, 1e-9, 1.0)?,
            stop_words: p.choice("stop_words", "english", &["english", "none"])? == "english",
            neighbors: p.int("neighbors", 50, 0, 10_000)? as usize,
            half_life: p.float("recency_half_life", 0.0, 0.0, 1e6)?,
        })
    }
}

pub fn memory_estimate(n_items: usize, text_bytes: usize, p: &ContentParams) -> usize {
    text_bytes * 24 * p.ngrams + n_items * p.neighbors * 8 + n_items * 8
}

/// The fitted vocabulary and item vectors.
#[derive(Clone, Debug, PartialEq)]
pub struct Content {
    /// Vocabulary, ascending; a term's index is its position.
    pub terms: Vec<String>,
    pub idf: Vec<f32>,
    pub ngrams: usize,
    pub stop_words: bool,
    /// items × terms, rows L2-normalised.
    pub vectors: Csr,
    pub neighbors: Neighbors,
    /// terms × items (the inverted index), derived.
    pub by_term: Csr,
    /// See `ContentParams::half_life`.
    pub half_life: f32,
    /// Vectors of texts not trained on (items added since), by text: serving vectorizes each
    /// such text once per decoded model, not on every call.
    pub memo: Memo<Vec<(u32, f32)>>,
}


impl Content {
    pub fn new(terms: Vec<String>, idf: Vec<f32>, ngrams: usize, stop_words: bool, vectors: Csr, neighbors: Neighbors) -> Content {
        let by_term = vectors.transpose();
        Content { terms, idf, ngrams, stop_words, vectors, neighbors, by_term, half_life: 0.0, memo: Memo::default() }
    }

    /// The recency factor of the history item at `position` (0 = oldest) of `len`.
    pub fn decay(&self, position: usize, len: usize) -> f32 {
        if self.half_life > 0.0 {
            0.5f32.powf((len - 1 - position) as f32 / self.half_life)
        } else {
            1.0
        }
    }

    /// The TF-IDF vector of any text over this vocabulary (unknown terms are ignored).
    /// `vectorize`, remembered per text (for the untrained items served again and again).
    pub fn vector_of(&self, text: &str) -> Vec<(u32, f32)> {
        self.memo.get_or(text, || self.vectorize(text))
    }

    pub fn vectorize(&self, text: &str) -> Vec<(u32, f32)> {
        let mut counts: BTreeMap<u32, f32> = BTreeMap::new();
        for t in terms(text, self.ngrams, self.stop_words) {
            if let Ok(i) = self.terms.binary_search(&t) {
                *counts.entry(i as u32).or_default() += 1.0;
            }
        }
        normalised(counts.into_iter().map(|(t, c)| (t, (1.0 + c.ln()) * self.idf[t as usize])).collect())
    }

    /// The profile of a history of (vector, weight): Σ weight·vector, L2-normalised.
    pub fn profile<'a>(&self, history: impl Iterator<Item = (&'a [u32], &'a [f32], f32)>) -> Vec<(u32, f32)> {
        normalised(weighted_sum(history))
    }

    /// ‖Σ weight·vector‖, the profile's norm before normalising.
    pub fn profile_norm<'a>(&self, history: impl Iterator<Item = (&'a [u32], &'a [f32], f32)>) -> f32 {
        weighted_sum(history).iter().map(|p| p.1 * p.1).sum::<f32>().sqrt()
    }

    /// The terms two vectors share, by the product of their weights, largest first.
    pub fn shared_terms(&self, a: &[(u32, f32)], b: &[(u32, f32)], n: usize) -> Vec<&str> {
        let both = a.iter().filter_map(|&(t, x)| b.binary_search_by_key(&t, |p| p.0).ok().map(|k| (t, x * b[k].1)));
        crate::engine::topk::top_k(both, n).into_iter().map(|(t, _)| self.terms[t as usize].as_str()).collect()
    }

    /// Cosine of a normalised profile with every item.
    pub fn scores(&self, profile: &[(u32, f32)]) -> Vec<f32> {
        let mut s = vec![0f32; self.vectors.n_rows()];
        for &(t, p) in profile {
            let (items, vals) = self.by_term.row(t as usize);
            items.iter().zip(vals).for_each(|(&i, &v)| s[i as usize] += p * v);
        }
        s
    }

    /// Cosine of two sparse vectors sorted by term.
    pub fn cosine(a: &[(u32, f32)], b_terms: &[u32], b_vals: &[f32]) -> f32 {
        a.iter().filter_map(|&(t, x)| b_terms.binary_search(&t).ok().map(|k| x * b_vals[k])).sum()
    }
}

fn weighted_sum<'a>(history: impl Iterator<Item = (&'a [u32], &'a [f32], f32)>) -> Vec<(u32, f32)> {
    let mut sum: BTreeMap<u32, f32> = BTreeMap::new();
    for (terms, values, w) in history {
        terms.iter().zip(values).for_each(|(&t, &v)| *sum.entry(t).or_default() += w * v);
    }
    sum.into_iter().collect()
}

fn normalised(mut v: Vec<(u32, f32)>) -> Vec<(u32, f32)> {
    let norm = v.iter().map(|p| p.1 * p.1).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|p| p.1 /= norm);
    } else {
        v.clear();
    }
    v
}

pub fn fit(data: &Interactions, p: &ContentParams, pool: &rayon::ThreadPool, progress: &mut dyn Progress) -> Result<Content> {
    let Some(texts) = &data.item_text else {
        return Err(RecsysError::invalid("content needs item texts").with_hint("pass items => 'items_table', item_text => 'text_column'"));
    };
    let n = texts.len();
    let docs: Vec<Vec<String>> = pool.install(|| texts.par_iter().map(|t| terms(t, p.ngrams, p.stop_words)).collect());
    // Document frequency of every term, then the vocabulary within [min_df, max_df · n].
    let mut df: HashMap<&str, usize> = HashMap::new();
    for d in &docs {
        let mut seen: Vec<&str> = d.iter().map(String::as_str).collect();
        seen.sort_unstable();
        seen.dedup();
        seen.into_iter().for_each(|t| *df.entry(t).or_default() += 1);
    }
    let max = (p.max_df * n as f64).floor().max(1.0) as usize;
    let mut vocab: Vec<(&str, usize)> = df.into_iter().filter(|&(_, c)| c >= p.min_df && c <= max).collect();
    vocab.sort_unstable();
    if vocab.is_empty() {
        return Err(RecsysError::invalid("no term of the item texts passes min_df and max_df")
            .with_detail(format!("{n} items; check item_text, min_df and max_df")));
    }
    let idf: Vec<f32> = vocab.iter().map(|&(_, c)| ((1.0 + n as f32) / (1.0 + c as f32)).ln() + 1.0).collect();
    let terms: Vec<String> = vocab.iter().map(|&(t, _)| t.to_string()).collect();
    progress.step(1, 3)?;
    let mut model = Content::new(terms, idf, p.ngrams, p.stop_words, Csr::default(), Neighbors::default());
    let rows: Vec<Vec<(u32, f32)>> = pool.install(|| texts.par_iter().map(|t| model.vectorize(t)).collect());
    let mut vectors = Csr { indptr: vec![0], indices: Vec::new(), values: Vec::new(), n_cols: model.terms.len() };
    for r in rows {
        vectors.indices.extend(r.iter().map(|x| x.0));
        vectors.values.extend(r.iter().map(|x| x.1));
        vectors.indptr.push(vectors.indices.len());
    }
    model = Content::new(model.terms, model.idf, p.ngrams, p.stop_words, vectors, Neighbors::default());
    progress.step(2, 3)?;
    // Each item's nearest items by content, in parallel chunks (cancel checked between chunks).
    let mut lists: Vec<Vec<(u32, f32)>> = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(1024) {
        let part: Vec<Vec<(u32, f32)>> = pool.install(|| {
            chunk
                .par_iter()
                .map(|&i| {
                    let (t, v) = model.vectors.row(i);
                    let own: Vec<(u32, f32)> = t.iter().copied().zip(v.iter().copied()).collect();
                    let s = model.scores(&own);
                    top_k((0..n as u32).filter(|&j| j as usize != i && s[j as usize] > 0.0).map(|j| (j, s[j as usize])), p.neighbors)
                })
                .collect()
        });
        lists.extend(part);
        progress.step(2, 3)?;
    }
    let mut nb = Neighbors { indptr: vec![0], indices: Vec::new(), scores: Vec::new() };
    for l in lists {
        nb.indices.extend(l.iter().map(|x| x.0));
        nb.scores.extend(l.iter().map(|x| x.1));
        nb.indptr.push(nb.indices.len());
    }
    model.neighbors = nb;
    model.half_life = p.half_life as f32;
    Ok(model)
}

impl Content {
    pub fn load(r: &In, n_items: usize) -> Result<Content> {
        let terms = String::from_utf8(r.bytes("terms")?)
            .map_err(|_| corrupt("content terms are not UTF-8"))?;
        let terms: Vec<String> = if terms.is_empty() {
            Vec::new()
        } else {
            terms.split('\n').map(str::to_string).collect()
        };
        if !terms.windows(2).all(|w| w[0] < w[1]) {
            return Err(corrupt("content terms are not ascending"));
        }
        let idf = r.f32s("idf", Some(&[terms.len()]))?;
        let vectors = r.csr("vectors", n_items, terms.len())?;
        let neighbors = r.neighbors("neighbors", n_items)?;
        let stop_words = r
            .get("stop_words")?
            .as_bool()
            .ok_or_else(|| corrupt("state \"stop_words\""))?;
        let mut c = Content::new(
            terms,
            idf,
            r.usize("ngrams")?,
            stop_words,
            vectors,
            neighbors,
        );
        c.half_life = r.f32("recency_half_life")?;
        Ok(c)
    }
}

impl Trainer for ContentParams {
    fn needs_item_text(&self) -> bool {
        true
    }

    /// Recency weighting reads the time order.
    fn needs_time(&self) -> bool {
        self.half_life > 0.0
    }

    fn memory_estimate(&self, data: &Interactions, _: usize) -> usize {
        memory_estimate(data.n_items(), text_bytes(data), self)
    }

    fn fit(&self, data: &Interactions, _: DeviceChoice, pool: &rayon::ThreadPool, progress: &mut dyn Progress) -> Result<Box<dyn Recommender>> {
        Ok(Box::new(fit(data, self, pool, progress)?))
    }
}

/// One history item as content sees it: id, TF-IDF terms and values, weight (with the decay).
/// A history item's (id, terms, values, weight): trained items borrow their stored row.
type Part<'a> = (i64, Cow<'a, [u32]>, Cow<'a, [f32]>, f32);

impl Content {
    /// Each history item's vector (trained: stored; else from its text in `items`) with its
    /// weight times the recency decay.
    fn history_parts(&self, m: &Model, history: &[(i64, f32)], items: &[(i64, String)]) -> Vec<Part<'_>> {
        let texts = untrained_texts(&m.item_ids, history, items);
        let len = history.len();
        history
            .iter()
            .enumerate()
            .map(|(p, &(id, w))| (id, w * self.decay(p, len)))
            .filter_map(|(id, w)| match index_of(&m.item_ids, id) {
                Some(i) => {
                    let (t, v) = self.vectors.row(i as usize);
                    Some((id, Cow::Borrowed(t), Cow::Borrowed(v), w))
                }
                None => texts.get(&id).map(|text| {
                    let v = self.vector_of(text);
                    (id, Cow::Owned(v.iter().map(|x| x.0).collect()), Cow::Owned(v.iter().map(|x| x.1).collect()), w)
                }),
            })
            .collect()
    }
}

impl Recommender for Content {
    fn name(&self) -> &'static str {
        "content"
    }

    fn scores_unknown_history(&self) -> bool {
        true
    }

    /// The cosine of each item with the history's profile (items sharing no term are not
    /// reached), and the eligible untrained items of the live items table by their text.
    fn score(&self, m: &Model, req: &Request, _: &[(u32, f32)]) -> Result<Option<Scored>> {
        let parts = self.history_parts(m, req.history, req.items);
        let profile = self.profile(parts.iter().map(|(_, t, v, w)| (&t[..], &v[..], *w)));
        if profile.is_empty() {
            return Ok(None);
        }
        let scores = self.scores(&profile);
        let reached = scores.iter().map(|&x| x > 0.0).collect();
        let cold = untrained_eligible(m, req)
            .iter()
            .filter_map(|r| {
                let v = self.vector_of(&r.1);
                let t: Vec<u32> = v.iter().map(|x| x.0).collect();
                let x: Vec<f32> = v.iter().map(|x| x.1).collect();
                let s = Content::cosine(&profile, &t, &x);
                (s > 0.0).then_some((r.0, s))
            })
            .collect();
        Ok(Some(Scored { cold, ..Scored::reached(scores, reached) }))
    }

    /// score = Σ_j w_j (v_j · v_i) / ‖Σ_j w_j v_j‖: each history item's share (w_j carries the
    /// recency decay, as in the profile).
    fn contributions(&self, m: &Model, req: &Request, _: &[(u32, f32)], i: usize) -> Result<Vec<(u32, f32)>> {
        let parts = self.history_parts(m, req.history, &[]);
        let norm = self.profile_norm(parts.iter().map(|(_, t, v, w)| (&t[..], &v[..], *w)));
        let (ti, vi) = self.vectors.row(i);
        Ok(parts
            .iter()
            .filter_map(|(id, tj, vj, w)| {
                let own: Vec<(u32, f32)> = tj.iter().copied().zip(vj.iter().copied()).collect();
                index_of(&m.item_ids, *id).map(|j| (j, w * Content::cosine(&own, ti, vi) / norm.max(f32::MIN_POSITIVE)))
            })
            .filter(|p| p.1 > 0.0)
            .collect())
    }

    fn similar_items(&self, _: &Model, item: Option<usize>, n: usize) -> Result<Vec<(u32, f32)>> {
        Ok(similar_from(&self.neighbors, item, n))
    }

    /// Cosine of the text's TF-IDF vector with every trained item.
    fn similar_to_text(&self, text: &str, n: usize) -> Option<Vec<(u32, f32)>> {
        let scores = self.scores(&self.vectorize(text));
        Some(crate::engine::topk::top_k(scores.into_iter().enumerate().map(|(i, s)| (i as u32, s)).filter(|p| p.1 > 0.0), n))
    }

    fn item_neighbors(&self) -> Option<&Neighbors> {
        Some(&self.neighbors)
    }

    fn reads_item_text(&self) -> bool {
        true
    }

    /// "similar to X (shared words: …)": the history item closest to the recommended one.
    fn reasons(&self, m: &Model, req: &Request, recs: &[(i64, f32)]) -> Result<Option<Vec<Option<String>>>> {
        let parts = self.history_parts(m, req.history, req.items);
        Ok(Some(
            recs.iter()
                .map(|&(id, _)| {
                    let target: Vec<(u32, f32)> = match index_of(&m.item_ids, id) {
                        Some(i) => {
                            let (t, v) = self.vectors.row(i as usize);
                            t.iter().copied().zip(v.iter().copied()).collect()
                        }
                        None => req.items.iter().find(|p| p.0 == id).map(|p| self.vector_of(&p.1)).unwrap_or_default(),
                    };
                    let (tt, tv): (Vec<u32>, Vec<f32>) = target.iter().copied().unzip();
                    let best = parts
                        .iter()
                        .map(|(j, t, v, w)| {
                            let own: Vec<(u32, f32)> = t.iter().copied().zip(v.iter().copied()).collect();
                            (*j, w * Content::cosine(&own, &tt, &tv), own)
                        })
                        .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)));
                    best.filter(|b| b.1 > 0.0).map(|(j, _, own)| {
                        let words = self.shared_terms(&own, &target, 3);
                        format!("similar to {} (shared words: {})", item_label(req, j), words.join(", "))
                    })
                })
                .collect(),
        ))
    }

    /// Its part of the model file: `terms` (u8: the vocabulary, UTF-8, one term per line,
    /// ascending), `idf` (f32 [terms]), `vectors.*` (CSR items × terms, rows L2-normalised) and
    /// `neighbors.*`; state: ngrams, stop_words, recency_half_life.
    fn store<'a>(&'a self, out: &mut Out<'_, 'a>) -> Result<()> {
        out.bytes("terms", self.terms.join("\n").into_bytes());
        out.f32s("idf", &[self.idf.len()], &self.idf);
        out.csr("vectors", &self.vectors);
        out.neighbors("neighbors", &self.neighbors);
        out.set("ngrams", self.ngrams);
        out.set("stop_words", self.stop_words);
        out.set("recency_half_life", self.half_life);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::NoProgress;

    #[test]
    fn the_memo_gives_what_vectorize_gives() {
        let c = model(&["red apple pie", "green apple", "blue sky"], ContentParams { ngrams: 1, min_df: 1, max_df: 1.0, stop_words: true, neighbors: 2, half_life: 0.0 });
        for text in ["apple sky", "red red pie", "nothing known", "apple sky"] {
            assert_eq!(c.vector_of(text), c.vectorize(text));
        }
        assert_eq!(c.memo.len(), 3);
    }

    fn model(texts: &[&str], p: ContentParams) -> Content {
        let u: Vec<i64> = (0..texts.len() as i64).collect();
        let mut data = Interactions::from_triplets(&u, &u, &vec![1.0; u.len()]).unwrap();
        data.item_text = Some(texts.iter().map(|t| t.to_string()).collect());
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        fit(&data, &p, &pool, &mut NoProgress).unwrap()
    }

    fn params() -> ContentParams {
        ContentParams { ngrams: 1, min_df: 1, max_df: 1.0, stop_words: true, neighbors: 2, half_life: 0.0 }
    }

    #[test]
    fn tfidf_profile_and_neighbours() {
        let m = model(&["red apple pie", "green apple", "fast red car", "fast blue car"], params());
        assert_eq!(m.terms, ["apple", "blue", "car", "fast", "green", "pie", "red"]);
        // sublinear tf, smooth idf, unit length
        let v = m.vectorize("apple apple pie");
        let (apple, pie) = ((1.0 + 2f32.ln()) * m.idf[0], m.idf[5]);
        let norm = (apple * apple + pie * pie).sqrt();
        assert!((v[0].1 - apple / norm).abs() < 1e-6 && (v[1].1 - pie / norm).abs() < 1e-6);
        assert!(m.vectorize("the of").is_empty());
        // a profile of item 0 ranks item 1 (shares apple) over item 3 (shares nothing)
        let (t, x) = m.vectors.row(0);
        let s = m.scores(&m.profile(std::iter::once((t, x, 1.0))));
        assert!((s[0] - 1.0).abs() < 1e-5 && s[1] > 0.0 && s[3] == 0.0);
        // neighbours: item 2's nearest is item 3 (fast, car), then item 0 (red)
        assert_eq!(m.neighbors.row(2).0, &[3, 0]);
        assert!(Content::cosine(&m.vectorize("fast car"), m.vectors.row(3).0, m.vectors.row(3).1) > 0.5);
    }

    #[test]
    fn document_frequency_limits_and_ngrams() {
        let texts = ["red apple", "red car", "red bus"];
        let m = model(&texts, ContentParams { max_df: 0.5, ..params() });
        assert!(!m.terms.contains(&"red".to_string()));
        let m = model(&texts, ContentParams { ngrams: 2, ..params() });
        assert!(m.terms.contains(&"red apple".to_string()));
        let u = [0i64];
        let mut data = Interactions::from_triplets(&u, &u, &[1.0]).unwrap();
        data.item_text = Some(vec!["the".to_string()]);
        let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        assert!(fit(&data, &params(), &pool, &mut NoProgress).is_err());
    }
}
