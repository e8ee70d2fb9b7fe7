//! A trained model as serving sees it: the item catalogue, popularity (the cold-start answer)
//! and the algorithm's own state. Training dispatch, serving, encoding and decoding live here;
//! each algorithm's mathematics lives in its own module.

use std::collections::{HashMap, HashSet};

use serde_json::{json, Value};

use crate::engine::als::{self, AlsParams};
use crate::engine::bpr::{self, BprParams};
use crate::engine::content::{self, Content, ContentParams};
use crate::engine::ease::{self, Ease, EaseParams};
use crate::engine::hybrid::{self, Fusion, MemberScores, MemberSpec};
use crate::engine::factors::{FactorKind, Factors};
use crate::engine::format::{self, corrupt, In, Out, Tensors};
use crate::engine::interactions::{index_of, Interactions};
use crate::engine::knn::{self, ItemKnnParams, Neighbors, RatingKnn};
use crate::engine::legacy;
use crate::engine::mf::{self, MfParams};
use crate::engine::ncf::{self, Ncf, NcfParams};
use crate::engine::neural::DeviceChoice;
use crate::engine::sequential::{self, Sasrec, SeqParams};
use crate::engine::params::Params;
use crate::engine::popularity::item_popularity;
use crate::engine::svd::{self, SvdParams};
use crate::engine::topk::top_k;
use crate::engine::two_tower::{self, TwoTower, TwoTowerParams};
use crate::engine::userknn::{self, Scratch, UserKnn, UserKnnParams};
use crate::engine::{ErrorKind, Progress, RecsysError, Result};

/// Leave-one-out explanations re-score the user at most this many times (latest items first).
const OCCLUSION_ITEMS: usize = 50;

pub const ALGORITHMS: &[&str] = &["popularity", "item_knn", "user_knn", "ease", "svd", "biased_mf", "svdpp", "als", "bpr", "ncf", "sequential", "two_tower", "content", "hybrid"];

/// Each algorithm's family and what it does in one line, for `recsys.algorithms`.
const ABOUT: &[(&str, &str, &str)] = &[
    ("popularity", "baseline", "items ranked by how many distinct users have them"),
    ("item_knn", "neighbourhood", "top-k similar items per item (cosine/jaccard co-occurrence, or rating similarities with baselines)"),
    ("user_knn", "neighbourhood", "the k most similar users to the live history vote for their items"),
    ("ease", "linear", "EASE: closed-form item-item autoencoder, B = I - P diag(1/diag P), P = (X'X + lambda I)^-1"),
    ("svd", "factorization", "PureSVD: truncated randomized SVD of the user-item matrix"),
    ("biased_mf", "factorization", "biased matrix factorization (Funk SVD) for explicit ratings"),
    ("svdpp", "factorization", "SVD++: biased MF plus implicit feedback, for explicit ratings"),
    ("als", "factorization", "implicit-feedback ALS (Hu, Koren, Volinsky) with conjugate gradient"),
    ("bpr", "factorization", "Bayesian Personalized Ranking with item biases"),
    ("ncf", "neural", "NeuMF (GMF + MLP) trained with Candle"),
    ("sequential", "neural", "SASRec next-item model trained with Candle (needs time_column)"),
    ("two_tower", "neural", "two-tower retrieval over item text and ids, trained with Candle (needs items, item_text)"),
    ("content", "content", "TF-IDF over item text, cosine with the live history's profile (needs items, item_text)"),
    ("hybrid", "hybrid", "members trained together, scores fused (z-scores or reciprocal rank)"),
];

/// One row of `recsys.algorithms`: what an algorithm is and the params it takes, read from the
/// same parsing code that checks them (defaults, ranges, allowed values).
pub struct AlgorithmInfo {
    pub name: &'static str,
    pub family: &'static str,
    pub description: &'static str,
    pub needs_ratings: bool,
    pub needs_time: bool,
    pub needs_item_text: bool,
    pub neural: bool,
    pub params: Value,
}

pub fn algorithm_catalog() -> Vec<AlgorithmInfo> {
    ALGORITHMS
        .iter()
        .map(|&name| {
            let (family, description) = ABOUT.iter().find(|a| a.0 == name).map(|a| (a.1, a.2)).unwrap_or(("", ""));
            let mut p = Params::parse(name, &Value::Null).expect("an empty params object parses");
            // With no params the defaults are what is described; a hybrid without members fails
            // after asking for them, which is still described.
            let spec = Spec::parse_with(name, &mut p).ok();
            let has = |f: fn(&Spec) -> bool| spec.as_ref().is_some_and(f);
            AlgorithmInfo {
                name,
                family,
                description,
                needs_ratings: has(Spec::needs_ratings),
                needs_time: has(Spec::needs_time),
                needs_item_text: has(Spec::needs_item_text),
                neural: has(Spec::is_neural),
                params: Value::from(std::mem::take(&mut p.described)),
            }
        })
        .collect()
}
const FACTOR_MODELS: &str = "svd, biased_mf, svdpp, als or bpr";

/// A validated training request: the algorithm and its typed parameters.
#[derive(Clone, Debug, PartialEq)]
pub enum Spec {
    Popularity,
    ItemKnn(ItemKnnParams),
    UserKnn(UserKnnParams),
    Ease(EaseParams),
    Svd(SvdParams),
    Mf(MfParams),
    Als(AlsParams),
    Bpr(BprParams),
    Ncf(NcfParams),
    Sequential(SeqParams),
    TwoTower(TwoTowerParams),
    Content(ContentParams),
    Hybrid(Vec<MemberSpec<Spec>>, Fusion),
}

impl Spec {
    /// Check the algorithm name and params before any data is read. Returns the spec and the
    /// effective params (defaults filled in) to store in the catalog.
    pub fn parse(algorithm: &str, params: &Value) -> Result<(Spec, Value)> {
        let mut p = Params::parse(algorithm, params)?;
        let spec = Spec::parse_with(algorithm, &mut p)?;
        Ok((spec, p.finish()?))
    }

    fn parse_with(algorithm: &str, p: &mut Params) -> Result<Spec> {
        Ok(match algorithm {
            "popularity" => Spec::Popularity,
            "item_knn" => Spec::ItemKnn(ItemKnnParams::from_params(p)?),
            "user_knn" => Spec::UserKnn(UserKnnParams::from_params(p)?),
            "ease" => Spec::Ease(EaseParams::from_params(p)?),
            "svd" => Spec::Svd(SvdParams::from_params(p)?),
            "biased_mf" => Spec::Mf(MfParams::from_params(p, false)?),
            "svdpp" => Spec::Mf(MfParams::from_params(p, true)?),
            "als" => Spec::Als(AlsParams::from_params(p)?),
            "bpr" => Spec::Bpr(BprParams::from_params(p)?),
            "ncf" => Spec::Ncf(NcfParams::from_params(p)?),
            "sequential" => Spec::Sequential(SeqParams::from_params(p)?),
            "two_tower" => Spec::TwoTower(TwoTowerParams::from_params(p)?),
            "content" => Spec::Content(ContentParams::from_params(p)?),
            "hybrid" => {
                let (members, fusion) = hybrid::parse_params(p, Spec::parse)?;
                Spec::Hybrid(members, fusion)
            }
            other => {
                return Err(RecsysError::invalid(format!("unknown algorithm \"{other}\""))
                    .with_detail(format!("known algorithms: {}", ALGORITHMS.join(", "))))
            }
        })
    }

    /// Rating-prediction models need a rating column.
    pub fn needs_ratings(&self) -> bool {
        match self {
            Spec::Mf(_) => true,
            Spec::ItemKnn(p) => p.similarity.for_ratings(),
            Spec::Hybrid(m, _) => m.iter().any(|m| m.spec.needs_ratings()),
            _ => false,
        }
    }

