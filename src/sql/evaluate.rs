//! recsys.evaluate: one read of the training source and one of the test table, then every test
//! user is scored in parallel in the engine; the figures are also stored in recsys.models.metrics.

use std::time::Instant;

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use pgrx::{JsonB, PgRelation};
use serde_json::json;

use crate::engine::metrics::{evaluate_top_n, rating_error};
use crate::engine::{ErrorKind, RecsysError};
use crate::sql::errors::{required, spi};
use crate::sql::source::Source;
use crate::sql::train::Interruptible;
use crate::sql::{cache, catalog, gucs};

#[pg_extern(volatile)]
fn evaluate(
    model: Option<&str>,
    test: Option<PgRelation>,
    k: default!(Option<i32>, 10),
) -> Result<TableIterator<'static, (name!(metric, String), name!(value, f64))>, ErrorReport> {
    let test = required(test, "test")?;
    let k = required(k, "k")?;
    if k < 1 {
        return Err(RecsysError::invalid(format!("k must be at least 1, got {k}")).into());
    }
    let row = catalog::resolve(model)?;
    let fitted = cache::get(&row)?;
    let source = Source::from_catalog(row.source.clone(), &row.columns)?;
    // A rating model is also scored on the test table's ratings (same rating column name).
    let rating_model = fitted.predicts_ratings();
    let rating_column = if rating_model { source.rating_column.as_deref() } else { None };
    let test_source = Source::resolve(&test, &source.user_column, &source.item_column, rating_column, None)?;
    // The training rows are the model's: read as its owner (the test table is the caller's).
    let (train, _) = crate::sql::access::as_model_owner(&row.name, row.owner, || source.read())?;
    let (held_out, _) = test_source.read()?;
    let test_users: Vec<(i64, Vec<i64>)> = (0..held_out.n_users())
        .map(|u| {
            let (cols, _) = held_out.matrix.row(u);
            (held_out.user_ids[u], cols.iter().map(|&i| held_out.item_ids[i as usize]).collect())
        })
        .collect();
    let threads = gucs::threads();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| RecsysError::new(ErrorKind::TooLarge, format!("cannot start {threads} threads: {e}")))?;
    let started = Instant::now();
    // A model that encodes item text also ranks the items table's untrained items, as recommend does.
    let items = crate::sql::recommend::item_texts(&row, &fitted, &source, false)?;
    let m = evaluate_top_n(&fitted, &train, &test_users, &items, k as usize, &pool, &mut Interruptible::new())?;
    let errors = if rating_model { Some(rating_error(&fitted, &train, &held_out, &pool, &mut Interruptible::new())?) } else { None };
    let seconds = started.elapsed().as_secs_f64();

    let mut rows: Vec<(String, f64)> = vec![
        (format!("precision@{k}"), m.precision),
        (format!("recall@{k}"), m.recall),
        (format!("ndcg@{k}"), m.ndcg),
        (format!("map@{k}"), m.map),
        (format!("hitrate@{k}"), m.hitrate),
        (format!("coverage@{k}"), m.coverage),
        ("users".to_string(), m.users as f64),
    ];
    if let Some(e) = errors {
        rows.extend([("rmse".to_string(), e.rmse), ("mae".to_string(), e.mae), ("ratings".to_string(), e.ratings as f64)]);
    }
    let mut stored = serde_json::Map::new();
    rows.iter().for_each(|(name, v)| {
        stored.insert(name.clone(), json!(v));
    });
    stored.insert("test".into(), json!(test_source.relation));
    stored.insert("engine_seconds".into(), json!(seconds));
    // The caller can see the model (resolve ran as the caller), so it may record its metrics —
    // except in a read-only transaction (a hot standby's, or SET transaction_read_only), where
    // evaluate serves like any read.
    // SAFETY: reads a backend global.
    if unsafe { pg_sys::XactReadOnly } {
        pgrx::notice!("pg_recsys: read-only transaction: the metrics are not stored in recsys.models");
    } else {
        crate::sql::access::as_catalog_owner(|| {
            Spi::run_with_args(
                "UPDATE recsys.models SET metrics = metrics || $2 WHERE id = $1",
                &[row.id.into(), JsonB(serde_json::Value::Object(stored)).into()],
            )
            .map_err(spi)
        })?;
    }
    pgrx::notice!("pg_recsys: evaluated {} users in {:.3} s of engine time", m.users, seconds);
    Ok(TableIterator::new(rows))
}
