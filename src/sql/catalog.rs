//! The model store: `recsys.models` (one row per version) and `recsys.model_blobs` (the encoded
//! model, chunked), plus the user-facing `recsys.item_neighbors`. All writes happen in the
//! caller's transaction, so a failed or cancelled train leaves nothing behind.

use pgrx::prelude::*;
use pgrx::pg_sys::panic::ErrorReportable;
use pgrx::JsonB;
use serde_json::Value;

use crate::engine::knn::NeighborLists;
use crate::engine::model::Model;
use crate::engine::{ErrorKind, RecsysError};
use crate::sql::access;
use crate::sql::errors::{spi, SqlResult};
use crate::sql::gucs;
use crate::sql::source::Source;

const BLOB_PART_BYTES: usize = 4 << 20;
/// Neighbours per INSERT when writing neighbour lists.
const NEIGHBOR_BATCH: usize = 1 << 20;
/// Floats per INSERT when writing factor tables.
const FACTOR_BATCH_FLOATS: usize = 1 << 20;

/// The catalog row of a deployed model version.
#[derive(Clone, Debug)]
pub struct ModelRow {
    pub id: i64,
    pub name: String,
    pub version: i32,
    /// Distinguishes a version from one that reused its id after DROP/CREATE EXTENSION.
    pub trained_at: String,
    pub source: String,
    pub columns: Value,
    /// The effective params; serving reads `fallback` from them.
    pub params: Value,
    /// The role that owns the model (None: dropped since): what the model carries runs as it.
    pub owner: Option<pg_sys::Oid>,
}

/// What a training run produced, to be written as a new version.
pub struct NewVersion<'a> {
    pub name: &'a str,
    pub algorithm: &'a str,
    pub params: Value,
    pub source: &'a Source,
    pub users: i64,
    pub items: i64,
    pub interactions: i64,
    /// The engine's fit time, kept in `metrics.fit_seconds` (the call's whole `seconds` is set
    /// by train once the write is done).
    pub fit_seconds: f64,
    pub model: &'a Model,
}

fn lock_name(client: &mut pgrx::spi::SpiClient<'_>, name: &str) -> SqlResult<()> {
    client
        .update("SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('recsys.models:' OPERATOR(pg_catalog.||) $1))", None, &[name.into()])
        .map_err(spi)?;
    Ok(())
}

/// Write a new version and deploy it, owned by the caller; returns its version number.
pub fn save(v: &NewVersion) -> SqlResult<i32> {
    let bytes = v.model.encode()?;
    let user = access::caller();
    let caller = access::role_name(user)?;
    access::as_catalog_owner(|| Spi::connect_mut(|client| {
        // Serialise concurrent trainings of one name: each gets its own version number.
        lock_name(client, v.name)?;
        let owner = access::check_may_manage(client, v.name, user)?.unwrap_or(caller);
        let version: i32 = client
            .select("SELECT coalesce(max(version), 0) + 1 FROM recsys.models WHERE name = $1", None, &[v.name.into()])
            .map_err(spi)?
            .first()
            .get_one()
            .map_err(spi)?
            .unwrap_or(1);
        client
            .update("UPDATE recsys.models SET deployed = false WHERE name = $1 AND deployed", None, &[v.name.into()])
            .map_err(spi)?;
        let id: i64 = client
            .update(
                "INSERT INTO recsys.models (name, version, algorithm, params, source, columns, \
                 users, items, interactions, deployed, metrics, owner) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, true, \
                         jsonb_build_object('fit_seconds', $10::float8), $11) RETURNING id",
                None,
                &[
                    v.name.into(),
                    version.into(),
                    v.algorithm.into(),
                    JsonB(v.params.clone()).into(),
                    v.source.relation.as_str().into(),
                    JsonB(v.source.columns_json()).into(),
                    v.users.into(),
                    v.items.into(),
                    v.interactions.into(),
                    v.fit_seconds.into(),
                    owner.as_str().into(),
                ],
            )
            .map_err(spi)?
            .first()
            .get_one()
            .map_err(spi)?
            .ok_or_else(|| RecsysError::new(ErrorKind::Corrupt, "INSERT INTO recsys.models returned no id"))?;
        for (part, chunk) in bytes.chunks(BLOB_PART_BYTES).enumerate() {
            client
                .update(
                    "INSERT INTO recsys.model_blobs (model_id, part, data) VALUES ($1, $2, $3)",
                    None,
                    &[id.into(), (part as i32).into(), chunk.into()],
                )
                .map_err(spi)?;
        }
        if let Some(rows) = v.model.item_neighbors() {
            write_neighbors(client, id, "item", &rows)?;
        }
        if let Some(rows) = v.model.user_neighbors() {
            write_neighbors(client, id, "user", &rows)?;
        }
        if let Some(f) = v.model.factors() {
            write_factors(client, id, "item_factors", "item_id", &v.model.item_ids, &f.items, f.k)?;
            write_factors(client, id, "user_factors", "user_id", &f.user_ids, &f.users, f.k)?;
        }
        Ok(version)
    }))
}

