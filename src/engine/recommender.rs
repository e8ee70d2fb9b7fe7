//! What every algorithm implements: a `Trainer` (its typed, validated params: what the fit needs,
//! its memory estimate, the fit) and a `Recommender` (the trained state: scoring, explaining,
//! similar items and users where it has them, its part of the model file). `model.rs` keeps what
//! is common to all — ranking, exclusion, candidates, the popularity fill, reasons, predict's and
//! explain's entry points — and the registry that names each algorithm once.
//!
//! A capability an algorithm does not have is the trait's default: an ERROR 0A000 (similar
//! items or users), or no contributions (explain), decided by the type.

use std::any::Any;
use std::fmt::Debug;

use crate::engine::factors::Factors;
use crate::engine::format::Out;
use crate::engine::interactions::Interactions;
use crate::engine::knn::{NeighborLists, Neighbors};
use crate::engine::model::{Model, Request, Scored};
use crate::engine::neural::DeviceChoice;
use crate::engine::{ErrorKind, Progress, RecsysError, Result};

/// A validated training request of one algorithm.
pub trait Trainer: Debug + Send + Sync {
    /// Rating-prediction models need a rating column.
    fn needs_ratings(&self) -> bool {
        false
    }

    /// Why this cannot train without a rating column (None: it can).
    fn rating_column_needed(&self) -> Option<&'static str> {
        self.needs_ratings().then_some("predicts ratings")
    }

    /// Learns from the time order of the rows.
    fn needs_time(&self) -> bool {
        false
    }

    /// Reads item text (an items table).
    fn needs_item_text(&self) -> bool {
        false
    }

    /// Trained with Candle (honours recsys.device).
    fn is_neural(&self) -> bool {
        false
    }

    /// Learns from negative values (dislikes): rating models (a low rating) and ALS (negative
    /// confidence). The others train on the rows of value 0 or more.
    fn uses_negative_weights(&self) -> bool {
        self.needs_ratings()
    }

    /// Bytes the fit will allocate, so the caller can refuse before allocating.
    fn memory_estimate(&self, data: &Interactions, threads: usize) -> usize;

    /// Fit on `pool`; neural models train on `device` (the others ignore it).
    fn fit(&self, data: &Interactions, device: DeviceChoice, pool: &rayon::ThreadPool, progress: &mut dyn Progress) -> Result<Box<dyn Recommender>>;

    /// Factor models: the fold-in settings (regularization, alpha) for factor matrices trained
    /// elsewhere (`Model::import`); None for every other model.
    fn fold_in(&self) -> Option<(f32, f32)> {
        None
    }
}

/// A trained algorithm as serving sees it. `m` is the model that holds it (its catalogue:
/// item ids and popularity); `history` is the request's known items by index, sorted.
pub trait Recommender: DynEq + Debug + Send + Sync {
    /// The algorithm's name, as `recsys.train` takes it.
    fn name(&self) -> &'static str;

    /// Whether the model scores a request none of whose items it was trained on (text models:
    /// untrained items by their text; rating kNN: the baselines). Otherwise such a request gets
    /// the popularity answer without asking the model.
    fn scores_unknown_history(&self) -> bool {
        false
    }

    /// Every trained item's score for the request; None when the model cannot place the user
    /// (the popularity answer). A failure is an error, never a silent popularity answer.
    fn score(&self, m: &Model, req: &Request, history: &[(u32, f32)]) -> Result<Option<Scored>>;

    /// The model's score of item `i` for the request; None when it cannot place the user.
    fn predict(&self, m: &Model, req: &Request, history: &[(u32, f32)], i: usize) -> Result<Option<f32>> {
        if history.is_empty() && !self.scores_unknown_history() {
            return Ok(None);
        }
        Ok(self.score(m, req, history)?.map(|s| s.scores[i]))
    }

