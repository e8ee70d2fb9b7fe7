//! Serving: recsys.recommend, predict, explain, similar_items and similar_users. The user's
//! history is read from the live source table at call time; the decoded model comes from the
//! per-backend cache.

use std::collections::HashSet;
use std::rc::Rc;

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use pgrx::PgRelation;

use crate::engine::model::{Model, Request};
use crate::engine::RecsysError;
use crate::sql::access::{as_model_owner, check_reads_no_owner_code};
use crate::sql::cache;
use crate::sql::catalog::{self, ModelRow};
use crate::sql::errors::{positive_n, required, SqlResult};
use crate::sql::source::{qualified_name, Source};

/// The deployed model, its source and the user's current history (read as the model's owner).
fn with_history(row: &ModelRow, user_id: i64) -> SqlResult<(Rc<Model>, Source, Vec<(i64, f32)>)> {
    let fitted = cache::get(row)?;
    let source = Source::from_catalog(row.source.clone(), &row.columns)?;
    let history = as_model_owner(&row.name, row.owner, || source.history(user_id))?;
    Ok((fitted, source, history))
}

/// The items table's (item id, text) rows, read as the model's owner (its item_text expression is
/// the owner's SQL), for models that encode item text, and for reasons (which name items by their
/// text) of any model trained with an items table; empty otherwise. Without reasons, only the
/// rows of items the model was not trained on (all that scoring reads: `Request::items`).
/// Kept per backend while the items table does not change (`item_cache`).
pub(crate) fn item_texts(row: &ModelRow, fitted: &Model, source: &Source, for_reasons: bool) -> SqlResult<crate::sql::item_cache::Texts> {
    let Some(items) = source.items.as_deref().filter(|_| fitted.reads_item_text() || for_reasons) else {
        return Ok(Default::default());
    };
    let untrained_only = (!for_reasons).then_some(&fitted.item_ids[..]);
    as_model_owner(&row.name, row.owner, || {
        crate::sql::item_cache::texts(row, items, source.item_text_row_only != Some(false), untrained_only, || source.item_texts())
    })
}

/// How many fallback models one call may follow (a chain, never a cycle).
const MAX_FALLBACKS: usize = 3;

/// recsys.recommend as 0.1.0 to 0.4.0 declared it (8 arguments), kept under its old C symbol
/// so that an install not yet updated keeps serving with this library (no SQL of its own: the
/// current declaration is `recommend_with_diversity`'s).
#[allow(clippy::too_many_arguments)]
#[pg_extern(stable, sql = false)]
fn recommend(
    user_id: Option<i64>,
    n: Option<i32>,
    model: Option<&str>,
    exclude_seen: Option<bool>,
    candidates: Option<Vec<Option<i64>>>,
    filter: Option<&str>,
    items: Option<PgRelation>,
    with_reasons: Option<bool>,
) -> Result<TableIterator<'static, (name!(item_id, i64), name!(score, f32), name!(rank, i32), name!(reason, Option<String>))>, ErrorReport> {
    recommend_with_diversity(user_id, n, model, exclude_seen, candidates, filter, items, with_reasons, Some(0.0))
}

