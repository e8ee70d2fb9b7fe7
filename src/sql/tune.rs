//! recsys.tune: a grid search on a seeded validation split of the training table, then the best
//! point retrained on all of it and deployed as a new version.

use std::time::Instant;

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use pgrx::{JsonB, PgRelation};

use crate::engine::model::Spec;
use crate::engine::split::check_fraction;
use crate::engine::tune::{grid_points, holdout, score, Metric};
use crate::engine::{ErrorKind, RecsysError};
use crate::sql::errors::required;
use crate::sql::source::Source;
use crate::sql::train::{check_request, fit, fit_and_save, read_source, training_pool, Interruptible};

#[allow(clippy::too_many_arguments)]
#[pg_extern(volatile)]
fn tune(
    model: Option<&str>,
    source: Option<PgRelation>,
    algorithm: Option<&str>,
    grid: Option<JsonB>,
    metric: default!(Option<&str>, "'ndcg'"),
    k: default!(Option<i32>, 10),
    user_column: default!(Option<&str>, "'user_id'"),
    item_column: default!(Option<&str>, "'item_id'"),
    rating_column: default!(Option<&str>, "NULL"),
    validation_fraction: default!(Option<f64>, 0.2),
    seed: default!(Option<i64>, 42),
) -> Result<TableIterator<'static, (name!(params, JsonB), name!(metric, String), name!(value, f64), name!(best, bool))>, ErrorReport> {
    let started = Instant::now();
    let name = required(model, "model")?;
    let relation = required(source, "source")?;
    let algorithm = required(algorithm, "algorithm")?;
    let metric = Metric::parse(required(metric, "metric")?)?;
    let k = required(k, "k")?;
    if k < 1 {
        return Err(RecsysError::invalid(format!("k must be at least 1, got {k}")).into());
    }
    let fraction = required(validation_fraction, "validation_fraction")?;
    check_fraction(fraction)?;
    let seed = required(seed, "seed")?;
    // Every point is checked before any data is read.
    let points: Vec<(Spec, serde_json::Value)> = grid_points(&required(grid, "grid")?.0)?
        .iter()
        .map(|p| Spec::parse(algorithm, p))
        .collect::<Result<_, _>>()?;
    if points[0].0.needs_time() {
        return Err(RecsysError::new(ErrorKind::Unsupported, format!("recsys.tune does not tune {algorithm} models"))
            .with_hint("its validation split ignores time order; call recsys.train with explicit params")
            .into());
    }
    check_request(name, algorithm, &points[0].0, rating_column, None)?;
    if metric.is_error() && !points[0].0.needs_ratings() {
        return Err(RecsysError::invalid(format!("metric {} needs a rating model (biased_mf, svdpp, or item_knn with a rating similarity)", metric.label(0)))
            .with_hint("tune top-N models on ndcg, precision, recall, map, hitrate or coverage")
            .into());
    }
    let source = Source::resolve(
        &relation,
        required(user_column, "user_column")?,
        required(item_column, "item_column")?,
        rating_column,
        None,
    )?;
    let data = read_source(&source)?;
    let (train, valid) = holdout(&data, fraction, seed)?;
    let label = metric.label(k as usize);
    let mut scored: Vec<(serde_json::Value, f64)> = Vec::with_capacity(points.len());
    for (spec, effective) in &points {
        let pool = training_pool(algorithm, spec, &train)?;
        let (fitted, seconds) = fit(&pool, spec, &train)?;
        let value = score(&fitted, &train, &valid, metric, k as usize, &pool, &mut Interruptible::new())?;
        pgrx::notice!("pg_recsys: tune {algorithm} {effective}: {label} {value:.6} (fit {seconds:.2} s)");
        scored.push((effective.clone(), value));
    }
    let best = (0..scored.len())
        .reduce(|b, i| if metric.better(scored[i].1, scored[b].1) { i } else { b })
        .unwrap_or(0);
    let (spec, effective) = &points[best];
    fit_and_save(name, algorithm, spec, effective.clone(), &source, data, started)?;
    Ok(TableIterator::new(
        scored.into_iter().enumerate().map(move |(i, (p, v))| (JsonB(p), label.clone(), v, i == best)),
    ))
}
