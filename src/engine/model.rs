//! A trained model as serving sees it: the item catalogue, popularity (the cold-start answer)
//! and the algorithm's trained state behind `Recommender`. What is common to every algorithm
//! lives here — the registry, ranking, exclusion, candidates, the popularity fill, reasons,
//! leave-one-out explanations, the model file's entry points — and each algorithm's training,
//! scoring and storage live in its own module (see `recommender`).

use std::collections::{HashMap, HashSet};

use safetensors::tensor::SafeTensors;
use serde_json::Value;

use crate::engine::als::AlsParams;
use crate::engine::bpr::BprParams;
use crate::engine::content::{Content, ContentParams};
use crate::engine::ease::{Ease, EaseParams};
use crate::engine::factors::{FactorKind, Factors};
use crate::engine::format::{self, corrupt, Header, In, Out, Tensors};
use crate::engine::graph::{ItemGraph, Rp3Params, SlimParams};
use crate::engine::hybrid::{Hybrid, HybridSpec};
use crate::engine::interactions::{index_of, Interactions};
use crate::engine::knn::{ItemKnnParams, NeighborLists, Neighbors, RatingKnn};
use crate::engine::legacy;
use crate::engine::mf::MfParams;
use crate::engine::ncf::{Ncf, NcfParams};
use crate::engine::neural::DeviceChoice;
use crate::engine::params::Params;
use crate::engine::popularity::{item_popularity, Popularity};
use crate::engine::recommender::{Recommender, Trainer};
use crate::engine::sequential::{Sasrec, SeqParams};
use crate::engine::svd::SvdParams;
use crate::engine::topk::top_k;
use crate::engine::two_tower::{TwoTower, TwoTowerParams};
use crate::engine::userknn::{UserKnn, UserKnnParams};
use crate::engine::weighting::{Scheme, Weighting};
use crate::engine::{Progress, RecsysError, Result};

/// The longest list diversity re-ranks, and the largest pool it picks from (16 MB of similarities).
const MAX_DIVERSE: usize = 1000;
const MAX_DIVERSE_POOL: usize = 2000;

/// Leave-one-out explanations re-score the user at most this many times (latest items first).
const OCCLUSION_ITEMS: usize = 50;

/// An algorithm's typed params from a params object (`name` is the registered name).
pub type Parser = fn(name: &str, p: &mut Params) -> Result<Box<dyn Trainer>>;
/// An algorithm's trained state from its part of a model file, over the catalogue `item_ids`.
pub type Loader = fn(name: &str, r: &In, item_ids: &[i64], popularity: &[f32]) -> Result<Box<dyn Recommender>>;

/// One algorithm as `recsys.train` and the model file name it.
pub struct Registration {
    pub name: &'static str,
    pub family: &'static str,
    pub description: &'static str,
    pub parse: Parser,
    pub load: Loader,
}

fn boxed<T: Trainer + 'static>(t: T) -> Result<Box<dyn Trainer>> {
    Ok(Box::new(t))
}

fn factors(name: &str, r: &In, item_ids: &[i64], _: &[f32]) -> Result<Box<dyn Recommender>> {
    let kind = FactorKind::from_name(name).ok_or_else(|| corrupt(&format!("unknown factor model \"{name}\"")))?;
    Ok(Box::new(Factors::load(r, kind, item_ids.len())?))
}

