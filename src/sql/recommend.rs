//! Serving: recsys.recommend and recsys.similar_items. The user's history is read from the live
//! source table at call time; the decoded model comes from the per-backend cache.

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;

use crate::engine::model::Request;
use crate::sql::cache;
use crate::sql::catalog;
use crate::sql::errors::{positive_n, required};
use crate::sql::source::Source;

#[pg_extern(stable)]
fn recommend(
    user_id: Option<i64>,
    n: default!(Option<i32>, 10),
    model: default!(Option<&str>, "NULL"),
    exclude_seen: default!(Option<bool>, true),
    candidates: default!(Option<Vec<Option<i64>>>, "NULL"),
) -> Result<TableIterator<'static, (name!(item_id, i64), name!(score, f32), name!(rank, i32))>, ErrorReport> {
    let n = positive_n(n)?;
    let exclude_seen = required(exclude_seen, "exclude_seen")?;
    let row = catalog::resolve(model)?;
    // Like a STRICT function: no user, no rows (checked after the model, so a bad name still errors).
    let Some(user_id) = user_id else { return Ok(TableIterator::new(Vec::new())) };
    let fitted = cache::get(&row)?;
    let source = Source::from_catalog(row.source.clone(), &row.columns)?;
    let history = source.history(user_id)?;
    // NULL candidates inside the array match nothing, as in `item_id IN (...)`.
    let candidates: Option<Vec<i64>> = candidates.map(|c| c.into_iter().flatten().collect());
    let recs = fitted.recommend(&Request { user_id: Some(user_id), history: &history, n, exclude_seen, candidates: candidates.as_deref() });
    Ok(TableIterator::new(recs.into_iter().enumerate().map(|(r, (item, score))| (item, score, r as i32 + 1))))
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
    Ok(TableIterator::new(fitted.similar_items(item_id, n)?))
}