/// One row per id with its neighbours as arrays into recsys.item_neighbor_lists or
/// user_neighbor_lists (`kind` "item" or "user"), in batches of about NEIGHBOR_BATCH neighbours.
/// A catalog not yet updated to 0.7.0 (the library is replaced before ALTER EXTENSION UPDATE)
/// still has the row-per-pair tables: then it gets those rows.
fn write_neighbors(client: &mut pgrx::spi::SpiClient<'_>, model_id: i64, kind: &str, lists: &NeighborLists) -> SqlResult<()> {
    let arrays = client
        .select(&format!("SELECT pg_catalog.to_regclass('recsys.{kind}_neighbor_lists') IS NOT NULL"), None, &[])
        .map_err(spi)?
        .first()
        .get_one::<bool>()
        .map_err(spi)?
        .unwrap_or(false);
    let sql = if arrays {
        format!(
            "INSERT INTO recsys.{kind}_neighbor_lists (model_id, {kind}_id, neighbor_ids, scores) \
             SELECT $1, ($2::int8[])[r], ($3::int8[])[o[r] + 1 : o[r + 1]], ($4::real[])[o[r] + 1 : o[r + 1]] \
             FROM (SELECT $5::int8[] AS o) b, generate_series(1, pg_catalog.array_length($2, 1)) r"
        )
    } else {
        format!(
            "INSERT INTO recsys.{kind}_neighbors (model_id, {kind}_id, neighbor_id, score) \
             SELECT $1, ($2::int8[])[r], unnest(($3::int8[])[o[r] + 1 : o[r + 1]]), unnest(($4::real[])[o[r] + 1 : o[r + 1]]) \
             FROM (SELECT $5::int8[] AS o) b, generate_series(1, pg_catalog.array_length($2, 1)) r"
        )
    };
    let rows = lists.ids.len();
    let mut start = 0;
    while start < rows {
        let mut end = start + 1;
        while end < rows && lists.indptr[end + 1] - lists.indptr[start] <= NEIGHBOR_BATCH {
            end += 1;
        }
        let (a, b) = (lists.indptr[start], lists.indptr[end]);
        let offsets: Vec<i64> = lists.indptr[start..=end].iter().map(|&o| (o - a) as i64).collect();
        client
            .update(
                sql.as_str(),
                None,
                &[
                    model_id.into(),
                    lists.ids[start..end].to_vec().into(),
                    lists.neighbors[a..b].to_vec().into(),
                    lists.scores[a..b].to_vec().into(),
                    offsets.into(),
                ],
            )
            .map_err(spi)?;
        pgrx::check_for_interrupts!();
        start = end;
    }
    Ok(())
}

/// One row per id with its k factors as real[], in batches (row r is `values[r*k..(r+1)*k]`).
fn write_factors(
    client: &mut pgrx::spi::SpiClient<'_>,
    model_id: i64,
    table: &str,
    id_column: &str,
    ids: &[i64],
    values: &[f32],
    k: usize,
) -> SqlResult<()> {
    let sql = format!(
        "INSERT INTO recsys.{table} (model_id, {id_column}, factors) \
         SELECT $1, ($2::int8[])[r], ($3::real[])[(r - 1) * $4 + 1 : r * $4] FROM generate_series(1, $5) r"
    );
    let rows = (FACTOR_BATCH_FLOATS / k.max(1)).max(1);
    for start in (0..ids.len()).step_by(rows) {
        let end = (start + rows).min(ids.len());
        client
            .update(
                sql.as_str(),
                None,
                &[
                    model_id.into(),
                    ids[start..end].to_vec().into(),
                    values[start * k..end * k].to_vec().into(),
                    (k as i32).into(),
                    ((end - start) as i32).into(),
                ],
            )
            .map_err(spi)?;
        pgrx::check_for_interrupts!();
    }
    Ok(())
}