/// Every algorithm, once: adding one is a module that implements `Trainer` and `Recommender`
/// and a line here.
pub const REGISTRY: &[Registration] = &[
    Registration {
        name: "popularity",
        family: "baseline",
        description: "items ranked by how many distinct users have them",
        parse: |_, _| boxed(Popularity),
        load: |_, _, _, _| Ok(Box::new(Popularity)),
    },
    Registration {
        name: "item_knn",
        family: "neighbourhood",
        description: "top-k similar items per item (cosine/jaccard co-occurrence, or rating similarities with baselines)",
        parse: |_, p| boxed(ItemKnnParams::from_params(p)?),
        load: |_, r, ids, _| {
            Ok(if r.state.get("ratings") == Some(&Value::Bool(true)) {
                Box::new(RatingKnn::load(r, ids.len())?)
            } else {
                Box::new(r.neighbors("neighbors", ids.len())?)
            })
        },
    },
    Registration {
        name: "user_knn",
        family: "neighbourhood",
        description: "the k most similar users to the live history vote for their items",
        parse: |_, p| boxed(UserKnnParams::from_params(p)?),
        load: |_, r, ids, _| Ok(Box::new(UserKnn::load(r, ids.len())?)),
    },
    Registration {
        name: "rp3beta",
        family: "neighbourhood",
        description: "RP3beta: item-user-item random walk, P(u|i)^alpha P(j|u)^alpha / pop(j)^beta, top-k per item",
        parse: |_, p| boxed(Rp3Params::from_params(p)?),
        load: |_, r, ids, _| Ok(Box::new(ItemGraph::load("rp3beta", r, ids.len())?)),
    },
    Registration {
        name: "slim",
        family: "linear",
        description: "SLIM ElasticNet: non-negative sparse item-item weights by coordinate descent, top-k per item",
        parse: |_, p| boxed(SlimParams::from_params(p)?),
        load: |_, r, ids, _| Ok(Box::new(ItemGraph::load("slim", r, ids.len())?)),
    },
    Registration {
        name: "ease",
        family: "linear",
        description: "EASE: closed-form item-item autoencoder, B = I - P diag(1/diag P), P = (X'X + lambda I)^-1",
        parse: |_, p| boxed(EaseParams::from_params(p)?),
        load: |_, r, ids, _| Ok(Box::new(Ease::load(r, ids.len())?)),
    },
    Registration {
        name: "svd",
        family: "factorization",
        description: "PureSVD: truncated randomized SVD of the user-item matrix",
        parse: |_, p| boxed(SvdParams::from_params(p)?),
        load: factors,
    },
    Registration {
        name: "biased_mf",
        family: "factorization",
        description: "biased matrix factorization (Funk SVD) for explicit ratings",
        parse: |_, p| boxed(MfParams::from_params(p, false)?),
        load: factors,
    },
    Registration {
        name: "svdpp",
        family: "factorization",
        description: "SVD++: biased MF plus implicit feedback, for explicit ratings",
        parse: |_, p| boxed(MfParams::from_params(p, true)?),
        load: factors,
    },
    Registration {
        name: "als",
        family: "factorization",
        description: "implicit-feedback ALS (Hu, Koren, Volinsky) with conjugate gradient",
        parse: |_, p| boxed(AlsParams::from_params(p)?),
        load: factors,
    },
    Registration {
        name: "bpr",
        family: "factorization",
        description: "Bayesian Personalized Ranking with item biases",
        parse: |_, p| boxed(BprParams::from_params(p)?),
        load: factors,
    },
    Registration {
        name: "ncf",
        family: "neural",
        description: "NeuMF (GMF + MLP) trained with Candle",
        parse: |_, p| boxed(NcfParams::from_params(p)?),
        load: |_, r, ids, _| Ok(Box::new(Ncf::load(r, ids.len())?)),
    },
    Registration {
        name: "sequential",
        family: "neural",
        description: "SASRec next-item model trained with Candle (needs time_column)",
        parse: |_, p| boxed(SeqParams::from_params(p)?),
        load: |_, r, ids, _| Ok(Box::new(Sasrec::load(r, ids.len())?)),
    },
    Registration {
        name: "two_tower",
        family: "neural",
        description: "two-tower retrieval over item text and ids, trained with Candle (needs items, item_text)",
        parse: |_, p| boxed(TwoTowerParams::from_params(p)?),
        load: |_, r, ids, _| Ok(Box::new(TwoTower::load(r, ids.len())?)),
    },
    Registration {
        name: "content",
        family: "content",
        description: "TF-IDF over item text, cosine with the live history's profile (needs items, item_text)",
        parse: |_, p| boxed(ContentParams::from_params(p)?),
        load: |_, r, ids, _| Ok(Box::new(Content::load(r, ids.len())?)),
    },
    Registration {
        name: "hybrid",
        family: "hybrid",
        description: "members trained together, scores fused (z-scores or reciprocal rank)",
        parse: |_, p| boxed(HybridSpec::from_params(p)?),
        load: |_, r, ids, popularity| Ok(Box::new(Hybrid::load(r, ids, popularity)?)),
    },
];

fn registered(name: &str) -> Option<&'static Registration> {
    REGISTRY.iter().find(|r| r.name == name)
}

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
    REGISTRY
        .iter()
        .map(|r| {
            let mut p = Params::parse(r.name, &Value::Null).expect("an empty params object parses");
            // With no params the defaults are what is described; a hybrid without members fails
            // after asking for them, which is still described.
            let spec = (r.parse)(r.name, &mut p).ok();
            if let Some(t) = &spec {
                Scheme::from_params(&mut p, t.needs_ratings()).expect("the default weighting parses");
            }
            let has = |f: fn(&dyn Trainer) -> bool| spec.as_deref().is_some_and(f);
            AlgorithmInfo {
                name: r.name,
                family: r.family,
                description: r.description,
                needs_ratings: has(|t| t.needs_ratings()),
                needs_time: has(|t| t.needs_time()),
                needs_item_text: has(|t| t.needs_item_text()),
                neural: has(|t| t.is_neural()),
                params: Value::from(std::mem::take(&mut p.described)),
            }
        })
        .collect()
}

/// A validated training request: the algorithm and its typed parameters.
#[derive(Debug)]
pub struct Spec {
    pub algorithm: &'static str,
    trainer: Box<dyn Trainer>,
    weighting: Scheme,
}

impl Spec {
    /// Check the algorithm name and params before any data is read. Returns the spec and the
    /// effective params (defaults filled in) to store in the catalog.
    pub fn parse(algorithm: &str, params: &Value) -> Result<(Spec, Value)> {
        Spec::parse_as(algorithm, params, true)
    }

    /// A hybrid member: as `parse`, without `weighting` (the hybrid's own applies to all).
    pub fn parse_member(algorithm: &str, params: &Value) -> Result<(Spec, Value)> {
        Spec::parse_as(algorithm, params, false)
    }

    fn parse_as(algorithm: &str, params: &Value, top: bool) -> Result<(Spec, Value)> {
        let Some(r) = registered(algorithm) else {
            return Err(RecsysError::invalid(format!("unknown algorithm \"{algorithm}\""))
                .with_detail(format!("known algorithms: {}", REGISTRY.iter().map(|r| r.name).collect::<Vec<_>>().join(", "))));
        };
        let mut p = Params::parse(algorithm, params)?;
        let trainer = (r.parse)(r.name, &mut p)?;
        let weighting = if top { Scheme::from_params(&mut p, trainer.needs_ratings())? } else { Scheme::None };
        Ok((Spec { algorithm: r.name, trainer, weighting }, p.finish()?))
    }

    pub fn needs_ratings(&self) -> bool {
        self.trainer.needs_ratings()
    }