#[allow(clippy::too_many_arguments)]
#[pg_extern(stable, name = "recommend")]
fn recommend_with_diversity(
    user_id: Option<i64>,
    n: default!(Option<i32>, 10),
    model: default!(Option<&str>, "NULL"),
    exclude_seen: default!(Option<bool>, true),
    candidates: default!(Option<Vec<Option<i64>>>, "NULL"),
    filter: default!(Option<&str>, "NULL"),
    items: default!(Option<PgRelation>, "NULL"),
    with_reasons: default!(Option<bool>, false),
    diversity: default!(Option<f64>, 0.0),
) -> Result<TableIterator<'static, (name!(item_id, i64), name!(score, f32), name!(rank, i32), name!(reason, Option<String>))>, ErrorReport> {
    let n = positive_n(n)?;
    let diversity = required(diversity, "diversity")? as f32;
    let exclude_seen = required(exclude_seen, "exclude_seen")?;
    let with_reasons = required(with_reasons, "with_reasons")?;
    let mut row = catalog::resolve(model)?;
    // Like a STRICT function: no user, no rows (checked after the model, so a bad name still errors).
    let Some(user_id) = user_id else { return Ok(TableIterator::new(Vec::new())) };
    // NULL candidates inside the array match nothing, as in `item_id IN (...)`.
    let mut candidates: Option<Vec<i64>> = candidates.map(|c| c.into_iter().flatten().collect());
    let mut followed = vec![row.name.clone()];
    loop {
        let (fitted, source, history) = with_history(&row, user_id)?;
        if let Some(predicate) = filter {
            let table = match (&items, &source.items) {
                (Some(t), _) => qualified_name(t),
                // The caller's filter runs as the caller: over the model's own items table only
                // when reading that table runs none of its owner's code.
                (None, Some(t)) => {
                    check_reads_no_owner_code(t, &row.name, row.owner)?;
                    t.clone()
                }
                (None, None) => {
                    return Err(RecsysError::invalid(format!("a filter needs an items table, and model \"{}\" has none", row.name))
                        .with_hint("pass items => 'your_items_table' (keyed by the model's item column)")
                        .into())
                }
            };
            let allowed: HashSet<i64> = source.filtered_items(&table, predicate, user_id)?.into_iter().collect();
            candidates = Some(match candidates.take() {
                Some(c) => c.into_iter().filter(|i| allowed.contains(i)).collect(),
                None => allowed.into_iter().collect(),
            });
        }
        // Models that encode item text see the items table as it is now (new items included).
        let texts = item_texts(&row, &fitted, &source, with_reasons)?;
        let answer = fitted.answer(
            &Request { user_id: Some(user_id), history: &history, n, exclude_seen, candidates: candidates.as_deref(), items: &texts, diversity },
            with_reasons,
        )?;
        // A user this model cannot place goes to the model's fallback, when it names one.
        let fallback = row.params.get("fallback").and_then(|f| f.as_str()).map(str::to_string);
        match fallback {
            Some(next) if !answer.placed && !followed.contains(&next) && followed.len() <= MAX_FALLBACKS => {
                row = catalog::resolve(Some(&next))?;
                followed.push(next);
            }
            _ => {
                let rows = answer.rows.into_iter().enumerate().map(|(r, (item, score, why))| (item, score, r as i32 + 1, why));
                return Ok(TableIterator::new(rows.collect::<Vec<_>>()));
            }
        }
    }
}

/// The model's score for one (user, item): a rating clipped to the observed range for rating
/// models. NULL for an unknown item, or a user the model cannot place.
#[pg_extern(stable)]
fn predict(user_id: Option<i64>, item_id: Option<i64>, model: default!(Option<&str>, "NULL")) -> Result<Option<f32>, ErrorReport> {
    let row = catalog::resolve(model)?;
    let (Some(user_id), Some(item_id)) = (user_id, item_id) else { return Ok(None) };
    let (fitted, _, history) = with_history(&row, user_id)?;
    Ok(fitted.predict(Some(user_id), &history, item_id)?)
}

/// Which of the user's items make `item_id` score as it does, largest contribution first.
#[pg_extern(stable)]
fn explain(
    user_id: Option<i64>,
    item_id: Option<i64>,
    model: default!(Option<&str>, "NULL"),
    n: default!(Option<i32>, 10),
) -> Result<TableIterator<'static, (name!(because_item_id, i64), name!(contribution, f32))>, ErrorReport> {
    let n = positive_n(n)?;
    let row = catalog::resolve(model)?;
    let (Some(user_id), Some(item_id)) = (user_id, item_id) else { return Ok(TableIterator::new(Vec::new())) };
    let (fitted, _, history) = with_history(&row, user_id)?;
    Ok(TableIterator::new(fitted.explain(Some(user_id), &history, item_id, n)?))
}

#[pg_extern(stable)]
fn similar_items(
    item_id: Option<i64>,
    n: default!(Option<i32>, 10),
    model: default!(Option<&str>, "NULL"),
) -> Result<TableIterator<'static, (name!(item_id, i64), name!(score, f32))>, ErrorReport> {
    let n = positive_n(n)?;
    let row = catalog::resolve(model)?;
    let fitted = cache::get(&row)?;
    let Some(item_id) = item_id else { return Ok(TableIterator::new(Vec::new())) };
    // An item added to the items table after training: text models answer from its text.
    let text = if fitted.reads_item_text() && crate::engine::interactions::index_of(&fitted.item_ids, item_id).is_none() {
        let source = Source::from_catalog(row.source.clone(), &row.columns)?;
        item_texts(&row, &fitted, &source, false)?.iter().find(|p| p.0 == item_id).map(|p| p.1.clone())
    } else {
        None
    };
    Ok(TableIterator::new(fitted.similar_items(item_id, n, text.as_deref())?))
}

#[pg_extern(stable)]
fn similar_users(
    user_id: Option<i64>,
    n: default!(Option<i32>, 10),
    model: default!(Option<&str>, "NULL"),
) -> Result<TableIterator<'static, (name!(user_id, i64), name!(score, f32))>, ErrorReport> {
    let n = positive_n(n)?;
    let row = catalog::resolve(model)?;
    let fitted = cache::get(&row)?;
    let Some(user_id) = user_id else { return Ok(TableIterator::new(Vec::new())) };
    Ok(TableIterator::new(fitted.similar_users(user_id, n)?))
}
