//! recsys.train: read the behaviour table, fit in the engine on a per-call thread pool (workers
//! never touch PostgreSQL), and write a new deployed version in the caller's transaction.

use std::time::Instant;

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use pgrx::PgRelation;
use pgrx::JsonB;

use crate::engine::interactions::Interactions;
use crate::engine::model::{Model, Spec};
use crate::engine::{ErrorKind, Progress, RecsysError};
use crate::sql::catalog::{self, NewVersion};
use crate::sql::errors::{required, SqlResult};
use crate::sql::gucs;
use crate::sql::progress;
use crate::sql::source::Source;

/// Called by the fit on the backend thread: between chunks, honour query cancel and
/// statement_timeout; after each iteration or epoch, also report progress as a NOTICE.
/// Both also go to `recsys.progress` (chunks until the first iteration, then iterations).
pub(crate) struct Interruptible {
    started: Instant,
    epochs: bool,
}

impl Interruptible {
    pub(crate) fn new() -> Self {
        Interruptible { started: Instant::now(), epochs: false }
    }
}

impl Progress for Interruptible {
    fn step(&mut self, done: usize, total: usize) -> crate::engine::Result<()> {
        pgrx::check_for_interrupts!();
        if !self.epochs {
            progress::step(done, total);
        }
        Ok(())
    }

    fn epoch(&mut self, algorithm: &str, done: usize, total: usize, metric: &str, value: f64) -> crate::engine::Result<()> {
        pgrx::check_for_interrupts!();
        self.epochs = true;
        progress::step(done, total);
        progress::loss(metric, value);
        let elapsed = self.started.elapsed().as_secs_f64();
        let left = elapsed / done.max(1) as f64 * total.saturating_sub(done) as f64;
        pgrx::notice!(
            "pg_recsys: {algorithm} iteration {done}/{total}: {metric} {value:.6}, {elapsed:.1} s elapsed, about {left:.1} s left"
        );
        Ok(())
    }

    fn note(&mut self, text: &str) {
        pgrx::notice!("pg_recsys: {text}");
    }
}

/// Checks shared by train and tune, before any data is read.
pub(crate) fn check_request(
    name: &str,
    algorithm: &str,
    spec: &Spec,
    rating_column: Option<&str>,
    time_column: Option<&str>,
) -> SqlResult<()> {
    if name.is_empty() || name.len() > 200 {
        return Err(RecsysError::invalid("model name must have 1 to 200 characters").into());
    }
    if spec.needs_time() && time_column.is_none() {
        return Err(RecsysError::invalid(format!("algorithm \"{algorithm}\" learns from the order of events and needs a time column"))
            .with_hint("pass time_column => 'your_timestamp_column'")
            .into());
    }
    if spec.is_neural() {
        // recsys.device is checked (and a GPU opened) before any data is read.
        gucs::device()?.device()?;
    }
    if let (Some(why), None) = (spec.rating_column_needed(), rating_column) {
        return Err(RecsysError::invalid(format!("algorithm \"{algorithm}\" {why} and needs a rating column"))
            .with_hint("pass rating_column => 'rating'; for implicit feedback use item_knn (cosine), user_knn, ease, als or bpr")
            .into());
    }
    Ok(())
}

/// The `fallback` param (any algorithm): the model that answers for users this one cannot place.
/// It must be deployed now, and not be the model itself.
pub(crate) fn take_fallback(name: &str, params: &mut serde_json::Value) -> SqlResult<Option<String>> {
    let Some(value) = params.as_object_mut().and_then(|o| o.remove("fallback")) else { return Ok(None) };
    match value.as_str() {
        Some(f) if f == name => Err(RecsysError::invalid(format!("model \"{name}\" cannot be its own fallback")).into()),
        Some(f) => {
            catalog::resolve(Some(f))?;
            Ok(Some(f.to_string()))
        }
        None if value.is_null() => Ok(None),
        None => Err(RecsysError::invalid(format!("parameter \"fallback\" must be a model name, got {value}")).into()),
    }
}

/// Sources at least this large get a WARNING at train time when no index leads with the user
/// column (serving reads each user's rows; a small table is scanned quickly either way).
const INDEX_WARNING_ROWS: u64 = 10_000;