    /// Why this spec cannot train without a rating column (None: it can): rating-prediction
    /// models, and user_knn's pearson.
    pub fn rating_column_needed(&self) -> Option<&'static str> {
        self.trainer.rating_column_needed()
    }

    pub fn is_neural(&self) -> bool {
        self.trainer.is_neural()
    }

    pub fn needs_item_text(&self) -> bool {
        self.trainer.needs_item_text()
    }

    pub fn needs_time(&self) -> bool {
        self.trainer.needs_time()
    }

    /// Bytes the fit will allocate (the catalogue's own arrays included).
    pub fn memory_estimate(&self, data: &Interactions, threads: usize) -> usize {
        // A weighted copy of the matrix, when one is made.
        data.n_items() * 12 + data.nnz() * 8 + self.trainer.memory_estimate(data, threads)
    }

    /// Fit on `pool`; neural models train on `device` (the others ignore it).
    pub fn fit(&self, data: &Interactions, device: DeviceChoice, pool: &rayon::ThreadPool, progress: &mut dyn Progress) -> Result<Model> {
        let _reuse = crate::engine::memory::Training::begin(pool);
        let weighting = Weighting::fit(self.weighting, &data.matrix);
        let drop_negative = !self.trainer.uses_negative_weights() && data.matrix.values.iter().any(|&v| v < 0.0);
        let weighted;
        let data = if weighting.is_identity() && !drop_negative {
            data
        } else {
            let mut copy = data.clone();
            if drop_negative {
                copy.matrix = copy.matrix.filtered(|v| v >= 0.0);
                if copy.matrix.nnz() == 0 {
                    return Err(RecsysError::invalid(format!("every interaction of the source has a negative value (a dislike), and {} trains on the others", self.algorithm))
                        .with_hint("als learns from dislikes; the other implicit models need some rows of value 0 or more"));
                }
            }
            weighting.apply_matrix(&mut copy.matrix);
            weighted = copy;
            &weighted
        };
        let algorithm = self.trainer.fit(data, device, pool, progress)?;
        Ok(Model { item_ids: data.item_ids.clone(), popularity: item_popularity(&data.matrix), algorithm, params: Value::Null, weighting })
    }
}

/// Recommendations with optional reasons, and whether the history placed the user.
pub struct Answer {
    pub rows: Vec<(i64, f32, Option<String>)>,
    pub placed: bool,
}

/// Every trained item's score for one request and which items the model reached (the others
/// are filled by popularity), plus eligible untrained items scored from their text.
pub struct Scored {
    pub scores: Vec<f32>,
    pub reached: Vec<bool>,
    pub cold: Vec<(i64, f32)>,
    /// Whether the user's history placed the user (false: the popularity answer).
    pub placed: bool,
}

impl Scored {
    pub fn popular(m: &Model) -> Scored {
        Scored { scores: m.popularity.clone(), reached: vec![true; m.n_items()], cold: Vec::new(), placed: false }
    }

    /// Scores for every item, all reached.
    pub fn all(scores: Vec<f32>) -> Scored {
        let n = scores.len();
        Scored { scores, reached: vec![true; n], cold: Vec::new(), placed: true }
    }

    /// Scores of the items reached (the others are filled by popularity).
    pub fn reached(scores: Vec<f32>, reached: Vec<bool>) -> Scored {
        Scored { scores, reached, cold: Vec::new(), placed: true }
    }
}

#[derive(Debug)]
pub struct Model {
    /// Known items, ascending; an item's index is its position here.
    pub item_ids: Vec<i64>,
    pub popularity: Vec<f32>,
    pub algorithm: Box<dyn Recommender>,
    /// The effective training params, kept in the model file (Null for hybrid members and
    /// models read from the 0.1.0-0.3.0 format).
    pub params: Value,
    /// How interaction values became weights in training; served histories get the same.
    pub weighting: Weighting,
}

impl PartialEq for Model {
    fn eq(&self, other: &Model) -> bool {
        self.item_ids == other.item_ids
            && self.popularity == other.popularity
            && self.params == other.params
            && self.weighting == other.weighting
            && self.algorithm.dyn_eq(other.algorithm.as_any())
    }
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
    /// items trained without are encoded from their text and can be recommended. Scoring reads
    /// only the rows of items the model was not trained on (the glue passes just those unless
    /// reasons, which name any item by its text, are asked for). Sorted by id as the glue reads
    /// it (then found by merging, not by a search per row).
    pub items: &'a [(i64, String)],
    /// λ of maximal-marginal-relevance re-ranking, in [0, 1]: 0 ranks by score alone.
    pub diversity: f32,
}

impl<'a> Request<'a> {
    /// A request that only scores (predict, explain): no list, nothing excluded, no items table.
    pub fn scoring(user_id: Option<i64>, history: &'a [(i64, f32)]) -> Request<'a> {
        Request { user_id, history, n: 0, exclude_seen: false, candidates: None, items: &[], diversity: 0.0 }
    }
}

impl Model {
    pub fn algorithm_name(&self) -> &'static str {
        self.algorithm.name()
    }

    /// The top similar users per user for `recsys.user_neighbors`, when the model has them.
    pub fn user_neighbors(&self) -> Option<NeighborLists> {
        self.algorithm.user_neighbors()
    }

    /// Models that read the live items table when serving (text models encode untrained items).
    pub fn reads_item_text(&self) -> bool {
        self.algorithm.reads_item_text()
    }

    /// Rating-prediction models: biased_mf, svdpp and item_knn on a rating similarity.
    pub fn predicts_ratings(&self) -> bool {
        self.algorithm.predicts_ratings()
    }

