//! Models in and out of the database as files: `recsys.export_model` returns a version's model
//! file (safetensors, see `engine::format`), `recsys.import_model` stores one as a new version
//! of a model over a live behaviour table, as `recsys.train` would have.

use std::time::Instant;

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use pgrx::PgRelation;

use crate::engine::format;
use crate::engine::legacy;
use crate::engine::model::{Model, Spec};
use crate::engine::{ErrorKind, RecsysError};
use crate::sql::catalog::{self, NewVersion};
use crate::sql::errors::{required, SqlResult};
use crate::sql::gucs;
use crate::sql::train::{read_for, record_times, take_fallback};

#[pg_extern(stable, parallel_safe)]
fn export_model(model: Option<&str>, version: default!(Option<i32>, "NULL")) -> Result<Vec<u8>, ErrorReport> {
    let model = required(model, "model")?;
    let row = match version {
        Some(v) => catalog::version_row(model, v)?,
        None => catalog::resolve(Some(model))?,
    };
    let bytes = catalog::stored_file(&row)?;
    if !legacy::is_legacy(&bytes) {
        return Ok(bytes);
    }
    // Stored before 0.4.0: written out in the current format, with the catalog's params.
    let old = Model::decode(&bytes).map_err(|e| e.with_detail(format!("model \"{}\" version {}", row.name, row.version)))?;
    Ok(Model { params: row.params.clone(), ..old }.encode()?)
}

#[allow(clippy::too_many_arguments)]
#[pg_extern(volatile)]
fn import_model(
    model: Option<&str>,
    file: Option<&[u8]>,
    source: Option<PgRelation>,
    user_column: default!(Option<&str>, "'user_id'"),
    item_column: default!(Option<&str>, "'item_id'"),
    rating_column: default!(Option<&str>, "NULL"),
    time_column: default!(Option<&str>, "NULL"),
    items: default!(Option<PgRelation>, "NULL"),
    item_text: default!(Option<&str>, "NULL"),
) -> Result<TableIterator<'static, (name!(model, String), name!(version, i32), name!(algorithm, String), name!(users, i64), name!(items, i64), name!(interactions, i64), name!(seconds, f64))>, ErrorReport> {
    crate::sql::access::check_writable(c"recsys.import_model");
    let started = Instant::now();
    let name = required(model, "model")?;
    let file = required(file, "file")?;
    let source = required(source, "source")?;
    // Decoding holds the file and the model: refuse what the administrator's cap does not allow.
    if file.len().saturating_mul(2) > gucs::max_memory_bytes() {
        return Err(gucs::over_memory_cap("importing a model", file.len() as u128 * 2, &format!("for a {} byte file", file.len())).into());
    }
    let (algorithm, mut params) = header(file)?;
    let fallback = take_fallback(name, &mut params)?;
    let (spec, mut effective) = Spec::parse(&algorithm, &params)
        .map_err(|e| RecsysError::invalid(format!("cannot import the model file: its params do not parse: {}", e.message)))?;
    if let (Some(f), Some(e)) = (fallback, effective.as_object_mut()) {
        e.insert("fallback".into(), f.into());
    }
    let (source, data) = read_for(name, &algorithm, &spec, &source, user_column, item_column, rating_column, time_column, items, item_text)?;
    let read_seconds = started.elapsed().as_secs_f64();
    let m = Model::import(file, &spec, effective.clone(), &data).map_err(unreadable)?;
    let (users, interactions) = (data.n_users() as i64, data.nnz() as i64);
    drop(data);
    let writing = Instant::now();
    let version = catalog::save(&NewVersion {
        name,
        algorithm: &algorithm,
        params: effective,
        source: &source,
        users,
        items: m.n_items() as i64,
        interactions,
        fit_seconds: 0.0,
        model: &m,
    })?;
    let seconds = record_times(name, version, started, read_seconds, writing)?;
    Ok(TableIterator::once((name.to_string(), version, algorithm, users, m.n_items() as i64, interactions, seconds)))
}

/// The algorithm and params a file names (a version-1 file: its algorithm, default params).
fn header(file: &[u8]) -> SqlResult<(String, serde_json::Value)> {
    if legacy::is_legacy(file) {
        let m = Model::decode(file).map_err(unreadable)?;
        return Ok((m.algorithm_name().to_string(), serde_json::Value::Null));
    }
    let (_, h) = format::open(file).map_err(unreadable)?;
    Ok((h.algorithm, h.params))
}

/// A file the caller gave that does not read is their bad input (22023), not stored data gone bad.
fn unreadable(e: RecsysError) -> RecsysError {
    match e.kind {
        ErrorKind::Corrupt => RecsysError::invalid(format!("cannot import the model file: {}", e.message.trim_start_matches("stored model is corrupt: "))),
        _ => e,
    }
}