/// The deployed version of `name`, or its version `version`.
fn find_row(name: &str, version: Option<i32>) -> SqlResult<Option<ModelRow>> {
    Spi::connect(|client| {
        let plan = crate::sql::plans::kept(
            &client,
            "SELECT id, version, trained_at::text, source, columns, params, \
             pg_catalog.to_regrole(pg_catalog.quote_ident(owner::text))::pg_catalog.oid \
             FROM recsys.models WHERE name = $1 AND CASE WHEN $2 IS NULL THEN deployed ELSE version = $2 END",
            &[PgOid::BuiltIn(PgBuiltInOids::TEXTOID), PgOid::BuiltIn(PgBuiltInOids::INT4OID)],
        )?;
        let table = client.select(&*plan, None, &[name.into(), version.into()]).map_err(spi)?;
        match table.into_iter().next() {
            None => Ok(None),
            Some(row) => {
                let get_err = || RecsysError::new(ErrorKind::Corrupt, "recsys.models row has NULL fields");
                Ok(Some(ModelRow {
                    id: row.get::<i64>(1).map_err(spi)?.ok_or_else(get_err)?,
                    name: name.to_string(),
                    version: row.get::<i32>(2).map_err(spi)?.ok_or_else(get_err)?,
                    trained_at: row.get::<String>(3).map_err(spi)?.ok_or_else(get_err)?,
                    source: row.get::<String>(4).map_err(spi)?.ok_or_else(get_err)?,
                    columns: row.get::<JsonB>(5).map_err(spi)?.ok_or_else(get_err)?.0,
                    params: row.get::<JsonB>(6).map_err(spi)?.map(|j| j.0).unwrap_or(Value::Null),
                    owner: row.get::<pg_sys::Oid>(7).map_err(spi)?,
                }))
            }
        }
    })
}

fn model_exists(name: &str) -> SqlResult<bool> {
    Ok(crate::sql::errors::read_one::<bool>("SELECT EXISTS (SELECT 1 FROM recsys.models WHERE name = $1)", &[name.into()])?
        .unwrap_or(false))
}

fn undefined_model(name: &str) -> RecsysError {
    RecsysError::new(ErrorKind::UndefinedObject, format!("model \"{name}\" does not exist"))
        .with_hint("train it with recsys.train, or list models with SELECT * FROM recsys.models")
}

/// The deployed version of `model`; NULL means `recsys.default_model`, else the only deployed model.
pub fn resolve(model: Option<&str>) -> SqlResult<ModelRow> {
    let name = match model.map(str::to_string).or_else(gucs::default_model) {
        Some(name) => name,
        None => {
            let names: Vec<String> = Spi::connect(|client| {
                let t = client
                    .select("SELECT DISTINCT name FROM recsys.models WHERE deployed ORDER BY 1 LIMIT 6", None, &[])
                    .map_err(spi)?;
                let mut out = Vec::new();
                for row in t {
                    out.extend(row.get::<String>(1).map_err(spi)?);
                }
                Ok::<_, pgrx::pg_sys::panic::ErrorReport>(out)
            })?;
            match names.as_slice() {
                [only] => only.clone(),
                [] => {
                    return Err(RecsysError::new(ErrorKind::NotReady, "no model is deployed")
                        .with_hint("train one with recsys.train")
                        .into())
                }
                many => {
                    return Err(RecsysError::new(ErrorKind::NotReady, "several models are deployed and none was named")
                        .with_detail(format!("deployed: {}", many.join(", ")))
                        .with_hint("pass model => 'name' or SET recsys.default_model")
                        .into())
                }
            }
        }
    };
    match find_row(&name, None)? {
        Some(row) => Ok(row),
        None if model_exists(&name)? => Err(RecsysError::new(
            ErrorKind::NotReady,
            format!("model \"{name}\" has no deployed version"),
        )
        .with_hint("deploy one with recsys.deploy(model, version)")
        .into()),
        None => Err(undefined_model(&name).into()),
    }
}

/// Version `version` of `name` (any version its caller may see, deployed or not).
pub fn version_row(name: &str, version: i32) -> SqlResult<ModelRow> {
    match find_row(name, Some(version))? {
        Some(row) => Ok(row),
        None if model_exists(name)? => {
            Err(RecsysError::new(ErrorKind::UndefinedObject, format!("model \"{name}\" has no version {version}")).into())
        }
        None => Err(undefined_model(name).into()),
    }
}