    /// The model's factors, for factor models.
    pub fn factors(&self) -> Option<&Factors> {
        self.algorithm.factors()
    }

    /// History (item id, weight) → (item index, weight) for known items, sorted by index:
    /// a canonical order, so float sums (and so ties) do not depend on the order rows were read.
    /// Values are weighted as in training (`weighting`), and a negative one (a dislike) is
    /// left out for models that did not learn from dislikes.
    pub fn known_history(&self, history: &[(i64, f32)]) -> Vec<(u32, f32)> {
        let negatives = self.algorithm.uses_negative_weights();
        let mut h: Vec<(u32, f32)> = history
            .iter()
            .filter(|p| negatives || p.1 >= 0.0)
            .filter_map(|&(id, w)| index_of(&self.item_ids, id).map(|i| (i, w)))
            .collect();
        h.sort_unstable_by_key(|p| p.0);
        self.weighting.apply(&mut h);
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
    /// the model's own reason where it has one (content: "similar to X (shared words: …)"),
    /// "popular" for the popularity answer and for items that fill the list.
    fn reasons(&self, req: &Request, recs: &[(i64, f32)], scored: &Scored) -> Result<Vec<Option<String>>> {
        let explained = self.explain_items(req.user_id, req.history, &recs.iter().map(|r| r.0).collect::<Vec<_>>(), 2)?;
        let own = self.algorithm.reasons(self, req, recs)?;
        Ok(recs
            .iter()
            .zip(explained)
            .enumerate()
            .map(|(k, (&(id, _), because))| {
                let trained = index_of(&self.item_ids, id).map(|i| i as usize);
                let filled = trained.is_some_and(|i| !scored.reached[i]);
                if self.algorithm_name() == "popularity" || !scored.placed || filled {
                    return Some("popular".to_string());
                }
                if let Some(reason) = own.as_ref().and_then(|v| v[k].clone()) {
                    return Some(reason);
                }
                let because: Vec<&(i64, f32)> = because.iter().filter(|b| b.1 > 0.0).collect();
                let reason = match (because.as_slice(), trained) {
                    ([a], _) => format!("because of {} in your history", item_label(req, a.0)),
                    ([a, b, ..], _) => format!("because of {} and {} in your history", item_label(req, a.0), item_label(req, b.0)),
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
        // An item the user disliked (a negative value) is never recommended to them.
        for &(id, w) in req.history {
            if let Some(i) = index_of(&self.item_ids, id).filter(|_| w < 0.0) {
                eligible[i as usize] = false;
            }
        }

        if !(0.0..=1.0).contains(&req.diversity) {
            return Err(RecsysError::invalid(format!("diversity must be between 0 and 1, got {}", req.diversity)));
        }
        if req.diversity > 0.0 && req.n > MAX_DIVERSE {
            return Err(RecsysError::invalid(format!("diversity re-ranks lists of at most {MAX_DIVERSE} items, n is {}", req.n))
                .with_hint("ask for fewer items, or leave diversity at 0"));
        }
        let mut scored = self.score(req, &history)?;
        let (scores, reached) = (&scored.scores, &scored.reached);
        // Diversity re-ranks a pool of the best-scored items (5n, at least 50, at most
        // MAX_DIVERSE_POOL: its pairwise similarities are a pool² matrix).
        let diverse = req.diversity > 0.0 && scored.placed;
        let pool = if diverse { (req.n * 5).clamp(50, MAX_DIVERSE_POOL).max(req.n) } else { req.n };
        let mut out: Vec<(u32, f32)> = top_k(
            (0..n_items as u32).filter(|&i| eligible[i as usize] && reached[i as usize]).map(|i| (i, scores[i as usize])),
            pool,
        );
        if diverse {
            out = self.diversify(out, req.n, req.diversity)?;
        }
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

    /// Maximal marginal relevance (Carbonell & Goldstein 1998): n items of `pool` (score order)
    /// picked one at a time by (1 − λ)·relevance − λ·(largest similarity to an item already
    /// picked), relevance being the score scaled to [0, 1] over the pool and similarity the
    /// model's own (neighbours, factors). Ties go to the better-scored item.
    fn diversify(&self, pool: Vec<(u32, f32)>, n: usize, lambda: f32) -> Result<Vec<(u32, f32)>> {
        let items: Vec<u32> = pool.iter().map(|p| p.0).collect();
        let Some(sim) = self.algorithm.pair_similarities(&items) else {
            return Err(crate::engine::recommender::unsupported("diversity", self.algorithm_name(), "train an item_knn, rp3beta, slim, ease, content, factor or hybrid model"));
        };
        let m = pool.len();
        let (lo, hi) = pool.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), p| (lo.min(p.1), hi.max(p.1)));
        let relevance: Vec<f32> = pool.iter().map(|p| if hi > lo { (p.1 - lo) / (hi - lo) } else { 1.0 }).collect();
        let mut closest = vec![0f32; m];
        let mut taken = vec![false; m];
        let mut out = Vec::with_capacity(n.min(m));
        while out.len() < n.min(m) {
            let mut best: Option<(usize, f32)> = None;
            for c in (0..m).filter(|&c| !taken[c]) {
                let v = (1.0 - lambda) * relevance[c] - lambda * closest[c];
                if best.is_none_or(|(_, b)| v > b) {
                    best = Some((c, v));
                }
            }
            let Some((c, _)) = best else { break };
            taken[c] = true;
            out.push(pool[c]);
            (0..m).for_each(|d| closest[d] = closest[d].max(sim[d * m + c]));
        }
        Ok(out)
    }

    /// Score every trained item for a request (`history`: its known items, by index). A user
    /// with no known history, or one the model cannot place, gets the popularity answer.
    pub fn score(&self, req: &Request, history: &[(u32, f32)]) -> Result<Scored> {
        if history.is_empty() && !self.algorithm.scores_unknown_history() {
            return Ok(Scored::popular(self));
        }
        let mut scored = self.algorithm.score(self, req, history)?.unwrap_or_else(|| Scored::popular(self));
        scored.cold.sort_unstable_by_key(|c| c.0);
        Ok(scored)
    }

    /// The n most similar items to `item_id` (empty if the model does not know the item):
    /// stored neighbours for item-kNN, EASE and content, cosine of the item factors or
    /// embeddings for factor and neural models; 0A000 for models without item similarities.
    /// `text`: the item's text in the live items table, for an item the model was not trained
    /// on (content models answer from it).
    pub fn similar_items(&self, item_id: i64, n: usize, text: Option<&str>) -> Result<Vec<(i64, f32)>> {
        let i = index_of(&self.item_ids, item_id).map(|i| i as usize);
        let from_text = match (i, text) {
            (None, Some(t)) => self.algorithm.similar_to_text(t, n),
            _ => None,
        };
        let found = match from_text {
            Some(f) => f,
            None => self.algorithm.similar_items(self, i, n)?,
        };
        Ok(found.into_iter().map(|(j, s)| (self.item_ids[j as usize], s)).collect())
    }

    /// The n users most similar to `user_id` (user_knn neighbours, or cosine of the stored user
    /// factors; empty if the model has not seen the user).
    pub fn similar_users(&self, user_id: i64, n: usize) -> Result<Vec<(i64, f32)>> {
        self.algorithm.similar_users(user_id, n)
    }

    /// The model's score for one (user, item): a predicted rating clipped to the observed range for
    /// rating models, the ranking score otherwise. None when the item is unknown, or when the
    /// model cannot place the user (no history it knows; an explicit factor model then
    /// predicts μ + b_i).
    pub fn predict(&self, user_id: Option<i64>, history: &[(i64, f32)], item_id: i64) -> Result<Option<f32>> {
        let Some(i) = index_of(&self.item_ids, item_id) else { return Ok(None) };
        self.algorithm.predict(self, &Request::scoring(user_id, history), &self.known_history(history), i as usize)
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
        let parts = self.algorithm.explain_items(self, &Request::scoring(user_id, history), &known, &idx)?;
        Ok(parts.into_iter().map(|p| top_k(p, n).into_iter().map(|(j, c)| (self.item_ids[j as usize], c)).collect()).collect())
    }

    /// Leave-one-out parts for models whose score does not decompose (sequential, two_tower):
    /// the base score minus the score without each of the latest history items.
    pub fn occlusion(&self, req: &Request, targets: &[Option<usize>]) -> Result<Vec<Vec<(u32, f32)>>> {
        let history = req.history;
        let scores = |h: &[(i64, f32)]| -> Result<Vec<f32>> { Ok(self.score(&Request::scoring(req.user_id, h), &self.known_history(h))?.scores) };
        let base = scores(history)?;
        let recent: Vec<usize> = (0..history.len()).rev().filter(|&p| index_of(&self.item_ids, history[p].0).is_some()).take(OCCLUSION_ITEMS).collect();
        let without: Vec<(u32, Vec<f32>)> = recent
            .iter()
            .map(|&p| {
                let h: Vec<(i64, f32)> = history.iter().enumerate().filter(|q| q.0 != p).map(|q| *q.1).collect();
                Ok((index_of(&self.item_ids, history[p].0).unwrap_or(0), scores(&h)?))
            })
            .collect::<Result<_>>()?;
        Ok(targets
            .iter()
            .map(|i| match i {
                Some(i) => without.iter().map(|(j, s)| (*j, base[*i] - s[*i])).filter(|p| p.1 > 0.0).collect(),
                None => Vec::new(),
            })
            .collect())
    }

    /// The top neighbours per item for `recsys.item_neighbors`, when the model has them.
    pub fn item_neighbors(&self) -> Option<NeighborLists> {
        Some(self.algorithm.item_neighbors()?.with_ids(&self.item_ids))
    }

    /// The stored form, a safetensors file (see `format`); an error (never an empty or partial
    /// file) when a part cannot be written.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut file = Tensors::default();
        let mut out = Out::new(&mut file, "");
        out.i64s("item_ids", &self.item_ids);
        out.f32s("popularity", &[self.n_items()], &self.popularity);
        self.weighting.store(&mut out);
        self.algorithm.store(&mut out)?;
        let state = std::mem::take(&mut out.state);
        file.finish(format::metadata(self.algorithm_name(), &self.params, state))
    }

    /// A stored model: the current format, or the format of 0.1.0 to 0.3.0 (`legacy`).
    pub fn decode(bytes: &[u8]) -> Result<Model> {
        if legacy::is_legacy(bytes) {
            return legacy::decode(bytes);
        }
        let (st, header) = format::open(bytes)?;
        Model::from_file(&st, header)
    }

    /// The model of an opened (and checked) file.
    fn from_file(st: &SafeTensors, header: Header) -> Result<Model> {
        let r = In::new(st, "", &header.state);
        let item_ids = r.i64s("item_ids")?;
        format::check_ids(&item_ids, "item ids")?;
        let popularity = r.f32s("popularity", Some(&[item_ids.len()]))?;
        let weighting = Weighting::load(&r, item_ids.len())?;
        let algorithm = load(&header.algorithm, &r, &item_ids, &popularity)?;
        Ok(Model { item_ids, popularity, algorithm, params: header.params, weighting })
    }

    /// A model file given to `recsys.import_model`: one exported by pg_recsys (any algorithm,
    /// kept as it is), or, when the file has no `popularity`, factor matrices made elsewhere,
    /// completed from the live data (`factors::import`). `spec` is the file's algorithm and
    /// params parsed; `params` the effective params the model keeps. The file is opened (and its
    /// checksum checked) once.
    pub fn import(bytes: &[u8], spec: &Spec, params: Value, data: &Interactions) -> Result<Model> {
        if legacy::is_legacy(bytes) {
            return Ok(Model { params, ..legacy::decode(bytes)? });
        }
        let (st, header) = format::open(bytes)?;
        if In::new(&st, "", &header.state).has("popularity") {
            return Ok(Model { params, ..Model::from_file(&st, header)? });
        }
        let Some(fold_in) = spec.trainer.fold_in() else {
            return Err(RecsysError::invalid("cannot import the model file: it has no popularity, so it is read as factor matrices made elsewhere, and only factor models take those")
                .with_hint("export a model from pg_recsys, or write item_ids, item_factors, user_ids and user_factors for svd, biased_mf, svdpp, als or bpr"));
        };
        let kind = FactorKind::from_name(&header.algorithm).ok_or_else(|| RecsysError::invalid("not a factor model"))?;
        let (item_ids, factors) = crate::engine::factors::import(&In::new(&st, "", &header.state), kind, fold_in, data)?;
        let counts = item_popularity(&data.matrix);
        let popularity = item_ids.iter().map(|&id| index_of(&data.item_ids, id).map_or(0.0, |i| counts[i as usize])).collect();
        Ok(Model { item_ids, popularity, algorithm: Box::new(factors), params, weighting: Weighting::default() })
    }
}

/// The algorithm `name`'s part of a file over the catalogue `item_ids`.
pub fn load(name: &str, r: &In, item_ids: &[i64], popularity: &[f32]) -> Result<Box<dyn Recommender>> {
    let registration = registered(name).ok_or_else(|| corrupt(&format!("unknown algorithm \"{name}\"")))?;
    (registration.load)(name, r, item_ids, popularity)
}

/// An item as a reason names it: the first words of its text in the items table, else its id.
pub fn item_label(req: &Request, id: i64) -> String {
    let found = if req.items.is_sorted_by_key(|p| p.0) {
        req.items.get(req.items.partition_point(|p| p.0 < id)).filter(|p| p.0 == id)
    } else {
        req.items.iter().find(|p| p.0 == id)
    };
    match found {
        Some((_, text)) if !text.trim().is_empty() => {
            let words: Vec<&str> = text.split_whitespace().take(6).collect();
            format!("\"{}\"", words.join(" "))
        }
        _ => format!("item {id}"),
    }
}

/// The texts of the history's items that the model was not trained on, by id (one pass over the
/// items table rows).
pub fn untrained_texts<'a>(item_ids: &[i64], history: &[(i64, f32)], items: &'a [(i64, String)]) -> HashMap<i64, &'a str> {
    let wanted: HashSet<i64> = history.iter().map(|p| p.0).filter(|&id| index_of(item_ids, id).is_none()).collect();
    if wanted.is_empty() {
        return HashMap::new();
    }
    items.iter().filter(|(id, _)| wanted.contains(id)).map(|(id, t)| (*id, t.as_str())).collect()
}

/// Rows of the live items table the model was not trained on that this request may get
/// (not seen when seen items are excluded, among the candidates when there are some).
pub fn untrained_eligible<'a>(m: &Model, req: &Request<'a>) -> Vec<&'a (i64, String)> {
    let rows = untrained_rows(&m.item_ids, req.items);
    if rows.is_empty() {
        return rows;
    }
    // Only the history's own untrained items can be among these rows (usually none).
    let seen: HashSet<i64> = req.history.iter().map(|p| p.0).filter(|&id| index_of(&m.item_ids, id).is_none()).collect();
    let allowed: Option<HashSet<i64>> = req.candidates.map(|c| c.iter().copied().collect());
    rows.into_iter()
        .filter(|(id, _)| !(req.exclude_seen && seen.contains(id)))
        .filter(|(id, _)| allowed.as_ref().is_none_or(|c| c.contains(id)))
        .collect()
}