    /// For each target (an item index, None for an item the model does not know), the history
    /// items' parts of its score, (item index, part).
    fn explain_items(&self, m: &Model, req: &Request, history: &[(u32, f32)], targets: &[Option<usize>]) -> Result<Vec<Vec<(u32, f32)>>> {
        targets
            .iter()
            .map(|t| match t {
                Some(i) => self.contributions(m, req, history, *i),
                None => Ok(Vec::new()),
            })
            .collect()
    }

    /// Each known history item's part of item `i`'s score, for models whose score decomposes.
    fn contributions(&self, _m: &Model, _req: &Request, _history: &[(u32, f32)], _i: usize) -> Result<Vec<(u32, f32)>> {
        Ok(Vec::new())
    }

    /// The n items most similar to `item` (None: an item the model does not know, which has no
    /// similar items), most similar first.
    fn similar_items(&self, _m: &Model, _item: Option<usize>, _n: usize) -> Result<Vec<(u32, f32)>> {
        Err(unsupported("similar_items", self.name(), "train an item_knn or factor model"))
    }

    /// The n trained items most similar to an item the model was not trained on, from its
    /// text (content models); None for models that cannot.
    fn similar_to_text(&self, _text: &str, _n: usize) -> Option<Vec<(u32, f32)>> {
        None
    }

    /// The n users most similar to a user (empty for a user the model has not seen).
    fn similar_users(&self, _user_id: i64, _n: usize) -> Result<Vec<(i64, f32)>> {
        Err(unsupported("similar_users", self.name(), "train a factor model (svd, biased_mf, svdpp, als or bpr)"))
    }

    /// Stored top neighbours per item, for `recsys.item_neighbors`.
    fn item_neighbors(&self) -> Option<&Neighbors> {
        None
    }

    /// How similar each pair of `items` is, in [0, 1], row-major (|items|²), for diversity
    /// re-ranking; None when the model has no item similarity. Default: the neighbour table.
    fn pair_similarities(&self, items: &[u32]) -> Option<Vec<f32>> {
        self.item_neighbors().map(|nb| nb.pair_similarities(items))
    }

    /// The stored top similar users per user, for `recsys.user_neighbors`.
    fn user_neighbors(&self) -> Option<NeighborLists> {
        None
    }

    /// The factors, for `recsys.item_factors` / `recsys.user_factors`.
    fn factors(&self) -> Option<&Factors> {
        None
    }

    /// Reads the live items table when serving (text models encode untrained items).
    fn reads_item_text(&self) -> bool {
        false
    }

    /// Scores a history with negative values (dislikes) in it; the others are served the
    /// history's other rows, as they were trained.
    fn uses_negative_weights(&self) -> bool {
        self.predicts_ratings()
    }

    /// Scores are predicted ratings (clipped to the observed range).
    fn predicts_ratings(&self) -> bool {
        false
    }

    /// This model's own reason in words for each recommended item where it has one (content:
    /// the words shared with a history item); None or a None entry: the common reasons.
    fn reasons(&self, _m: &Model, _req: &Request, _recs: &[(i64, f32)]) -> Result<Option<Vec<Option<String>>>> {
        Ok(None)
    }

    /// Its arrays and state in the model file (see `format`).
    fn store<'a>(&'a self, out: &mut Out<'_, 'a>) -> Result<()>;
}

/// "what is not available for name models" (0A000) with a hint.
pub fn unsupported(what: &str, name: &str, hint: &str) -> RecsysError {
    RecsysError::new(ErrorKind::Unsupported, format!("{what} is not available for {name} models")).with_hint(hint.to_string())
}

/// Equality and downcasting of trained models behind `dyn Recommender` (tests, hybrids).
pub trait DynEq {
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
    fn dyn_eq(&self, other: &dyn Any) -> bool;
}

impl<T: PartialEq + Any> DynEq for T {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn dyn_eq(&self, other: &dyn Any) -> bool {
        other.downcast_ref::<T>().is_some_and(|o| o == self)
    }
}