    /// Why this spec cannot train without a rating column (None: it can): rating-prediction
    /// models, and user_knn's pearson, which correlates ratings (over implicit weights, all 1,
    /// every user has zero variance and the model would have no neighbours).
    pub fn rating_column_needed(&self) -> Option<&'static str> {
        match self {
            _ if self.needs_ratings() => Some("predicts ratings"),
            Spec::UserKnn(p) if p.similarity == crate::engine::userknn::UserSimilarity::Pearson => {
                Some("with similarity \"pearson\" correlates ratings")
            }
            Spec::Hybrid(m, _) => m.iter().find_map(|m| m.spec.rating_column_needed()),
            _ => None,
        }
    }

    /// Models trained with Candle (they honour recsys.device).
    pub fn is_neural(&self) -> bool {
        match self {
            Spec::Hybrid(m, _) => m.iter().any(|m| m.spec.is_neural()),
            _ => matches!(self, Spec::Ncf(_) | Spec::Sequential(_) | Spec::TwoTower(_)),
        }
    }

    /// Models that read item text (an items table).
    pub fn needs_item_text(&self) -> bool {
        match self {
            Spec::Hybrid(m, _) => m.iter().any(|m| m.spec.needs_item_text()),
            _ => matches!(self, Spec::TwoTower(_) | Spec::Content(_)),
        }
    }

    /// Sequential models learn from the time order of the rows.
    pub fn needs_time(&self) -> bool {
        match self {
            Spec::Hybrid(m, _) => m.iter().any(|m| m.spec.needs_time()),
            Spec::Content(p) => p.half_life > 0.0,
            _ => matches!(self, Spec::Sequential(_)),
        }
    }

    /// Bytes the fit will allocate, so the caller can refuse before allocating.
    pub fn memory_estimate(&self, data: &Interactions, threads: usize) -> usize {
        let (u, i, nnz) = (data.n_users(), data.n_items(), data.nnz());
        i * 12
            + match self {
                Spec::Popularity => 0,
                Spec::ItemKnn(p) => knn::memory_estimate(i, nnz, p, threads),
                Spec::UserKnn(p) => userknn::memory_estimate(u, nnz, p, threads),
                Spec::Ease(_) => ease::memory_estimate(u, i),
                Spec::Svd(p) => svd::memory_estimate(u, i, nnz, p),
                Spec::Mf(p) => mf::memory_estimate(u, i, nnz, p),
                Spec::Als(p) => als::memory_estimate(u, i, nnz, p.factors),
                Spec::Bpr(p) => bpr::memory_estimate(u, i, nnz, p.factors),
                Spec::Ncf(p) => ncf::memory_estimate(u, i, nnz, p),
                Spec::Sequential(p) => sequential::memory_estimate(i, p) + nnz * 16,
                Spec::TwoTower(p) => two_tower::memory_estimate(i, text_bytes(data), p) + nnz * 4,
                Spec::Content(p) => content::memory_estimate(i, text_bytes(data), p),
                Spec::Hybrid(m, _) => m.iter().map(|m| m.spec.memory_estimate(data, threads)).sum(),
            }
    }

    /// Fit on `pool`; neural models train on `device` (the others ignore it).
    pub fn fit(&self, data: &Interactions, device: DeviceChoice, pool: &rayon::ThreadPool, progress: &mut dyn Progress) -> Result<Model> {
        let algorithm = match self {
            Spec::Popularity => Algorithm::Popularity,
            Spec::ItemKnn(p) => match knn::fit(data, p, pool, progress)? {
                knn::Fitted::TopN(nb) => Algorithm::ItemKnn(nb),
                knn::Fitted::Ratings(r) => Algorithm::RatingKnn(r),
            },
            Spec::UserKnn(p) => Algorithm::UserKnn(userknn::fit(data, p, pool, progress)?),
            Spec::Ease(p) => Algorithm::Ease(ease::fit(data, p, pool, progress)?),
            Spec::Svd(p) => Algorithm::Factors(svd::fit(data, p, pool, progress)?),
            Spec::Mf(p) => Algorithm::Factors(mf::fit(data, p, progress)?),
            Spec::Als(p) => Algorithm::Factors(als::fit(data, p, pool, progress)?),
            Spec::Bpr(p) => Algorithm::Factors(bpr::fit(data, p, progress)?),
            Spec::Ncf(p) => Algorithm::Ncf(ncf::fit(data, p, device, pool, progress)?),
            Spec::Sequential(p) => Algorithm::Sequential(sequential::fit(data, p, device, pool, progress)?),
            Spec::TwoTower(p) => Algorithm::TwoTower(two_tower::fit(data, p, device, pool, progress)?),
            Spec::Content(p) => Algorithm::Content(content::fit(data, p, pool, progress)?),
            Spec::Hybrid(members, fusion) => Algorithm::Hybrid(Hybrid {
                members: members
                    .iter()
                    .map(|m| Ok((m.weight, m.spec.fit(data, device, pool, progress)?)))
                    .collect::<Result<_>>()?,
                fusion: *fusion,
            }),
        };
        Ok(Model { item_ids: data.item_ids.clone(), popularity: item_popularity(&data.matrix), algorithm, params: Value::Null })
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Algorithm {
    Popularity,
    ItemKnn(Neighbors),
    /// Item-kNN on a rating similarity, predicting ratings (KNNBaseline).
    RatingKnn(RatingKnn),
    UserKnn(UserKnn),
    Ease(Ease),
    Factors(Factors),
    Ncf(Ncf),
    Sequential(Sasrec),
    TwoTower(TwoTower),
    Content(Content),
    Hybrid(Hybrid),
}

/// Member models (with their weights) trained on the same data, so on the same catalogue.
#[derive(Clone, Debug, PartialEq)]
pub struct Hybrid {
    pub members: Vec<(f32, Model)>,
    pub fusion: Fusion,
}

/// Recommendations with optional reasons, and whether the history placed the user.
pub struct Answer {
    pub rows: Vec<(i64, f32, Option<String>)>,
    pub placed: bool,
}

/// Every trained item's score for one request and which items the model reached (the others
/// are filled by popularity), plus eligible untrained items scored from their text.
struct Scored {
    scores: Vec<f32>,
    reached: Vec<bool>,
    cold: Vec<(i64, f32)>,
    /// Whether the user's history placed the user (false: the popularity answer).
    placed: bool,
}

impl Scored {
    fn popular(m: &Model) -> Scored {
        Scored { scores: m.popularity.clone(), reached: vec![true; m.n_items()], cold: Vec::new(), placed: false }
    }

    fn all(scores: Vec<f32>) -> Scored {
        let n = scores.len();
        Scored { scores, reached: vec![true; n], cold: Vec::new(), placed: true }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    /// Known items, ascending; an item's index is its position here.
    pub item_ids: Vec<i64>,
    pub popularity: Vec<f32>,
    pub algorithm: Algorithm,
    /// The effective training params, kept in the model file (Null for hybrid members and
    /// models read from the 0.1.0-0.3.0 format).
    pub params: Value,
}

/// What a caller asks of `recommend`.
pub struct Request<'a> {
    /// The user, when known: factor models serve a user whose history is unchanged since
    /// training from the stored vector, and fold everyone else in.
    pub user_id: Option<i64>,
    /// The user's current interactions (item id, weight), read from the live table; in time
    /// order (oldest first) when the source has a time column, which sequential models use.
    pub history: &'a [(i64, f32)],
    pub n: usize,
    pub exclude_seen: bool,
    pub candidates: Option<&'a [i64]>,
    /// The live items table as (item id, text), for models that encode item text (two_tower):
    /// items trained without are encoded from their text and can be recommended.
    pub items: &'a [(i64, String)],
}

impl Model {
    pub fn algorithm_name(&self) -> &'static str {
        match &self.algorithm {
            Algorithm::Popularity => "popularity",
            Algorithm::ItemKnn(_) | Algorithm::RatingKnn(_) => "item_knn",
            Algorithm::UserKnn(_) => "user_knn",
            Algorithm::Ease(_) => "ease",
            Algorithm::Factors(f) => f.kind.name(),
            Algorithm::Ncf(_) => "ncf",
            Algorithm::Sequential(_) => "sequential",
            Algorithm::TwoTower(_) => "two_tower",
            Algorithm::Content(_) => "content",
            Algorithm::Hybrid(_) => "hybrid",
        }
    }

    /// Stored top neighbours per item (item-kNN similarities, EASE's largest weights).
    fn neighbor_lists(&self) -> Option<&Neighbors> {
        match &self.algorithm {
            Algorithm::ItemKnn(nb) => Some(nb),
            Algorithm::RatingKnn(r) => Some(&r.neighbors),
            Algorithm::Ease(e) => Some(&e.neighbors),
            Algorithm::Content(c) => Some(&c.neighbors),
            _ => None,
        }
    }

    /// A user-kNN user's neighbours from their live history (a trained user is not their own
    /// neighbour).
    fn user_neighbours(&self, m: &UserKnn, user_id: Option<i64>, history: &[(u32, f32)]) -> Vec<(u32, f32)> {
        let me = user_id.and_then(|u| index_of(&m.user_ids, u));
        m.similar(history, me, &mut Scratch::new(m.user_ids.len()))
    }

    /// NCF logits of every item for a trained user (None for a user the model has not seen).
    fn ncf_scores(&self, m: &Ncf, user_id: Option<i64>) -> Result<Option<Vec<f32>>> {
        let Some(u) = user_id.and_then(|u| index_of(&m.user_ids, u)) else { return Ok(None) };
        m.score_all(u, self.n_items()).map(Some)
    }

    /// Sequential scores of every item from the known history in its given (time) order.
    fn sequence_scores(&self, m: &Sasrec, history: &[(i64, f32)]) -> Result<Option<Vec<f32>>> {
        let known: Vec<u32> = history.iter().filter_map(|&(id, _)| index_of(&self.item_ids, id)).collect();
        if known.is_empty() {
            return Ok(None);
        }
        m.score(&known).map(Some)
    }

    /// How a text-reading model places the user from the live history: trained items by their
    /// stored vectors, other items by their text in `items`; None for other models, or when no
    /// history item is either.
    fn text_user(&self, history: &[(i64, f32)], items: &[(i64, String)]) -> Result<Option<TextUser>> {
        match &self.algorithm {
            Algorithm::TwoTower(m) => {
                let texts = untrained_texts(&self.item_ids, history, items);
                let text_of = |id: i64| texts.get(&id).copied();
                let k = m.k;
                let mut vectors: Vec<&[f32]> = Vec::new();
                let mut cold: Vec<&str> = Vec::new();
                for &(id, _) in history {
                    match index_of(&self.item_ids, id) {
                        Some(i) => vectors.push(&m.item_vectors[i as usize * k..(i as usize + 1) * k]),
                        None => cold.extend(text_of(id)),
                    }
                }
                let encoded = m.encode_texts(&cold)?;
                vectors.extend(encoded.chunks(k.max(1)));
                Ok(m.user_vector(&vectors)?.map(TextUser::Tower))
            }
            Algorithm::Content(c) => {
                let parts = self.content_history(c, history, items);
                let profile = c.profile(parts.iter().map(|(_, t, v, w)| (t.as_slice(), v.as_slice(), *w)));
                Ok((!profile.is_empty()).then_some(TextUser::Content(profile)))
            }
            _ => Ok(None),
        }
    }

    /// Each history item's content vector (trained: stored; else from its text) with its weight.
    fn content_history(&self, c: &Content, history: &[(i64, f32)], items: &[(i64, String)]) -> Vec<(i64, Vec<u32>, Vec<f32>, f32)> {
        let texts = untrained_texts(&self.item_ids, history, items);
        let len = history.len();
        history
            .iter()
            .enumerate()
            .map(|(p, &(id, w))| (id, w * c.decay(p, len)))
            .filter_map(|(id, w)| match index_of(&self.item_ids, id) {
                Some(i) => {
                    let (t, v) = c.vectors.row(i as usize);
                    Some((id, t.to_vec(), v.to_vec(), w))
                }
                None => texts.get(&id).map(|text| {
                    let v = c.vectorize(text);
                    (id, v.iter().map(|x| x.0).collect(), v.iter().map(|x| x.1).collect(), w)
                }),
            })
            .collect()
    }

    /// Scores of the trained items for a text user, and which ones the model reached.
    fn text_scores(&self, u: &TextUser) -> (Vec<f32>, Vec<bool>) {
        match (&self.algorithm, u) {
            (Algorithm::TwoTower(m), TextUser::Tower(v)) => {
                let mut s = vec![0f32; self.n_items()];
                crate::engine::linalg::matvec(&m.item_vectors, m.k, v, &mut s);
                (s, vec![true; self.n_items()])
            }
            (Algorithm::Content(c), TextUser::Content(p)) => {
                let s = c.scores(p);
                let reached = s.iter().map(|&x| x > 0.0).collect();
                (s, reached)
            }
            _ => (self.popularity.clone(), vec![true; self.n_items()]),
        }
    }

    /// Items of the live items table the model was not trained on, eligible for this request,
    /// scored from their text (content: only those sharing a term with the profile).
    fn cold_items(&self, u: &TextUser, req: &Request) -> Result<Vec<(i64, f32)>> {
        let seen: HashSet<i64> = req.history.iter().map(|p| p.0).collect();
        let allowed: Option<HashSet<i64>> = req.candidates.map(|c| c.iter().copied().collect());
        let rows: Vec<&(i64, String)> = req
            .items
            .iter()
            .filter(|(id, _)| index_of(&self.item_ids, *id).is_none())
            .filter(|(id, _)| !(req.exclude_seen && seen.contains(id)))
            .filter(|(id, _)| allowed.as_ref().is_none_or(|c| c.contains(id)))
            .collect();
        Ok(match (&self.algorithm, u) {
            (Algorithm::TwoTower(m), TextUser::Tower(v)) => {
                let texts: Vec<&str> = rows.iter().map(|r| r.1.as_str()).collect();
                let e = m.encode_texts(&texts)?;
                rows.iter().zip(e.chunks(m.k.max(1))).map(|(r, e)| (r.0, crate::engine::linalg::dot(v, e))).collect()
            }
            (Algorithm::Content(c), TextUser::Content(p)) => rows
                .iter()
                .filter_map(|r| {
                    let v = c.vectorize(&r.1);
                    let t: Vec<u32> = v.iter().map(|x| x.0).collect();
                    let x: Vec<f32> = v.iter().map(|x| x.1).collect();
                    let s = Content::cosine(p, &t, &x);
                    (s > 0.0).then_some((r.0, s))
                })
                .collect(),
            _ => Vec::new(),
        })
    }

    /// (user, neighbour, score) rows for `recsys.user_neighbors`, when the model has them.
    pub fn user_neighbors(&self) -> Option<(Vec<i64>, Vec<i64>, Vec<f32>)> {
        let Algorithm::UserKnn(m) = &self.algorithm else { return None };
        let nb = &m.neighbors;
        let mut users = Vec::with_capacity(nb.indices.len());
        for u in 0..m.user_ids.len() {
            users.extend(std::iter::repeat_n(m.user_ids[u], nb.indptr[u + 1] - nb.indptr[u]));
        }
        let neighbors = nb.indices.iter().map(|&v| m.user_ids[v as usize]).collect();
        Some((users, neighbors, nb.scores.clone()))
    }

    /// Models that read the live items table when serving (two_tower encodes untrained items).
    pub fn reads_item_text(&self) -> bool {
        match &self.algorithm {
            Algorithm::Hybrid(h) => h.members.iter().any(|m| m.1.reads_item_text()),
            a => matches!(a, Algorithm::TwoTower(_) | Algorithm::Content(_)),
        }
    }

    /// Rating-prediction models: biased_mf, svdpp and item_knn on a rating similarity.
    pub fn predicts_ratings(&self) -> bool {
        match &self.algorithm {
            Algorithm::RatingKnn(_) => true,
            Algorithm::Factors(f) => f.kind.explicit(),
            _ => false,
        }
    }

    /// The model's factors, for factor models.
    pub fn factors(&self) -> Option<&Factors> {
        match &self.algorithm {
            Algorithm::Factors(f) => Some(f),
            _ => None,
        }
    }

    /// History (item id, weight) → (item index, weight) for known items, sorted by index:
    /// a canonical order, so float sums (and so ties) do not depend on the order rows were read.
    fn known_history(&self, history: &[(i64, f32)]) -> Vec<(u32, f32)> {
        let mut h: Vec<(u32, f32)> =
            history.iter().filter_map(|&(id, w)| index_of(&self.item_ids, id).map(|i| (i, w))).collect();
        h.sort_unstable_by_key(|p| p.0);
        h
    }

    pub fn n_items(&self) -> usize {
        self.item_ids.len()
    }

    /// Top-n items as (item id, score), score desc then id asc. Items the model can reach from
    /// the history come first; if they are fewer than n, the most popular other eligible items
    /// fill the list with score 0, so the answer has min(n, eligible) rows.
    pub fn recommend(&self, req: &Request) -> Result<Vec<(i64, f32)>> {
        Ok(self.rank(req)?.0)
    }

    /// `recommend`, with a reason for each item when asked, and whether the user's history
    /// placed the user (false: the popularity answer, where a fallback model may do better).
    pub fn answer(&self, req: &Request, with_reasons: bool) -> Result<Answer> {
        let (recs, scored) = self.rank(req)?;
        let reasons = if with_reasons { self.reasons(req, &recs, &scored)? } else { vec![None; recs.len()] };
        Ok(Answer { rows: recs.into_iter().zip(reasons).map(|((i, s), r)| (i, s, r)).collect(), placed: scored.placed })
    }

    /// A reason in words for each recommended item: "because of X and Y in your history",
    /// "similar to X (shared words: …)" for content, "popular" for the popularity answer and
    /// for items that fill the list.
    fn reasons(&self, req: &Request, recs: &[(i64, f32)], scored: &Scored) -> Result<Vec<Option<String>>> {
        let name = |id: i64| match req.items.iter().find(|p| p.0 == id) {
            Some((_, text)) if !text.trim().is_empty() => {
                let words: Vec<&str> = text.split_whitespace().take(6).collect();
                format!("\"{}\"", words.join(" "))
            }
            _ => format!("item {id}"),
        };
        let explained = self.explain_items(req.user_id, req.history, &recs.iter().map(|r| r.0).collect::<Vec<_>>(), 2)?;
        let content_parts = match &self.algorithm {
            Algorithm::Content(c) => Some((c, self.content_history(c, req.history, req.items))),
            _ => None,
        };
        Ok(recs
            .iter()
            .zip(explained)
            .map(|(&(id, _), because)| {
                let trained = index_of(&self.item_ids, id).map(|i| i as usize);
                let filled = trained.is_some_and(|i| !scored.reached[i]);
                if matches!(self.algorithm, Algorithm::Popularity) || !scored.placed || filled {
                    return Some("popular".to_string());
                }
                if let Some((c, parts)) = &content_parts {
                    let target: Vec<(u32, f32)> = match trained {
                        Some(i) => {
                            let (t, v) = c.vectors.row(i);
                            t.iter().copied().zip(v.iter().copied()).collect()
                        }
                        None => req.items.iter().find(|p| p.0 == id).map(|p| c.vectorize(&p.1)).unwrap_or_default(),
                    };
                    let (tt, tv): (Vec<u32>, Vec<f32>) = target.iter().copied().unzip();
                    let best = parts
                        .iter()
                        .map(|(j, t, v, w)| {
                            let own: Vec<(u32, f32)> = t.iter().copied().zip(v.iter().copied()).collect();
                            (*j, w * Content::cosine(&own, &tt, &tv), own)
                        })
                        .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)));
                    if let Some((j, _, own)) = best.filter(|b| b.1 > 0.0) {
                        let words = c.shared_terms(&own, &target, 3);
                        return Some(format!("similar to {} (shared words: {})", name(j), words.join(", ")));
                    }
                }
                let because: Vec<&(i64, f32)> = because.iter().filter(|b| b.1 > 0.0).collect();
                let reason = match (because.as_slice(), trained) {
                    ([a], _) => format!("because of {} in your history", name(a.0)),
                    ([a, b, ..], _) => format!("because of {} and {} in your history", name(a.0), name(b.0)),
                    (_, None) => "a new item whose text matches your history".to_string(),
                    _ => format!("what the {} model predicts from your history", self.algorithm_name()),
                };
                Some(reason)
            })
            .collect())
    }

    /// The top n as `recommend` returns it, and the scores it was ranked by.
    fn rank(&self, req: &Request) -> Result<(Vec<(i64, f32)>, Scored)> {
        let n_items = self.n_items();
        let history = self.known_history(req.history);

        let mut eligible = match req.candidates {
            None => vec![true; n_items],
            Some(ids) => {
                let mut e = vec![false; n_items];
                ids.iter().filter_map(|&id| index_of(&self.item_ids, id)).for_each(|i| e[i as usize] = true);
                e
            }
        };
        if req.exclude_seen {
            history.iter().for_each(|&(i, _)| eligible[i as usize] = false);
        }

        let mut scored = self.score(req, &history)?;
        let (scores, reached) = (&scored.scores, &scored.reached);
        let mut out: Vec<(u32, f32)> = top_k(
            (0..n_items as u32).filter(|&i| eligible[i as usize] && reached[i as usize]).map(|i| (i, scores[i as usize])),
            req.n,
        );
        if out.len() < req.n {
            let fill = top_k(
                (0..n_items as u32)
                    .filter(|&i| eligible[i as usize] && !reached[i as usize])
                    .map(|i| (i, self.popularity[i as usize])),
                req.n - out.len(),
            );
            let mut fill: Vec<(u32, f32)> = fill.into_iter().map(|(i, _)| (i, 0.0)).collect();
            fill.sort_unstable_by_key(|p| p.0);
            out.extend(fill);
        }
        let mut out: Vec<(i64, f32)> = out.into_iter().map(|(i, s)| (self.item_ids[i as usize], s)).collect();
        if !scored.cold.is_empty() {
            out.extend(std::mem::take(&mut scored.cold));
            out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            out.truncate(req.n);
        }
        Ok((out, scored))
    }

    /// Score every trained item for a request (`history`: its known items, by index).
    fn score(&self, req: &Request, history: &[(u32, f32)]) -> Result<Scored> {
        let n_items = self.n_items();
        let text_user = self.text_user(req.history, req.items)?;
        if let Algorithm::Hybrid(h) = &self.algorithm {
            let parts: Vec<(f32, Scored)> = h.members.iter().map(|(w, m)| Ok((*w, m.score(req, history)?))).collect::<Result<_>>()?;
            let members: Vec<MemberScores> = parts
                .iter()
                .map(|(w, s)| MemberScores { weight: *w, scores: &s.scores, reached: &s.reached, cold: &s.cold })
                .collect();
            let (scores, reached, cold) = hybrid::fuse(h.fusion, &members, &self.item_ids);
            return Ok(Scored { scores, reached, cold, placed: parts.iter().any(|p| p.1.placed) });
        }
        if history.is_empty() && text_user.is_none() {
            // Popularity, or a user with no known history: the cold-start answer.
            return Ok(match &self.algorithm {
                Algorithm::RatingKnn(r) => {
                    let (rated, bu) = r.user_state(history, n_items);
                    Scored { placed: false, ..Scored::all((0..n_items).map(|i| r.predict(i, &rated, bu).0).collect()) }
                }
                _ => Scored::popular(self),
            });
        }
        // A user the model cannot place gets the popularity answer; a failure is an error.
        let or_popular = |s: Result<Option<Vec<f32>>>| -> Result<Scored> { Ok(s?.map(Scored::all).unwrap_or_else(|| Scored::popular(self))) };
        let mut scored = match &self.algorithm {
            Algorithm::Popularity => Scored::popular(self),
            Algorithm::ItemKnn(nb) => {
                let mut scores = vec![0f32; n_items];
                let mut reached = vec![false; n_items];
                nb.score_history(history, &mut scores, &mut reached);
                Scored { scores, reached, cold: Vec::new(), placed: true }
            }
            Algorithm::RatingKnn(r) => {
                let (rated, bu) = r.user_state(history, n_items);
                Scored::all((0..n_items).map(|i| r.predict(i, &rated, bu).0).collect())
            }
            Algorithm::Ease(e) => {
                let mut scores = vec![0f32; n_items];
                e.score_history(history, &mut scores);
                Scored::all(scores)
            }
            Algorithm::Ncf(m) => or_popular(self.ncf_scores(m, req.user_id))?,
            Algorithm::TwoTower(_) | Algorithm::Content(_) => match &text_user {
                Some(u) => {
                    let (scores, reached) = self.text_scores(u);
                    Scored { scores, reached, cold: self.cold_items(u, req)?, placed: true }
                }
                None => Scored::popular(self),
            },
            Algorithm::Sequential(m) => or_popular(self.sequence_scores(m, req.history))?,
            Algorithm::UserKnn(m) => {
                let neighbours = self.user_neighbours(m, req.user_id, history);
                let (mut scores, mut reached) = (vec![0f32; n_items], vec![false; n_items]);
                m.score(&neighbours, &mut scores, &mut reached);
                Scored { scores, reached, cold: Vec::new(), placed: true }
            }
            Algorithm::Factors(f) => or_popular(Ok(f.user_vector(req.user_id, history).map(|u| f.score_all(&u))))?,
            Algorithm::Hybrid(_) => unreachable!("handled above"),
        };
        scored.cold.sort_unstable_by_key(|c| c.0);
        Ok(scored)
    }

    fn unsupported(&self, what: &str, hint: &str) -> RecsysError {
        RecsysError::new(ErrorKind::Unsupported, format!("{what} is not available for {} models", self.algorithm_name()))
            .with_hint(hint.to_string())
    }

    /// The n most similar items to `item_id` (empty if the model does not know the item):
    /// stored neighbours for item-kNN, cosine of the item factors for factor models and of the
    /// item embeddings for sequential models.
    pub fn similar_items(&self, item_id: i64, n: usize) -> Result<Vec<(i64, f32)>> {
        let Some(i) = index_of(&self.item_ids, item_id) else {
            return match self.algorithm {
                Algorithm::Popularity => Err(self.unsupported("similar_items", "train an item_knn or factor model")),
                _ => Ok(Vec::new()),
            };
        };
        let found: Vec<(u32, f32)> = match (&self.algorithm, self.neighbor_lists()) {
            (_, Some(nb)) => {
                let (idx, s) = nb.row(i as usize);
                idx.iter().copied().zip(s.iter().copied()).take(n).collect()
            }
            (Algorithm::Factors(f), _) => Factors::nearest(&f.items, f.k, i as usize, n),
            (Algorithm::TwoTower(m), _) => Factors::nearest(&m.item_vectors, m.k, i as usize, n),
            (Algorithm::Ncf(m), _) => {
                let (v, k) = m.item_vectors()?;
                Factors::nearest(&v, k, i as usize, n)
            }
            // The highest-weighted member that has item similarities answers for the hybrid.
            (Algorithm::Hybrid(h), _) => {
                let mut by_weight: Vec<&(f32, Model)> = h.members.iter().collect();
                by_weight.sort_by(|a, b| b.0.total_cmp(&a.0));
                for (_, m) in by_weight {
                    match m.similar_items(item_id, n) {
                        Err(e) if e.kind == ErrorKind::Unsupported => continue,
                        answer => return answer,
                    }
                }
                return Err(self.unsupported("similar_items", "add an item_knn, ease, content or factor member"));
            }
            (Algorithm::Sequential(m), _) => {
                let e = m.item_embeddings().and_then(|t| t.flatten_all().and_then(|f| f.to_vec1::<f32>()).map_err(crate::engine::neural::candle))?;
                Factors::nearest(&e, e.len() / self.n_items(), i as usize, n)
            }
            _ => return Err(self.unsupported("similar_items", "train an item_knn or factor model")),
        };
        Ok(found.into_iter().map(|(j, s)| (self.item_ids[j as usize], s)).collect())
    }

    /// The n users most similar to `user_id` by cosine of the stored user factors (factor models;
    /// empty if the model has not seen the user).
    pub fn similar_users(&self, user_id: i64, n: usize) -> Result<Vec<(i64, f32)>> {
        if let Algorithm::UserKnn(m) = &self.algorithm {
            return Ok(match index_of(&m.user_ids, user_id) {
                None => Vec::new(),
                Some(r) => {
                    let (idx, s) = m.neighbors.row(r as usize);
                    idx.iter().zip(s).take(n).map(|(&v, &x)| (m.user_ids[v as usize], x)).collect()
                }
            });
        }
        let Algorithm::Factors(f) = &self.algorithm else {
            return Err(self.unsupported("similar_users", &format!("train a factor model ({FACTOR_MODELS})")));
        };
        Ok(match index_of(&f.user_ids, user_id) {
            None => Vec::new(),
            Some(r) => Factors::nearest(&f.users, f.k, r as usize, n)
                .into_iter()
                .map(|(o, s)| (f.user_ids[o as usize], s))
                .collect(),
        })
    }

    /// The model's score for one (user, item): a predicted rating clipped to the observed range for
    /// rating models, the ranking score otherwise. None when the item is unknown, or when a factor
    /// model has no history to place the user (an explicit model then predicts μ + b_i).
    pub fn predict(&self, user_id: Option<i64>, history: &[(i64, f32)], item_id: i64) -> Result<Option<f32>> {
        let Some(i) = index_of(&self.item_ids, item_id) else { return Ok(None) };
        let i = i as usize;
        let history_in_order = history;
        let history = self.known_history(history);
        // A user with no rows the model knows is not placed by these models: NULL, not the
        // popularity fill's 0 (or a popularity count) that recommend would rank them by.
        let placed_by_history = matches!(
            self.algorithm,
            Algorithm::Popularity | Algorithm::ItemKnn(_) | Algorithm::Ease(_) | Algorithm::UserKnn(_) | Algorithm::Hybrid(_)
        );
        if placed_by_history && history.is_empty() {
            return Ok(None);
        }
        Ok(match &self.algorithm {
            Algorithm::Popularity => Some(self.popularity[i]),
            Algorithm::ItemKnn(nb) => {
                let mut scores = vec![0f32; self.n_items()];
                let mut reached = vec![false; self.n_items()];
                nb.score_history(&history, &mut scores, &mut reached);
                Some(scores[i])
            }
            Algorithm::Ease(e) => Some(history.iter().map(|&(j, w)| w * e.row(j as usize)[i]).sum()),
            Algorithm::RatingKnn(r) => {
                let (rated, bu) = r.user_state(&history, self.n_items());
                Some(r.predict(i, &rated, bu).0)
            }
            Algorithm::UserKnn(m) => {
                let neighbours = self.user_neighbours(m, user_id, &history);
                let (mut scores, mut reached) = (vec![0f32; self.n_items()], vec![false; self.n_items()]);
                m.score(&neighbours, &mut scores, &mut reached);
                Some(scores[i])
            }
            Algorithm::Ncf(m) => self.ncf_scores(m, user_id)?.map(|s| s[i]),
            Algorithm::Sequential(m) => self.sequence_scores(m, history_in_order)?.map(|s| s[i]),
            Algorithm::TwoTower(_) | Algorithm::Content(_) => self.text_user(history_in_order, &[])?.map(|u| self.text_scores(&u).0[i]),
            Algorithm::Hybrid(_) => {
                let req = Request { user_id, history: history_in_order, n: 0, exclude_seen: false, candidates: None, items: &[] };
                Some(self.score(&req, &history)?.scores[i])
            }
            Algorithm::Factors(f) => match f.user_vector(user_id, &history) {
                Some(u) => Some(f.predict(&u, i)),
                None if f.kind.explicit() => Some(f.baseline(i)),
                None => None,
            },
        })
    }

    /// The user's items that contribute most to `item_id`'s score, (item id, contribution),
    /// largest first. See `explain_items`.
    pub fn explain(&self, user_id: Option<i64>, history: &[(i64, f32)], item_id: i64, n: usize) -> Result<Vec<(i64, f32)>> {
        Ok(self.explain_items(user_id, history, &[item_id], n)?.pop().unwrap_or_default())
    }

    /// For each target item, the user's items that contribute most to its score, largest first:
    /// weight × similarity for item-kNN and EASE; the split of the folded-in score over the
    /// history for factor models (implicit's ALS explain); each item's share of the cosine for
    /// content; the drop in the target's score when the item is left out of the history for
    /// sequential and two_tower; weight × item-embedding cosine for NCF (whose score comes from
    /// the user's embedding, not the history); members' shares times their weights for a hybrid.
    /// Popularity scores do not depend on the user: no item explains them. An item the model
    /// does not know gets no rows.
    pub fn explain_items(&self, user_id: Option<i64>, history: &[(i64, f32)], targets: &[i64], n: usize) -> Result<Vec<Vec<(i64, f32)>>> {
        let known = self.known_history(history);
        let idx: Vec<Option<usize>> = targets.iter().map(|&t| index_of(&self.item_ids, t).map(|i| i as usize)).collect();
        let finish = |parts: Vec<(u32, f32)>| -> Vec<(i64, f32)> {
            top_k(parts, n).into_iter().map(|(j, c)| (self.item_ids[j as usize], c)).collect()
        };
        Ok(match &self.algorithm {
            Algorithm::Sequential(_) | Algorithm::TwoTower(_) => {
                // Leave-one-out: the base score minus the score without each (recent) history item.
                let req = |h: &'_ [(i64, f32)]| -> Result<Vec<f32>> {
                    Ok(self.score(&Request { user_id, history: h, n: 0, exclude_seen: false, candidates: None, items: &[] }, &self.known_history(h))?.scores)
                };
                let base = req(history)?;
                let recent: Vec<usize> = (0..history.len()).rev().filter(|&p| index_of(&self.item_ids, history[p].0).is_some()).take(OCCLUSION_ITEMS).collect();
                let without: Vec<(u32, Vec<f32>)> = recent
                    .iter()
                    .map(|&p| {
                        let h: Vec<(i64, f32)> = history.iter().enumerate().filter(|q| q.0 != p).map(|q| *q.1).collect();
                        Ok((index_of(&self.item_ids, history[p].0).unwrap_or(0), req(&h)?))
                    })
                    .collect::<Result<_>>()?;
                idx.iter()
                    .map(|i| match i {
                        Some(i) => finish(without.iter().map(|(j, s)| (*j, base[*i] - s[*i])).filter(|p| p.1 > 0.0).collect()),
                        None => Vec::new(),
                    })
                    .collect()
            }
            Algorithm::Hybrid(h) => {
                let member_parts: Vec<(f32, Vec<Vec<(i64, f32)>>)> =
                    h.members.iter().map(|(w, m)| Ok((*w, m.explain_items(user_id, history, targets, usize::MAX)?))).collect::<Result<_>>()?;
                (0..targets.len())
                    .map(|t| {
                        let mut total: HashMap<u32, f32> = HashMap::new();
                        for (w, parts) in &member_parts {
                            let sum: f32 = parts[t].iter().map(|p| p.1.max(0.0)).sum();
                            for &(id, c) in parts[t].iter().filter(|p| p.1 > 0.0) {
                                if let Some(j) = index_of(&self.item_ids, id) {
                                    *total.entry(j).or_default() += w * c / sum;
                                }
                            }
                        }
                        finish(total.into_iter().filter(|p| p.1 > 0.0).collect())
                    })
                    .collect()
            }
            _ => idx
                .iter()
                .map(|i| match i {
                    Some(i) => Ok(finish(self.contributions(user_id, history, &known, *i)?)),
                    None => Ok(Vec::new()),
                })
                .collect::<Result<_>>()?,
        })
    }

    /// Each known history item's part of item `i`'s score (models whose score decomposes).
    fn contributions(&self, user_id: Option<i64>, history_in_order: &[(i64, f32)], history: &[(u32, f32)], i: usize) -> Result<Vec<(u32, f32)>> {
        Ok(match &self.algorithm {
            Algorithm::ItemKnn(nb) => history
                .iter()
                .filter_map(|&(j, w)| {
                    let (idx, s) = nb.row(j as usize);
                    idx.iter().position(|&x| x as usize == i).map(|p| (j, w * s[p]))
                })
                .collect(),
            Algorithm::Ease(e) => history.iter().map(|&(j, w)| (j, w * e.row(j as usize)[i])).collect(),
            Algorithm::RatingKnn(r) => {
                let (rated, bu) = r.user_state(history, self.n_items());
                r.predict(i, &rated, bu).1
            }
            Algorithm::UserKnn(m) => m.explain(history, &self.user_neighbours(m, user_id, history), i as u32),
            Algorithm::Factors(f) if !history.is_empty() => f.explain(history, i),
            Algorithm::Ncf(m) => {
                let (v, k) = m.item_vectors()?;
                let row = |j: usize| &v[j * k..(j + 1) * k];
                history
                    .iter()
                    .map(|&(j, w)| (j, w * crate::engine::linalg::cosine(row(j as usize), row(i))))
                    .filter(|p| p.1 > 0.0)
                    .collect()
            }
            Algorithm::Content(c) => {
                // score = Σ_j w_j (v_j · v_i) / ‖Σ_j w_j v_j‖: each history item's share
                let parts = self.content_history(c, history_in_order, &[]);
                let norm = c.profile_norm(parts.iter().map(|(_, t, v, w)| (t.as_slice(), v.as_slice(), *w)));
                let (ti, vi) = c.vectors.row(i);
                // (w_j here carries the recency decay, as in the profile.)
                parts
                    .iter()
                    .filter_map(|(id, tj, vj, w)| {
                        let own: Vec<(u32, f32)> = tj.iter().copied().zip(vj.iter().copied()).collect();
                        index_of(&self.item_ids, *id).map(|j| (j, w * Content::cosine(&own, ti, vi) / norm.max(f32::MIN_POSITIVE)))
                    })
                    .filter(|p| p.1 > 0.0)
                    .collect()
            }
            _ => Vec::new(),
        })
    }

    /// (item, neighbour, score) rows for `recsys.item_neighbors`, when the model has them.
    pub fn item_neighbors(&self) -> Option<(Vec<i64>, Vec<i64>, Vec<f32>)> {
        let nb = self.neighbor_lists()?;
        let mut items = Vec::with_capacity(nb.indices.len());
        for i in 0..self.n_items() {
            items.extend(std::iter::repeat_n(self.item_ids[i], nb.indptr[i + 1] - nb.indptr[i]));
        }
        let neighbors = nb.indices.iter().map(|&j| self.item_ids[j as usize]).collect();
        Some((items, neighbors, nb.scores.clone()))
    }

    /// The stored form, a safetensors file (see `format`); an error (never an empty or partial
    /// file) when a part cannot be written.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut file = Tensors::default();
        let mut out = Out::new(&mut file, "");
        out.i64s("item_ids", &self.item_ids);
        out.f32s("popularity", &[self.n_items()], &self.popularity);
        self.store(&mut out)?;
        let state = std::mem::take(&mut out.state);
        file.finish(format::metadata(self.algorithm_name(), &self.params, state))
    }

    /// The algorithm's arrays and state (a hybrid's members under `members.<i>.`).
    fn store<'a>(&'a self, out: &mut Out<'_, 'a>) -> Result<()> {
        match &self.algorithm {
            Algorithm::Popularity => {}
            Algorithm::ItemKnn(nb) => out.neighbors("neighbors", nb),
            Algorithm::RatingKnn(r) => {
                out.set("ratings", true);
                r.store(out);
            }
            Algorithm::UserKnn(m) => m.store(out),
            Algorithm::Ease(e) => e.store(out),
            Algorithm::Factors(f) => f.store(out),
            Algorithm::Ncf(m) => m.store(out)?,
            Algorithm::Sequential(m) => m.store(out)?,
            Algorithm::TwoTower(m) => m.store(out)?,
            Algorithm::Content(c) => c.store(out),
            Algorithm::Hybrid(h) => {
                out.set("fusion", h.fusion.name());
                let mut members = Vec::new();
                for (i, (weight, m)) in h.members.iter().enumerate() {
                    let mut part = out.nested(&format!("members.{i}."));
                    m.store(&mut part)?;
                    let prefix = part.prefix().to_string();
                    members.push(json!({"algorithm": m.algorithm_name(), "weight": weight, "prefix": prefix, "state": part.state}));
                }
                out.set("members", members);
            }
        }
        Ok(())
    }

    /// A model file given to `recsys.import_model`: one exported by pg_recsys (any algorithm,
    /// kept as it is), or, when the file has no `popularity`, factor matrices made elsewhere,
    /// completed from the live data (`factors::import`). `spec` is the file's algorithm and
    /// params parsed; `params` the effective params the model keeps.
    pub fn import(bytes: &[u8], spec: &Spec, params: Value, data: &Interactions) -> Result<Model> {
        let exported = legacy::is_legacy(bytes) || {
            let (st, header) = format::open(bytes)?;
            In::new(&st, "", &header.state).has("popularity")
        };
        if exported {
            return Ok(Model { params, ..Model::decode(bytes)? });
        }
        let fold_in = match spec {
            Spec::Als(p) => (p.regularization, p.alpha),
            Spec::Bpr(_) => (bpr::FOLD_IN_REGULARIZATION, bpr::FOLD_IN_ALPHA),
            Spec::Svd(_) => (0.0, 0.0),
            Spec::Mf(p) => (p.reg, 0.0),
            _ => {
                return Err(RecsysError::invalid("cannot import the model file: it has no popularity, so it is read as factor matrices made elsewhere, and only factor models take those")
                    .with_hint(format!("export a model from pg_recsys, or write item_ids, item_factors, user_ids and user_factors for {FACTOR_MODELS}")))
            }
        };
        let (st, header) = format::open(bytes)?;
        let kind = FactorKind::from_name(&header.algorithm).ok_or_else(|| RecsysError::invalid("not a factor model"))?;
        let (item_ids, factors) = crate::engine::factors::import(&In::new(&st, "", &header.state), kind, fold_in, data)?;
        let counts = item_popularity(&data.matrix);
        let popularity = item_ids.iter().map(|&id| index_of(&data.item_ids, id).map_or(0.0, |i| counts[i as usize])).collect();
        Ok(Model { item_ids, popularity, algorithm: Algorithm::Factors(factors), params })
    }

    /// A stored model: the current format, or the format of 0.1.0 to 0.3.0 (`legacy`).
    pub fn decode(bytes: &[u8]) -> Result<Model> {
        if legacy::is_legacy(bytes) {
            return legacy::decode(bytes);
        }
        let (st, header) = format::open(bytes)?;
        let r = In::new(&st, "", &header.state);
        let item_ids = r.i64s("item_ids")?;
        format::check_ids(&item_ids, "item ids")?;
        let popularity = r.f32s("popularity", Some(&[item_ids.len()]))?;
        let algorithm = load(&header.algorithm, &r, &item_ids, &popularity)?;
        Ok(Model {
            item_ids,
            popularity,
            algorithm,
            params: header.params,
        })
    }
}