/// The rows of `items` whose id is not in `item_ids` (sorted). Items tables are read sorted by
/// id (`Source::item_texts`), so this is one merge of the two lists, not a search per row (a
/// text model serves a whole catalogue's rows on every call); unsorted rows are searched.
pub fn untrained_rows<'a>(item_ids: &[i64], items: &'a [(i64, String)]) -> Vec<&'a (i64, String)> {
    if !items.is_sorted_by_key(|p| p.0) {
        return items.iter().filter(|(id, _)| index_of(item_ids, *id).is_none()).collect();
    }
    let mut at = 0;
    items
        .iter()
        .filter(|(id, _)| {
            while at < item_ids.len() && item_ids[at] < *id {
                at += 1;
            }
            at == item_ids.len() || item_ids[at] != *id
        })
        .collect()
}

/// Bytes of item text a fit will hold.
pub fn text_bytes(data: &Interactions) -> usize {
    data.item_text.iter().flatten().map(String::len).sum()
}

/// Neighbour lists as `similar_items` answers from them.
pub fn similar_from(nb: &Neighbors, item: Option<usize>, n: usize) -> Vec<(u32, f32)> {
    let Some(i) = item else { return Vec::new() };
    let (idx, s) = nb.row(i);
    idx.iter().copied().zip(s.iter().copied()).take(n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::hybrid::Fusion;
    use crate::engine::{ErrorKind, NoProgress};
    use serde_json::json;

    fn pool() -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap()
    }

    #[test]
    fn untrained_rows_by_merge_and_by_search_agree() {
        let trained = [2i64, 3, 5, 8, 13];
        let row = |id: i64| (id, format!("item {id}"));
        // Sorted (as the glue reads items tables), with a duplicated id and ids past both ends.
        let sorted: Vec<(i64, String)> = [1, 2, 4, 4, 5, 9, 13, 20].into_iter().map(row).collect();
        let ids = |rows: Vec<&(i64, String)>| rows.into_iter().map(|r| r.0).collect::<Vec<_>>();
        assert_eq!(ids(untrained_rows(&trained, &sorted)), vec![1, 4, 4, 9, 20]);
        let unsorted: Vec<(i64, String)> = [20, 4, 2, 1, 13, 9, 5, 4].into_iter().map(row).collect();
        assert_eq!(ids(untrained_rows(&trained, &unsorted)), vec![20, 4, 1, 9, 4]);
        assert!(untrained_rows(&trained, &[]).is_empty());
        assert_eq!(ids(untrained_rows(&[], &sorted)).len(), sorted.len());
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
        Request { user_id: None, history, n, exclude_seen: true, candidates, items: &[], diversity: 0.0 }
    }

    #[test]
    fn the_algorithm_catalog_is_what_train_accepts() {
        let all = algorithm_catalog();
        assert_eq!(all.iter().map(|a| a.name).collect::<Vec<_>>(), REGISTRY.iter().map(|r| r.name).collect::<Vec<_>>());
        assert_eq!(all.len(), 16);
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
        assert_eq!(eff, json!({"k": 100, "similarity": "cosine", "shrink": 0.0, "min_support": 1, "weighting": "auto"}));
        // rating models take no weighting; bm25 has its own two params; members take none
        assert!(Spec::parse("biased_mf", &json!({"weighting": "log"})).is_err());
        let (_, eff) = Spec::parse("als", &json!({"weighting": "bm25"})).unwrap();
        assert_eq!((&eff["bm25_k1"], &eff["bm25_b"]), (&json!(100.0), &json!(0.8)));
        assert!(Spec::parse_member("als", &json!({"weighting": "log"})).is_err());
    }

    #[test]
    fn dislikes_are_never_recommended_and_counts_are_weighted() {
        // exclude_seen off: a liked item may come back, a disliked one never does
        for alg in ["item_knn", "ease", "slim", "rp3beta", "als", "popularity"] {
            let m = fit(alg, json!({}));
            let all = |history: &[(i64, f32)]| m.rec(&Request { exclude_seen: false, ..req(history, 5, None) });
            assert!(all(&[(10, 1.0)]).iter().any(|p| p.0 == 10), "{alg}");
            assert!(!all(&[(10, -1.0), (20, 1.0)]).iter().any(|p| p.0 == 10), "{alg}");
        }
        // play counts: auto is log2(1 + count), stored with the model, applied to histories
        let counts = Interactions::from_triplets(&[1, 1, 2, 2, 3], &[10, 20, 10, 30, 30], &[1.0, 3000.0, 2.0, 1.0, 7.0]).unwrap();
        for scheme in ["auto", "bm25", "tfidf"] {
            let m = Spec::parse("item_knn", &json!({"weighting": scheme})).unwrap().0.fit(&counts, DeviceChoice::Cpu, &pool(), &mut NoProgress).unwrap();
            assert!(!m.weighting.is_identity(), "{scheme}");
            assert_eq!(Model::decode(&m.encode().unwrap()).unwrap(), m, "{scheme}");
            let h = m.known_history(&[(20, 3000.0), (10, 1.0)]);
            assert!(h[1].1 < 3000.0 / 10.0, "{scheme}: {h:?}");
        }
        let m = Spec::parse("item_knn", &json!({})).unwrap().0.fit(&counts, DeviceChoice::Cpu, &pool(), &mut NoProgress).unwrap();
        assert_eq!(m.known_history(&[(20, 3000.0), (10, 1.0)]), vec![(0, 1.0), (1, 3001f32.log2())]);
        // only dislikes: the models that train on the other rows say so; ALS learns from them
        let dislikes = Interactions::from_triplets(&[1, 2], &[10, 20], &[-1.0, -2.0]).unwrap();
        let e = Spec::parse("ease", &json!({})).unwrap().0.fit(&dislikes, DeviceChoice::Cpu, &pool(), &mut NoProgress).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidParameter, "{e:?}");
        assert!(Spec::parse("als", &json!({})).unwrap().0.fit(&dislikes, DeviceChoice::Cpu, &pool(), &mut NoProgress).is_ok());
        // binary data is not weighted (and so trains as before)
        assert!(fit("item_knn", json!({})).weighting.is_identity());
    }

    #[test]
    fn diversity_re_ranks_by_maximal_marginal_relevance() {
        // Two tight clusters: {1, 2, 3} (co-liked by many) and {7, 8} (co-liked by a few). A user
        // with 1 and 7: by score, 2 and 3 (cluster A) come first; with diversity, 8 moves up.
        let mut u = Vec::new();
        let mut i = Vec::new();
        for user in 0..20 {
            for item in [1, 2, 3] {
                u.push(user);
                i.push(item);
            }
            if user < 4 {
                for item in [7, 8] {
                    u.push(100 + user);
                    i.push(item);
                }
            }
        }
        let data = Interactions::from_triplets(&u, &i, &vec![1.0; u.len()]).unwrap();
        let m = Spec::parse("item_knn", &json!({})).unwrap().0.fit(&data, DeviceChoice::Cpu, &pool(), &mut NoProgress).unwrap();
        let history = [(1, 1.0), (7, 1.0)];
        let at = |lambda: f32| m.rec(&Request { diversity: lambda, ..req(&history, 2, None) }).iter().map(|p| p.0).collect::<Vec<_>>();
        assert_eq!(at(0.0), vec![2, 3], "2 and 3 score as high as 8 and come first by id");
        assert_eq!(at(0.6), vec![2, 8], "the second pick leaves cluster A");
        assert!(m.recommend(&Request { diversity: 1.5, ..req(&history, 2, None) }).is_err());
        assert!(m.recommend(&Request { diversity: 0.5, ..req(&history, 1001, None) }).is_err());
        assert_eq!(m.recommend(&Request { diversity: 0.5, ..req(&history, 1000, None) }).unwrap().len(), 3);
        // a model with no item similarity says so (0A000)
        let e = fit("popularity", json!({})).recommend(&Request { diversity: 0.3, ..req(&history, 2, None) });
        assert!(e.is_ok(), "the popularity answer places no one, so nothing to diversify");
        let ncf = fit("ncf", json!({"epochs": 1}));
        let e = ncf.recommend(&Request { user_id: Some(1), diversity: 0.3, ..req(&[(10, 1.0), (20, 1.0)], 2, None) }).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unsupported);
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
        let all = Request { user_id: None, history: &[(10, 1.0)], n: 10, exclude_seen: false, candidates: Some(&[10]), items: &[], diversity: 0.0 };
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
        assert_eq!(m.similar_items(10, 5, None).unwrap(), vec![(20, 1.0)]);
        assert!(m.similar_items(999, 5, None).unwrap().is_empty());
        let lists = m.item_neighbors().unwrap();
        assert_eq!((lists.ids.len(), lists.indptr.len(), lists.neighbors.len()), (5, 6, 5));
        assert_eq!((lists.ids[0], lists.neighbors[0], lists.scores[0]), (10, 20, 1.0));
        let p = fit("popularity", json!({}));
        assert_eq!(p.similar_items(10, 5, None).unwrap_err().kind, ErrorKind::Unsupported);
        assert!(p.item_neighbors().is_none());
        // A capability a model does not have is 0A000 for every item or user, known or not.
        let users = fit("user_knn", json!({}));
        for item in [10, 999] {
            assert_eq!(users.similar_items(item, 5, None).unwrap_err().kind, ErrorKind::Unsupported);
        }
        assert_eq!(p.similar_users(1, 5).unwrap_err().kind, ErrorKind::Unsupported);
        assert!(!users.similar_users(1, 5).unwrap().is_empty());
        let none = fit("hybrid", json!({"members": [{"algorithm": "popularity"}, {"algorithm": "user_knn"}]}));
        assert!(none.similar_items(10, 5, None).unwrap_err().hint.unwrap().contains("add an item_knn"));
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
        let got = tower.rec(&Request { user_id: None, history: &[(20, 1.0)], n: 10, exclude_seen: true, candidates: None, items: &items, diversity: 0.0 });
        assert_eq!(got.len(), 5);
        assert!(got.iter().any(|p| p.0 == 60) && !got.iter().any(|p| p.0 == 20));
        let content = Spec::parse("content", &json!({})).unwrap().0.fit(&texts, DeviceChoice::Cpu, &pool(), &mut NoProgress).unwrap();
        // history {20: "red apple"}: 10 ("red") is reached, cold 60 ("red apple pie") ranks first
        let got = content.rec(&Request { user_id: None, history: &[(20, 1.0)], n: 2, exclude_seen: true, candidates: None, items: &items, diversity: 0.0 });
        assert_eq!(got[0].0, 60);
        assert_eq!(got[1].0, 10);
        assert_eq!(content.explain(None, &[(20, 1.0), (30, 1.0)], 10, 5).unwrap().iter().map(|p| p.0).collect::<Vec<_>>(), vec![20]);
        // similar items of an item added after training, from its text: 20 ("red apple") first
        let similar = content.similar_items(60, 2, Some("red apple pie")).unwrap();
        assert_eq!(similar.iter().map(|p| p.0).collect::<Vec<_>>(), vec![20, 10]);
        assert!(content.similar_items(60, 2, None).unwrap().is_empty());
        for m in others.into_iter().chain(factor_models).chain([tower, content]) {
            let bytes = m.encode().unwrap();
            assert_eq!(Model::decode(&bytes).unwrap(), m);
        }
        assert_eq!(Model::decode(b"garbage garbage garbage").unwrap_err().kind, ErrorKind::Corrupt);
        // Matrices that disagree with their shapes are an error when written, never a file.
        let mut bad = fit("als", json!({"factors": 3, "iterations": 1}));
        if let Some(f) = bad.algorithm.as_any_mut().downcast_mut::<Factors>() {
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
        assert_eq!(back, Model { params: params.clone(), ..als });
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
        let inner = h.algorithm.as_any().downcast_ref::<Hybrid>().expect("a hybrid");
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
        assert_eq!(h.similar_items(10, 1, None).unwrap()[0].0, 20);
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
            let recs = reasons(&m, &Request { user_id: Some(1), history: &history, n: 3, exclude_seen: true, candidates: None, items: &[], diversity: 0.0 });
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
        let recs = reasons(&c, &Request { user_id: None, history: &[(10, 1.0)], n: 2, exclude_seen: true, candidates: None, items: &items, diversity: 0.0 });
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