/// Read the whole source (with a NOTICE for skipped rows).
pub(crate) fn read_source(source: &Source) -> SqlResult<Interactions> {
    let (data, stats) = source.read()?;
    if stats.rows >= INDEX_WARNING_ROWS && !source.has_user_index()? {
        pgrx::pg_sys::panic::ErrorReport::new(
            pgrx::PgSqlErrorCode::ERRCODE_WARNING,
            format!(
                "pg_recsys: {} has {} rows and no index leading with {}: every recommend call will scan the whole table for the user's rows",
                source.relation, stats.rows, source.user_column
            ),
            "pg_recsys",
        )
        .set_hint(format!("CREATE INDEX ON {} ({})", source.relation, pgrx::spi::quote_identifier(&source.user_column)))
        .report(pgrx::PgLogLevel::WARNING);
    }
    if stats.skipped > 0 {
        pgrx::notice!(
            "pg_recsys: skipped {} of {} rows of {} with a NULL user, item or rating",
            stats.skipped,
            stats.rows,
            source.relation
        );
    }
    Ok(data)
}

/// The per-call training pool, after refusing a fit whose memory estimate is over the cap.
pub(crate) fn training_pool(algorithm: &str, spec: &Spec, data: &Interactions) -> SqlResult<rayon::ThreadPool> {
    let threads = gucs::threads();
    let needed = spec.memory_estimate(data, threads) + data.nnz() * 12;
    if needed > gucs::max_memory_bytes() {
        let how = format!("for {} users, {} items, {} interactions", data.n_users(), data.n_items(), data.nnz());
        return Err(gucs::over_memory_cap(&format!("training {algorithm}"), needed as u128, &how).into());
    }
    // Under the cap, but more than this machine has free now: ERROR 53200 before allocating,
    // rather than an allocation that aborts the backend or an out-of-memory kill later.
    crate::engine::memory::check_available(needed, &format!("training {algorithm}"))?;
    crate::engine::neural::serve_on_this_thread();
    Ok(rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| RecsysError::new(ErrorKind::TooLarge, format!("cannot start {threads} training threads: {e}")))?)
}

/// Fit on a checked pool (see `training_pool`) with progress and cancel; returns the model and
/// the fit's seconds.
pub(crate) fn fit(pool: &rayon::ThreadPool, spec: &Spec, data: &Interactions) -> SqlResult<(Model, f64)> {
    let started = Instant::now();
    let device = if spec.is_neural() { gucs::device()? } else { crate::engine::neural::DeviceChoice::Cpu };
    let fitted = spec.fit(data, device, pool, &mut Interruptible::new())?;
    Ok((fitted, started.elapsed().as_secs_f64()))
}

/// Fit on all of `data` and write the result as the new deployed version of `name`.
pub(crate) fn fit_and_save(
    name: &str,
    algorithm: &str,
    spec: &Spec,
    effective: serde_json::Value,
    source: &Source,
    data: Interactions,
    started: Instant,
) -> SqlResult<(i32, i64, i64, i64, f64)> {
    let read_seconds = started.elapsed().as_secs_f64();
    progress::phase("fit");
    let (mut fitted, fit_seconds) = fit(&training_pool(algorithm, spec, &data)?, spec, &data)?;
    // The model file carries its params (export_model, and anyone reading it with safetensors).
    fitted.params = effective.clone();
    let (users, items, interactions) = (data.n_users() as i64, data.n_items() as i64, data.nnz() as i64);
    drop(data);
    let writing = Instant::now();
    progress::phase("write");
    let version = catalog::save(&NewVersion {
        name,
        algorithm,
        params: effective,
        source,
        users,
        items,
        interactions,
        fit_seconds,
        model: &fitted,
    })?;
    let seconds = record_times(name, version, started, read_seconds, writing)?;
    Ok((version, users, items, interactions, seconds))
}

/// Where the time of a train or import went, and the backend's peak resident memory so far
/// (Linux), kept in the version's metrics; returns the whole call's seconds.
pub(crate) fn record_times(name: &str, version: i32, started: Instant, read_seconds: f64, writing: Instant) -> SqlResult<f64> {
    let peak_rss_mb = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok()))
        .map(|kb| kb / 1024.0);
    let write_seconds = writing.elapsed().as_secs_f64();
    // `seconds` is the whole call: reading, fitting and writing (this last update included).
    let seconds = started.elapsed().as_secs_f64();
    crate::sql::access::as_catalog_owner(|| {
        Spi::run_with_args(
            "UPDATE recsys.models SET seconds = $6, metrics = metrics || jsonb_build_object('read_seconds', $3::float8, \
             'write_seconds', $4::float8, 'peak_rss_mb', $5::float8) WHERE name = $1 AND version = $2",
            &[name.into(), version.into(), read_seconds.into(), write_seconds.into(), peak_rss_mb.into(), seconds.into()],
        )
        .map_err(crate::sql::errors::spi)
    })?;
    Ok(seconds)
}