/// The texts of the history's items that the model was not trained on, by id (one pass over the
/// items table rows).
fn untrained_texts<'a>(item_ids: &[i64], history: &[(i64, f32)], items: &'a [(i64, String)]) -> HashMap<i64, &'a str> {
    let wanted: HashSet<i64> = history.iter().map(|p| p.0).filter(|&id| index_of(item_ids, id).is_none()).collect();
    if wanted.is_empty() {
        return HashMap::new();
    }
    items.iter().filter(|(id, _)| wanted.contains(id)).map(|(id, t)| (*id, t.as_str())).collect()
}

/// The algorithm `name`'s part of a file over the catalogue `item_ids`.
fn load(name: &str, r: &In, item_ids: &[i64], popularity: &[f32]) -> Result<Algorithm> {
    let n = item_ids.len();
    Ok(match name {
        "popularity" => Algorithm::Popularity,
        "item_knn" if r.state.get("ratings") == Some(&Value::Bool(true)) => {
            Algorithm::RatingKnn(RatingKnn::load(r, n)?)
        }
        "item_knn" => Algorithm::ItemKnn(r.neighbors("neighbors", n)?),
        "user_knn" => Algorithm::UserKnn(UserKnn::load(r, n)?),
        "ease" => Algorithm::Ease(Ease::load(r, n)?),
        "ncf" => Algorithm::Ncf(Ncf::load(r, n)?),
        "sequential" => Algorithm::Sequential(Sasrec::load(r, n)?),
        "two_tower" => Algorithm::TwoTower(TwoTower::load(r, n)?),
        "content" => Algorithm::Content(Content::load(r, n)?),
        "hybrid" => {
            let fusion =
                Fusion::from_name(r.str("fusion")?).ok_or_else(|| corrupt("hybrid fusion"))?;
            let listed = r
                .get("members")?
                .as_array()
                .ok_or_else(|| corrupt("hybrid members"))?;
            let members = listed
                .iter()
                .map(|m| {
                    let field = |k: &str| {
                        m.get(k)
                            .ok_or_else(|| corrupt(&format!("hybrid member {k}")))
                    };
                    let algorithm = field("algorithm")?
                        .as_str()
                        .filter(|a| *a != "hybrid")
                        .ok_or_else(|| corrupt("hybrid member algorithm"))?;
                    let weight = field("weight")?
                        .as_f64()
                        .ok_or_else(|| corrupt("hybrid member weight"))?
                        as f32;
                    let prefix = field("prefix")?
                        .as_str()
                        .ok_or_else(|| corrupt("hybrid member prefix"))?;
                    let state = field("state")?
                        .as_object()
                        .ok_or_else(|| corrupt("hybrid member state"))?;
                    let part = In::new_at(r, prefix, state);
                    let algorithm = load(algorithm, &part, item_ids, popularity)?;
                    Ok((
                        weight,
                        Model {
                            item_ids: item_ids.to_vec(),
                            popularity: popularity.to_vec(),
                            algorithm,
                            params: Value::Null,
                        },
                    ))
                })
                .collect::<Result<Vec<_>>>()?;
            if members.len() < 2 {
                return Err(corrupt("hybrid members"));
            }
            Algorithm::Hybrid(Hybrid { members, fusion })
        }
        other => match FactorKind::from_name(other) {
            Some(kind) => Algorithm::Factors(Factors::load(r, kind, n)?),
            None => return Err(corrupt(&format!("unknown algorithm \"{other}\""))),
        },
    })
}