/// Read and decode the stored model of a version; also its stored size in bytes.
pub fn load(row: &ModelRow) -> SqlResult<(Model, usize)> {
    let bytes = stored_file(row)?;
    let model = Model::decode(&bytes).map_err(|e| e.with_detail(format!("model \"{}\" version {}", row.name, row.version)))?;
    Ok((model, bytes.len()))
}

/// The stored model file of a version, as it is in recsys.model_blobs.
///
/// pgrx's typed `get` copies each value into the parent of SPI's context — for a function
/// called from a query, TopTransactionContext — so a statement that calls recommend for many
/// users would keep a copy of the file per call until the transaction ends (measured: +380 MB
/// per call for a 9,724-item EASE model, until the kernel killed the backend). Each part is
/// read as a raw datum instead, detoasted in SPI's own context, copied into the file and freed.
pub fn stored_file(row: &ModelRow) -> SqlResult<Vec<u8>> {
    Ok(Spi::connect(|client| {
        let t = client
            .select("SELECT data FROM recsys.model_blobs WHERE model_id = $1 ORDER BY part", None, &[row.id.into()])
            .map_err(spi)?;
        let mut bytes = Vec::new();
        for r in t {
            let Some(value) = r.get::<pgrx::AnyElement>(1).map_err(spi)? else { continue };
            let datum = value.datum();
            // SAFETY: `datum` is a bytea of this SPI result, valid until the connection ends;
            // the detoasted copy (when it is one) is ours, in the current (SPI) context, and is
            // freed once its bytes are in `bytes`.
            unsafe {
                let raw = datum.cast_mut_ptr::<pg_sys::varlena>();
                let flat = pg_sys::pg_detoast_datum_packed(raw);
                let part = pgrx::varlena::varlena_to_byte_slice(flat);
                crate::engine::memory::reserve(&mut bytes, part.len(), "the stored model")?;
                bytes.extend_from_slice(part);
                if flat != raw {
                    pg_sys::pfree(flat.cast());
                }
            }
        }
        Ok::<_, pgrx::pg_sys::panic::ErrorReport>(bytes)
    })?)
}

// Void functions raise through unwrap_or_report: pgrx cannot map Result<(), _> to SQL `void`.
#[pg_extern(volatile)]
fn deploy(model: &str, version: i32) {
    deploy_version(model, version).unwrap_or_report()
}

fn deploy_version(model: &str, version: i32) -> SqlResult<()> {
    let user = access::caller();
    access::as_catalog_owner(|| Spi::connect_mut(|client| {
        lock_name(client, model)?;
        access::check_may_manage(client, model, user)?;
        let found = client
            .select("SELECT 1 FROM recsys.models WHERE name = $1 AND version = $2", None, &[model.into(), version.into()])
            .map_err(spi)?
            .len();
        if found == 0 {
            return Err(if model_exists(model)? {
                RecsysError::new(ErrorKind::UndefinedObject, format!("model \"{model}\" has no version {version}"))
            } else {
                undefined_model(model)
            }
            .into());
        }
        // Two statements: the one-deployed-version index is checked row by row.
        client
            .update("UPDATE recsys.models SET deployed = false WHERE name = $1 AND deployed", None, &[model.into()])
            .map_err(spi)?;
        client
            .update("UPDATE recsys.models SET deployed = true WHERE name = $1 AND version = $2", None, &[model.into(), version.into()])
            .map_err(spi)?;
        Ok(())
    }))
}

#[pg_extern(volatile)]
fn drop_model(model: &str, if_exists: default!(bool, false)) {
    drop_versions(model, if_exists).unwrap_or_report()
}

fn drop_versions(model: &str, if_exists: bool) -> SqlResult<()> {
    let user = access::caller();
    let dropped = access::as_catalog_owner(|| Spi::connect_mut(|client| {
        lock_name(client, model)?;
        access::check_may_manage(client, model, user)?;
        Ok::<_, pgrx::pg_sys::panic::ErrorReport>(
            client.update("DELETE FROM recsys.models WHERE name = $1", None, &[model.into()]).map_err(spi)?.len(),
        )
    }))?;
    if dropped == 0 && !if_exists {
        return Err(undefined_model(model).into());
    }
    Ok(())
}