/// The checked source of a train or an import, and its rows (with each trained item's text for
/// text models).
#[allow(clippy::too_many_arguments)]
pub(crate) fn read_for(
    name: &str,
    algorithm: &str,
    spec: &Spec,
    source: &PgRelation,
    user_column: Option<&str>,
    item_column: Option<&str>,
    rating_column: Option<&str>,
    time_column: Option<&str>,
    items: Option<PgRelation>,
    item_text: Option<&str>,
) -> SqlResult<(Source, Interactions)> {
    // Text models need an items table and its text; any other model may have one too, for the
    // item names of recommend's reasons.
    match (spec.needs_item_text(), &items, item_text) {
        (_, Some(_), Some(_)) | (false, None, None) => {}
        (true, _, _) => {
            return Err(RecsysError::invalid(format!("algorithm \"{algorithm}\" encodes item text and needs an items table"))
                .with_hint("pass items => 'items_table', item_text => 'text_column' (the items table has the item column too)")
                .into())
        }
        (false, _, _) => {
            return Err(RecsysError::invalid("items and item_text go together")
                .with_hint("pass both (item_text names the items, e.g. in recommend's reasons), or neither")
                .into())
        }
    }
    check_request(name, algorithm, spec, rating_column, time_column)?;
    let source = Source::resolve(
        source,
        required(user_column, "user_column")?,
        required(item_column, "item_column")?,
        rating_column,
        time_column,
    )?;
    let source = match (&items, item_text) {
        (Some(items), Some(text)) => source.with_items(items, text)?,
        _ => source,
    };
    // Read (and so check) the item_text expression before the behaviour table.
    let texts: Option<std::collections::HashMap<i64, String>> =
        if source.items.is_some() { Some(source.item_texts()?.into_iter().collect()) } else { None };
    let mut data = read_source(&source)?;
    if let Some(texts) = texts.filter(|_| spec.needs_item_text()) {
        // Each trained item's text, by item index; items missing from the items table have none.
        data.item_text = Some(data.item_ids.iter().map(|id| texts.get(id).cloned().unwrap_or_default()).collect());
    }
    Ok((source, data))
}

#[allow(clippy::too_many_arguments)]
#[pg_extern(volatile)]
fn train(
    model: Option<&str>,
    source: Option<PgRelation>,
    algorithm: default!(Option<&str>, "'ease'"),
    params: default!(Option<JsonB>, "'{}'"),
    user_column: default!(Option<&str>, "'user_id'"),
    item_column: default!(Option<&str>, "'item_id'"),
    rating_column: default!(Option<&str>, "NULL"),
    time_column: default!(Option<&str>, "NULL"),
    items: default!(Option<PgRelation>, "NULL"),
    item_text: default!(Option<&str>, "NULL"),
) -> Result<TableIterator<'static, (name!(model, String), name!(version, i32), name!(algorithm, String), name!(users, i64), name!(items, i64), name!(interactions, i64), name!(seconds, f64))>, ErrorReport> {
    let (version, users, n_items, interactions, seconds) =
        train_call(model, source, algorithm, params, user_column, item_column, rating_column, time_column, items, item_text)?;
    let (name, algorithm) = (required(model, "model")?, required(algorithm, "algorithm")?);
    Ok(TableIterator::once((name.to_string(), version, algorithm.to_string(), users, n_items, interactions, seconds)))
}

/// recsys.train's work, also run by a background job (`recsys.train_async`): returns the new
/// version, the users, items and interactions it learned from, and the call's seconds.
#[allow(clippy::too_many_arguments)]
pub(crate) fn train_call(
    model: Option<&str>,
    source: Option<PgRelation>,
    algorithm: Option<&str>,
    params: Option<JsonB>,
    user_column: Option<&str>,
    item_column: Option<&str>,
    rating_column: Option<&str>,
    time_column: Option<&str>,
    items: Option<PgRelation>,
    item_text: Option<&str>,
) -> SqlResult<(i32, i64, i64, i64, f64)> {
    crate::sql::access::check_writable(c"recsys.train");
    let started = Instant::now();
    let name = required(model, "model")?;
    let source = required(source, "source")?;
    let algorithm = required(algorithm, "algorithm")?;
    let _shown = progress::begin(name, algorithm, crate::sql::jobs::current());
    let mut params = params.map(|p| p.0).unwrap_or(serde_json::Value::Null);
    let fallback = take_fallback(name, &mut params)?;
    let (spec, mut effective) = Spec::parse(algorithm, &params)?;
    if let (Some(f), Some(e)) = (fallback, effective.as_object_mut()) {
        e.insert("fallback".into(), f.into());
    }
    let (source, data) = read_for(name, algorithm, &spec, &source, user_column, item_column, rating_column, time_column, items, item_text)?;
    fit_and_save(name, algorithm, &spec, effective, &source, data, started)
}