/// Bytes of item text a fit will hold.
fn text_bytes(data: &Interactions) -> usize {
    data.item_text.iter().flatten().map(String::len).sum()
}

/// A user as a text-reading model sees them.
enum TextUser {
    Tower(Vec<f32>),
    /// A normalised TF-IDF profile.
    Content(Vec<(u32, f32)>),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::NoProgress;
    use serde_json::json;

    fn pool() -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap()
    }

    // Users 1..4; items 10..50. Item 50 is the most popular.
    fn data() -> Interactions {
        let pairs = [(1, 10), (1, 20), (2, 10), (2, 20), (2, 50), (3, 30), (3, 50), (4, 50), (4, 40)];
        let u: Vec<i64> = pairs.iter().map(|p| p.0).collect();
        let i: Vec<i64> = pairs.iter().map(|p| p.1).collect();
        Interactions::from_triplets(&u, &i, &vec![1.0; u.len()]).unwrap()
    }

    fn fit(alg: &str, params: Value) -> Model {
        Spec::parse(alg, &params).unwrap().0.fit(&data(), DeviceChoice::Cpu, &pool(), &mut NoProgress).unwrap()
    }

    impl Model {
        fn rec(&self, r: &Request) -> Vec<(i64, f32)> {
            self.recommend(r).unwrap()
        }
    }

    fn req<'a>(history: &'a [(i64, f32)], n: usize, candidates: Option<&'a [i64]>) -> Request<'a> {
        Request { user_id: None, history, n, exclude_seen: true, candidates, items: &[] }
    }

    #[test]
    fn the_algorithm_catalog_is_what_train_accepts() {
        let all = algorithm_catalog();
        assert_eq!(all.iter().map(|a| a.name).collect::<Vec<_>>(), ALGORITHMS);
        for a in &all {
            assert!(!a.family.is_empty() && !a.description.is_empty(), "{}", a.name);
            if a.name == "hybrid" {
                continue; // no defaults without members
            }
            // The listed defaults are exactly the effective params of an empty params object.
            let (_, effective) = Spec::parse(a.name, &json!({})).unwrap();
            let listed: serde_json::Map<String, Value> =
                a.params.as_array().unwrap().iter().map(|p| (p["name"].as_str().unwrap().to_string(), p["default"].clone())).collect();
            assert_eq!(Value::Object(listed), effective, "{}", a.name);
        }
        let knn = all.iter().find(|a| a.name == "item_knn").unwrap();
        let k = knn.params.as_array().unwrap().iter().find(|p| p["name"] == "k").unwrap();
        assert_eq!(k, &json!({"name": "k", "type": "integer", "default": 100, "range": [1, 10000]}));
        assert!(all.iter().find(|a| a.name == "sequential").unwrap().needs_time);
        assert!(all.iter().find(|a| a.name == "biased_mf").unwrap().needs_ratings);
    }

    #[test]
    fn unknown_algorithm_and_params() {
        let e = Spec::parse("nope", &json!({})).unwrap_err();
        assert!(e.detail.unwrap().contains("item_knn"));
        assert!(Spec::parse("popularity", &json!({"k": 3})).is_err());
        let (_, eff) = Spec::parse("item_knn", &json!({})).unwrap();
        assert_eq!(eff, json!({"k": 100, "similarity": "cosine", "shrink": 0.0, "min_support": 1}));
    }

    #[test]
    fn popularity_ranks_by_distinct_users_then_id() {
        let m = fit("popularity", json!({}));
        let got = m.rec(&req(&[], 3, None));
        assert_eq!(got, vec![(50, 3.0), (10, 2.0), (20, 2.0)]);
        // exclude_seen removes the user's items
        let got = m.rec(&req(&[(50, 1.0)], 2, None));
        assert_eq!(got, vec![(10, 2.0), (20, 2.0)]);
    }

    #[test]
    fn item_knn_scores_history_and_fills_from_popularity() {
        let m = fit("item_knn", json!({"k": 10}));
        // history {10}: neighbours of 10 are 20 (cos 1) and 50 (cos 1/sqrt(2*3))
        let got = m.rec(&req(&[(10, 1.0)], 4, None));
        assert_eq!(got[0].0, 20);
        assert!((got[0].1 - 1.0).abs() < 1e-6);
        assert_eq!(got[1].0, 50);
        // 30 and 40 are unreachable from 10: filled by popularity with score 0, id order
        assert_eq!(&got[2..], &[(30, 0.0), (40, 0.0)]);
        // unknown items in the history are ignored; an unknown-only history gets popularity
        assert_eq!(m.rec(&req(&[(999, 1.0)], 1, None)), vec![(50, 3.0)]);
    }

    #[test]
    fn candidates_restrict_and_still_fill() {
        let m = fit("item_knn", json!({}));
        let got = m.rec(&req(&[(10, 1.0)], 10, Some(&[40, 20, 777, 10])));
        // 10 is seen; 777 unknown; 20 scored; 40 filled
        assert_eq!(got.iter().map(|p| p.0).collect::<Vec<_>>(), vec![20, 40]);
        let all = Request { user_id: None, history: &[(10, 1.0)], n: 10, exclude_seen: false, candidates: Some(&[10]), items: &[] };
        assert_eq!(m.rec(&all).len(), 1);
    }

    #[test]
    fn huge_n_returns_every_eligible_item() {
        let m = fit("item_knn", json!({}));
        assert_eq!(m.rec(&req(&[(10, 1.0)], i32::MAX as usize, None)).len(), 4);
    }

    #[test]
    fn similar_items_and_neighbor_rows() {
        let m = fit("item_knn", json!({"k": 1}));
        assert_eq!(m.similar_items(10, 5).unwrap(), vec![(20, 1.0)]);
        assert!(m.similar_items(999, 5).unwrap().is_empty());
        let (items, nbrs, scores) = m.item_neighbors().unwrap();
        assert_eq!(items.len(), 5);
        assert_eq!((items[0], nbrs[0], scores[0]), (10, 20, 1.0));
        let p = fit("popularity", json!({}));
        assert_eq!(p.similar_items(10, 5).unwrap_err().kind, ErrorKind::Unsupported);
        assert!(p.item_neighbors().is_none());
    }

    #[test]
    fn encode_decode_round_trip() {
        let factor_models = [
            fit("als", json!({"factors": 3, "iterations": 2})),
            fit("bpr", json!({"factors": 3, "epochs": 2})),
            fit("svd", json!({"factors": 2})),
            fit("biased_mf", json!({"factors": 2, "epochs": 2})),
            fit("svdpp", json!({"factors": 2, "epochs": 2})),
        ];
        let others = [
            fit("item_knn", json!({"k": 2})),
            fit("item_knn", json!({"similarity": "pearson_baseline"})),
            fit("user_knn", json!({"k": 2})),
            fit("ncf", json!({"factors": 2, "hidden": 4, "epochs": 1})),
            fit("popularity", json!({})),
            fit("ease", json!({"lambda": 1.0})),
        ];
        let mut texts = data();
        texts.item_text = Some(["red", "red apple", "blue", "blue car", "green"].map(String::from).to_vec());
        let tower = Spec::parse("two_tower", &json!({"factors": 4, "buckets": 32, "epochs": 2})).unwrap().0;
        let tower = tower.fit(&texts, DeviceChoice::Cpu, &pool(), &mut NoProgress).unwrap();
        // a cold item (60) is recommended by its text next to the trained ones
        let items = [(60, "red apple pie".to_string()), (10, "red".to_string())];
        let got = tower.rec(&Request { user_id: None, history: &[(20, 1.0)], n: 10, exclude_seen: true, candidates: None, items: &items });
        assert_eq!(got.len(), 5);
        assert!(got.iter().any(|p| p.0 == 60) && !got.iter().any(|p| p.0 == 20));
        let content = Spec::parse("content", &json!({})).unwrap().0.fit(&texts, DeviceChoice::Cpu, &pool(), &mut NoProgress).unwrap();
        // history {20: "red apple"}: 10 ("red") is reached, cold 60 ("red apple pie") ranks first
        let got = content.rec(&Request { user_id: None, history: &[(20, 1.0)], n: 2, exclude_seen: true, candidates: None, items: &items });
        assert_eq!(got[0].0, 60);
        assert_eq!(got[1].0, 10);
        assert_eq!(content.explain(None, &[(20, 1.0), (30, 1.0)], 10, 5).unwrap().iter().map(|p| p.0).collect::<Vec<_>>(), vec![20]);
        for m in others.into_iter().chain(factor_models).chain([tower, content]) {
            let bytes = m.encode().unwrap();
            assert_eq!(Model::decode(&bytes).unwrap(), m);
        }
        assert_eq!(Model::decode(b"garbage garbage garbage").unwrap_err().kind, ErrorKind::Corrupt);
        // Matrices that disagree with their shapes are an error when written, never a file.
        let mut bad = fit("als", json!({"factors": 3, "iterations": 1}));
        if let Algorithm::Factors(f) = &mut bad.algorithm {
            f.items.pop();
        }
        assert_eq!(bad.encode().unwrap_err().kind, ErrorKind::Internal);
    }

    #[test]
    fn import_takes_exported_models_and_factors_made_elsewhere() {
        // An exported model comes back as it was, with the params it is given.
        let als = fit("als", json!({"factors": 3, "iterations": 2}));
        let (spec, params) = Spec::parse("als", &json!({"factors": 3})).unwrap();
        let back = Model::import(&als.encode().unwrap(), &spec, params.clone(), &data()).unwrap();
        assert_eq!(back, Model { params: params.clone(), ..als.clone() });
        // Factors from elsewhere: ids in any order, no popularity, fingerprints or state.
        let item_ids = [50i64, 10, 40, 20, 30];
        let items: Vec<f32> = (0..10).map(|x| x as f32 * 0.1 - 0.3).collect(); // 5 items x 2
        let user_ids = [4i64, 1, 3, 2];
        let users = [0.5f32, -0.1, 0.2, 0.9, -0.4, 0.3, 0.7, 0.7];
        let mut file = Tensors::default();
        let mut out = Out::new(&mut file, "");
        out.i64s("item_ids", &item_ids);
        out.f32s("item_factors", &[5, 2], &items);
        out.i64s("user_ids", &user_ids);
        out.f32s("user_factors", &[4, 2], &users);
        let foreign = file.finish(format::metadata("als", &Value::Null, serde_json::Map::new())).unwrap();
        let m = Model::import(&foreign, &spec, params.clone(), &data()).unwrap();
        assert_eq!(m.item_ids, vec![10, 20, 30, 40, 50]);
        assert_eq!(m.popularity, vec![2.0, 2.0, 1.0, 1.0, 3.0]);
        let f = m.factors().unwrap();
        assert_eq!(f.user_ids, vec![1, 2, 3, 4]);
        assert_eq!(f.item(4), &items[0..2], "item 50 was row 0");
        assert_eq!(f.user(0), &users[2..4], "user 1 was row 1");
        assert_eq!((f.regularization, f.alpha), (40.0, 4.0), "fold-in from the params");
        // User 1's rows are unchanged: the imported vector serves them; new rows fold in.
        let h1 = [(10, 1.0), (20, 1.0)];
        let score = |h: &[(i64, f32)], item: i64| m.predict(Some(1), h, item).unwrap().unwrap();
        let stored = users[2] * f.item(2)[0] + users[3] * f.item(2)[1];
        assert!((score(&h1, 30) - stored).abs() < 1e-6);
        assert!((score(&[(10, 1.0), (20, 1.0), (40, 1.0)], 30) - stored).abs() > 1e-4);
        // Other algorithms need a file exported by pg_recsys.
        let (ease, ep) = Spec::parse("ease", &json!({})).unwrap();
        assert_eq!(Model::import(&foreign, &ease, ep, &data()).unwrap_err().kind, ErrorKind::InvalidParameter);
        // Duplicate ids and shapes that disagree are refused with the reason.
        let mut file = Tensors::default();
        let mut out = Out::new(&mut file, "");
        let twice = [10i64, 10, 20, 30, 40];
        out.i64s("item_ids", &twice);
        out.f32s("item_factors", &[5, 2], &items);
        out.i64s("user_ids", &user_ids);
        out.f32s("user_factors", &[4, 2], &users);
        let dup = file.finish(format::metadata("als", &Value::Null, serde_json::Map::new())).unwrap();
        let e = Model::import(&dup, &spec, params, &data()).unwrap_err();
        assert!(e.kind == ErrorKind::InvalidParameter && e.message.contains("10 twice"), "{e:?}");
    }

    #[test]
    fn hybrid_fuses_members_and_round_trips() {
        let h = fit("hybrid", json!({"members": [{"algorithm": "item_knn", "weight": 2}, {"algorithm": "ease", "params": {"lambda": 1.0}}]}));
        let Algorithm::Hybrid(inner) = &h.algorithm else { panic!("not a hybrid") };
        assert_eq!(inner.members.len(), 2);
        assert_eq!(inner.fusion, Fusion::Score);
        let got = h.rec(&req(&[(10, 1.0)], 10, None));
        assert_eq!(got.len(), 4);
        assert_eq!(got[0].0, 20, "both members put 20 first: {got:?}");
        assert_eq!(Model::decode(&h.encode().unwrap()).unwrap(), h);
        assert!(h.predict(None, &[(10, 1.0)], 20).unwrap().unwrap() > h.predict(None, &[(10, 1.0)], 30).unwrap().unwrap());
        // explain splits the fused score over the history; similar_items comes from a member
        let why = h.explain(None, &[(10, 1.0), (30, 1.0)], 20, 5).unwrap();
        assert_eq!(why[0].0, 10);
        assert_eq!(h.similar_items(10, 1).unwrap()[0].0, 20);
        let rank = fit("hybrid", json!({"members": [{"algorithm": "item_knn"}, {"algorithm": "popularity"}], "fusion": "rank"}));
        assert_eq!(rank.rec(&req(&[(10, 1.0)], 10, None)).len(), 4);
        for bad in [
            json!({"members": [{"algorithm": "ease"}]}),
            json!({"members": [{"algorithm": "ease"}, {"algorithm": "hybrid"}]}),
            json!({"members": [{"algorithm": "ease", "weight": 0}, {"algorithm": "als"}]}),
            json!({"members": [{"algorithm": "ease", "params": {"nope": 1}}, {"algorithm": "als"}]}),
            json!({"members": [{"algorithm": "ease", "wieght": 1}, {"algorithm": "als"}]}),
        ] {
            assert_eq!(Spec::parse("hybrid", &bad).unwrap_err().kind, ErrorKind::InvalidParameter, "{bad}");
        }
    }

    fn reasons(m: &Model, r: &Request) -> Vec<(i64, f32, String)> {
        m.answer(r, true).unwrap().rows.into_iter().map(|(i, s, r)| (i, s, r.unwrap())).collect()
    }

    #[test]
    fn every_algorithm_explains_and_gives_reasons() {
        let history = [(10, 1.0), (20, 1.0)];
        for (alg, params) in [
            ("popularity", json!({})),
            ("item_knn", json!({})),
            ("user_knn", json!({})),
            ("ease", json!({"lambda": 1.0})),
            ("als", json!({"factors": 3, "iterations": 3})),
            ("bpr", json!({"factors": 3, "epochs": 3})),
            ("ncf", json!({"factors": 2, "hidden": 4, "epochs": 1})),
        ] {
            let m = fit(alg, params);
            let why = m.explain(None, &history, 50, 5).unwrap();
            assert!(why.iter().all(|p| p.0 == 10 || p.0 == 20), "{alg}: {why:?}");
            let recs = reasons(&m, &Request { user_id: Some(1), history: &history, n: 3, exclude_seen: true, candidates: None, items: &[] });
            assert_eq!(recs.len(), 3, "{alg}");
            assert!(recs.iter().all(|r| !r.2.is_empty()), "{alg}: {recs:?}");
            if alg == "popularity" {
                assert!(why.is_empty() && recs.iter().all(|r| r.2 == "popular"));
            } else {
                // Every other model's score for 50 comes from the history: explain must say so.
                assert!(!why.is_empty() && why.iter().all(|p| p.1.is_finite()) && why.iter().any(|p| p.1 > 0.0), "{alg}: {why:?}");
            }
        }
        // item_knn: 50 is reached from 10 and 20; 30 and 40 only fill the list
        let m = fit("item_knn", json!({}));
        let recs = reasons(&m, &req(&history, 3, None));
        assert_eq!(recs[0].2, "because of item 10 and item 20 in your history");
        assert_eq!(recs[1].2, "popular");
        // a user with no history gets the popularity answer
        assert!(reasons(&m, &req(&[], 2, None)).iter().all(|r| r.2 == "popular"));
        // content names the shared words
        let mut texts = data();
        texts.item_text = Some(["red apple", "green apple", "blue sky", "blue car", "red car"].map(String::from).to_vec());
        let c = Spec::parse("content", &json!({})).unwrap().0.fit(&texts, DeviceChoice::Cpu, &pool(), &mut NoProgress).unwrap();
        let items: Vec<(i64, String)> = [(10, "red apple"), (20, "green apple"), (30, "blue sky"), (40, "blue car"), (50, "red car")]
            .map(|(i, t)| (i, t.to_string()))
            .to_vec();
        let recs = reasons(&c, &Request { user_id: None, history: &[(10, 1.0)], n: 2, exclude_seen: true, candidates: None, items: &items });
        assert!(recs[0].2.starts_with("similar to \"red apple\" (shared words: "), "{recs:?}");
    }

    #[test]
    fn content_recency_half_life_favours_the_latest_items() {
        let mut texts = data();
        texts.item_text = Some(["red", "red apple", "blue", "blue car", "green"].map(String::from).to_vec());
        let fit_content = |params| Spec::parse("content", &params).unwrap().0.fit(&texts, DeviceChoice::Cpu, &pool(), &mut NoProgress).unwrap();
        let (spec, _) = Spec::parse("content", &json!({"recency_half_life": 1})).unwrap();
        assert!(spec.needs_time());
        let decayed = fit_content(json!({"recency_half_life": 1}));
        let top = |m: &Model, h: &[(i64, f32)]| m.rec(&req(h, 1, Some(&[20, 40])))[0].0;
        // history in time order, oldest first: the latest item's neighbour wins
        assert_eq!(top(&decayed, &[(10, 1.0), (30, 1.0)]), 40);
        assert_eq!(top(&decayed, &[(30, 1.0), (10, 1.0)]), 20);
        // without decay the order of the history does not matter
        let flat = fit_content(json!({}));
        assert_eq!(top(&flat, &[(10, 1.0), (30, 1.0)]), top(&flat, &[(30, 1.0), (10, 1.0)]));
        assert_eq!(Model::decode(&decayed.encode().unwrap()).unwrap(), decayed);
        // explain's parts still sum to the score with the decay
        let h = [(10, 1.0), (20, 1.0)];
        let parts: f32 = decayed.explain(None, &[(10, 1.0), (20, 1.0)], 20, 10).unwrap().iter().map(|p| p.1).sum();
        assert!((parts - decayed.predict(None, &h, 20).unwrap().unwrap()).abs() < 1e-5);
    }
}
