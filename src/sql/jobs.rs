//! Background training: `recsys.train_async` queues a job (`recsys.job_runs`, shown by the view `recsys.jobs`) and starts a dynamic
//! background worker for it (no shared_preload_libraries needed); `recsys.cancel_job` stops one.
//!
//! The worker connects as the role that called train_async, so the training has that role's
//! privileges and its limits: the role's own settings (ALTER ROLE ... SET) apply as in any
//! session, and the caller's session values of the user-settable `recsys.*` settings are
//! carried in the job and SET again (they pass the same ceiling checks). It waits until the
//! submitting transaction ends (a rolled-back train_async leaves no job and trains nothing),
//! then for a free place (at most `recsys.max_jobs` run at once per database: session
//! advisory locks), then trains in one transaction exactly as `recsys.train` does; the job is
//! marked done in that transaction, so the version and the job's end commit together. On an
//! error the transaction is rolled back (no partial version) and the job records the message and
//! SQLSTATE; a cancel (57014) records `cancelled`.

use std::cell::Cell;
use std::time::Duration;

use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime};
use pgrx::pg_sys::panic::{CaughtError, ErrorReport};
use pgrx::prelude::*;
use pgrx::{IntoDatum, JsonB, PgRelation};
use serde_json::{json, Value};

use crate::engine::model::Spec;
use crate::engine::RecsysError;
use crate::sql::access;
use crate::sql::errors::{required, spi, SqlResult};
use crate::sql::gucs;

thread_local! {
    /// The job this background worker runs (0: none), for `recsys.progress`.
    static CURRENT: Cell<i64> = const { Cell::new(0) };
}

/// The recsys.jobs id of the training running in this process, 0 for a direct call.
pub fn current() -> i64 {
    CURRENT.get()
}

/// A SQLSTATE's five characters, from PostgreSQL's packed code.
fn sqlstate(code: PgSqlErrorCode) -> String {
    let c = code as i32;
    (0..5).map(|i| (((c >> (6 * i)) & 0x3F) as u8 + b'0') as char).collect()
}

#[allow(clippy::too_many_arguments)]
#[pg_extern(volatile)]
fn train_async(
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
) -> Result<i64, ErrorReport> {
    crate::sql::access::check_writable(c"recsys.train_async");
    let name = required(model, "model")?;
    let source = required(source, "source")?;
    let algorithm = required(algorithm, "algorithm")?;
    let params = params.map(|p| p.0).unwrap_or(Value::Null);
    // What can be checked now is checked now (the rest fails the job, with its SQLSTATE).
    let mut checked = params.clone();
    if let Some(o) = checked.as_object_mut() {
        o.remove("fallback");
    }
    let (spec, _) = Spec::parse(algorithm, &checked)?;
    crate::sql::train::check_request(name, algorithm, &spec, rating_column, time_column)?;
    let call = json!({
        "source": source.oid().to_u32(),
        "params": params,
        "user_column": required(user_column, "user_column")?,
        "item_column": required(item_column, "item_column")?,
        "rating_column": rating_column,
        "time_column": time_column,
        "items": items.as_ref().map(|i| i.oid().to_u32()),
        "item_text": item_text,
    });
    // SAFETY: backend globals and the current transaction's id, on the backend thread.
    let (role, database, xid) = unsafe { (pg_sys::GetUserId(), pg_sys::MyDatabaseId, pg_sys::GetTopTransactionId()) };
    let settings: JsonB = Spi::get_one(
        "SELECT coalesce(jsonb_object_agg(name, setting), '{}') FROM pg_catalog.pg_settings \
         WHERE name LIKE 'recsys.%' AND context = 'user' AND source <> 'default'",
    )
    .map_err(spi)?
    .unwrap_or(JsonB(json!({})));
    let caller = access::role_name(role)?;
    // A background worker connects as the role like a login does (PostgreSQL 15 checks LOGIN and
    // the role's connection limit there): refuse now rather than queue a job that cannot start.
    let can_login = Spi::get_one_with_args::<bool>(
        "SELECT rolcanlogin AND (rolconnlimit < 0 OR rolconnlimit > (SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE usesysid = $1)) \
         FROM pg_catalog.pg_roles WHERE oid = $1",
        &[role.into()],
    )
    .map_err(spi)?
    .unwrap_or(false);
    if !can_login {
        return Err(ErrorReport::new(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("pg_recsys: a background job trains as role \"{caller}\", which cannot log in now"),
            "pg_recsys",
        )
        .set_detail("the job's worker connects as the calling role: it needs LOGIN and a free place under its CONNECTION LIMIT")
        .set_hint("call train_async as a role that can log in (a member of the model's owner role may retrain it), or use recsys.train"));
    }
    let id: i64 = access::as_catalog_owner(|| {
        Spi::get_one_with_args(
            "INSERT INTO recsys.job_runs (model, algorithm, call, settings, role) VALUES ($1, $2, $3, $4, $5) RETURNING id",
            &[name.into(), algorithm.into(), JsonB(call).into(), settings.into(), caller.as_str().into()],
        )
        .map_err(spi)?
        .ok_or_else(|| RecsysError::invalid("INSERT INTO recsys.job_runs returned no id").into())
    })?;
    let started = BackgroundWorkerBuilder::new(&format!("pg_recsys job {id}"))
        .set_type("pg_recsys training")
        .set_library("pg_recsys")
        .set_function("recsys_job_main")
        .enable_spi_access()
        .set_start_time(BgWorkerStartTime::RecoveryFinished)
        .set_argument(id.into_datum())
        .set_extra(&format!("{} {} {}", database.to_u32(), role.to_u32(), xid))
        .load_dynamic();
    if started.is_err() {
        return Err(ErrorReport::new(
            PgSqlErrorCode::ERRCODE_CONFIGURATION_LIMIT_EXCEEDED,
            "pg_recsys: no background worker slot is free for the training job",
            "pg_recsys",
        )
        .set_detail("every one of max_worker_processes is in use (jobs waiting for recsys.max_jobs hold one each)")
        .set_hint("wait for a job to end, or raise max_worker_processes (a server restart); recsys.train trains in this session"));
    }
    Ok(id)
}

/// Stop a job: a queued one is marked cancelled (its worker then exits), a running one gets a
/// query cancel (as pg_cancel_backend, so only roles that may signal its backend can). True when
/// the job was queued or running.
#[pg_extern(volatile)]
fn cancel_job(id: Option<i64>) -> Result<bool, ErrorReport> {
    let id = required(id, "id")?;
    // The caller sees only the jobs of roles whose privileges it has (row security).
    let row = Spi::connect(|c| {
        let t = c.select("SELECT state, pid FROM recsys.jobs WHERE id = $1", None, &[id.into()]).map_err(spi)?;
        if t.is_empty() {
            return Ok(None);
        }
        match t.first().get_two::<String, i32>().map_err(spi)? {
            (Some(state), pid) => Ok::<_, ErrorReport>(Some((state, pid))),
            _ => Ok(None),
        }
    })?;
    let Some((state, pid)) = row else {
        return Err(ErrorReport::new(PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT, format!("job {id} does not exist"), "pg_recsys"));
    };
    match state.as_str() {
        "queued" => {
            let queued = access::as_catalog_owner(|| {
                Spi::get_one_with_args::<i64>(
                    "WITH c AS (UPDATE recsys.job_runs SET state = 'cancelled', finished = clock_timestamp(), \
                     error = 'cancelled before it started', sqlstate = '57014' WHERE id = $1 AND state = 'queued' RETURNING 1) \
                     SELECT count(*) FROM c",
                    &[id.into()],
                )
                .map_err(spi)
            })?;
            if queued == Some(1) {
                return Ok(true);
            }
            // It started meanwhile.
            cancel_job(Some(id))
        }
        "running" => {
            let pid = pid.ok_or_else(|| RecsysError::invalid(format!("running job {id} has no pid")))?;
            Spi::get_one_with_args::<bool>("SELECT pg_catalog.pg_cancel_backend($1)", &[pid.into()]).map_err(spi)?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// One transaction of the worker, with a snapshot for SPI.
fn in_transaction<T>(f: impl FnOnce() -> T) -> T {
    // SAFETY: the standard worker_spi sequence, on the worker's only thread.
    unsafe {
        pg_sys::SetCurrentStatementStartTimestamp();
        pg_sys::StartTransactionCommand();
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
    }
    let out = f();
    // SAFETY: as above.
    unsafe {
        pg_sys::PopActiveSnapshot();
        pg_sys::CommitTransactionCommand();
    }
    out
}

fn sleep(ms: u64) {
    BackgroundWorker::wait_latch(Some(Duration::from_millis(ms)));
    pgrx::check_for_interrupts!();
}

/// The job's state (None: no such row, i.e. the submitting transaction rolled back).
fn job_state(id: i64) -> Option<String> {
    in_transaction(|| {
        access::as_catalog_owner(|| {
            Spi::get_one_with_args::<String>("SELECT state FROM recsys.job_runs WHERE id = $1", &[id.into()]).map_err(spi)
        })
        .ok()
        .flatten()
    })
}

/// Update the job's row (`set`: SQL, $1 is the id) when it matches `only`; how many rows changed.
fn mark(id: i64, set: &str, only: &str, args: Vec<pgrx::datum::DatumWithOid>) -> SqlResult<i64> {
    let mut all: Vec<pgrx::datum::DatumWithOid> = vec![id.into()];
    all.extend(args);
    let sql = format!("WITH c AS (UPDATE recsys.job_runs SET {set} WHERE id = $1 AND {only} RETURNING 1) SELECT count(*) FROM c");
    access::as_catalog_owner(|| Ok(Spi::get_one_with_args::<i64>(&sql, &all).map_err(spi)?.unwrap_or(0)))
}

/// Run the job's training: as `recsys.train` with its stored arguments; returns the version.
fn run(id: i64) -> SqlResult<i32> {
    let (call, settings, model, algorithm) = access::as_catalog_owner(|| {
        Spi::connect(|c| {
            let t = c
                .select("SELECT call, settings, model, algorithm FROM recsys.job_runs WHERE id = $1", None, &[id.into()])
                .map_err(spi)?;
            let row = t.first();
            match (row.get::<JsonB>(1), row.get::<JsonB>(2), row.get::<String>(3), row.get::<String>(4)) {
                (Ok(Some(a)), Ok(Some(b)), Ok(Some(m)), Ok(Some(g))) => Ok((a, b, m, g)),
                _ => Err(RecsysError::invalid(format!("job {id} is not in recsys.job_runs")).into()),
            }
        })
    })?;
    if let Some(s) = settings.0.as_object() {
        for (k, v) in s {
            Spi::run_with_args("SELECT pg_catalog.set_config($1, $2, true)", &[k.as_str().into(), v.as_str().unwrap_or_default().into()])
                .map_err(spi)?;
        }
    }
    let call = call.0;
    let text = |k: &str| call.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let relation = |k: &str| -> SqlResult<Option<PgRelation>> {
        let Some(oid) = call.get(k).and_then(|v| v.as_u64()) else { return Ok(None) };
        // A table dropped since train_async: 42P01, as recsys.train would say. Locked first, then
        // looked up (try_relation_open), so a DROP committing in between is this error too, not
        // "could not open relation with OID" (XX000).
        let oid = pg_sys::Oid::from(oid as u32);
        let lock = pg_sys::AccessShareLock as pg_sys::LOCKMODE;
        // SAFETY: try_relation_open takes the lock, then returns NULL (releasing it) when the
        // relation is gone; closing with NoLock keeps the lock until the transaction ends.
        let found = unsafe {
            let rel = pg_sys::try_relation_open(oid, lock);
            let found = !rel.is_null();
            if found {
                pg_sys::relation_close(rel, pg_sys::NoLock as pg_sys::LOCKMODE);
            }
            found
        };
        if !found {
            return Err(ErrorReport::new(PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE, format!("the {k} table of job {id} no longer exists"), "pg_recsys"));
        }
        // SAFETY: the relation exists and this transaction holds a lock on it (above).
        Ok(Some(unsafe { PgRelation::with_lock(oid, lock) }))
    };
    let source = relation("source")?;
    let items = relation("items")?;
    let params = call.get("params").cloned().filter(|p| !p.is_null()).map(JsonB);
    let (version, ..) = crate::sql::train::train_call(
        Some(&model),
        source,
        Some(&algorithm),
        params,
        text("user_column").as_deref(),
        text("item_column").as_deref(),
        text("rating_column").as_deref(),
        text("time_column").as_deref(),
        items,
        text("item_text").as_deref(),
    )?;
    Ok(version)
}

/// The background worker's entry point (its argument is the job id).
#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn recsys_job_main(arg: pg_sys::Datum) {
    let id = arg.value() as i64;
    let extra: Vec<u32> = BackgroundWorker::get_extra().split(' ').filter_map(|s| s.parse().ok()).collect();
    let [database, role, xid] = extra[..] else { return };
    // SAFETY: signal set-up before unblocking, as a backend does: SIGTERM ends the worker at the
    // next interrupt check, SIGINT (pg_cancel_backend) cancels the training (57014).
    unsafe {
        pg_sys::pqsignal(SIGTERM, Some(die));
        pg_sys::pqsignal(SIGINT, Some(StatementCancelHandler));
        pg_sys::BackgroundWorkerUnblockSignals();
    }
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(pg_sys::Oid::from(database)), Some(pg_sys::Oid::from(role)));
    // The submitting transaction must end first: committed, the job is there; rolled back, not.
    // SAFETY: reads the proc array.
    while unsafe { pg_sys::TransactionIdIsInProgress(pg_sys::TransactionId::from(xid)) } {
        sleep(20);
    }
    // SAFETY: MyProcPid is this process's pid.
    let pid = unsafe { pg_sys::MyProcPid };
    // The job shows this worker's pid while it waits (recsys.jobs tells a lost worker by it).
    in_transaction(|| mark(id, "pid = $2", "state = 'queued'", vec![pid.into()]).ok());
    // Wait for a place among recsys.max_jobs (per database), unless cancelled meanwhile.
    loop {
        match job_state(id).as_deref() {
            Some("queued") => {}
            _ => return,
        }
        let max = gucs::max_jobs();
        let got = in_transaction(|| {
            (0..max).any(|place| {
                Spi::get_one_with_args::<bool>(
                    "SELECT pg_catalog.pg_try_advisory_lock(pg_catalog.hashtext('recsys.jobs'), $1)",
                    &[place.into()],
                )
                .ok()
                .flatten()
                .unwrap_or(false)
            })
        });
        if got {
            break;
        }
        sleep(250);
    }
    let running = in_transaction(|| {
        mark(id, "state = 'running', started = clock_timestamp(), pid = $2", "state = 'queued'", vec![pid.into()]).unwrap_or(0)
    });
    if running != 1 {
        return;
    }
    CURRENT.set(id);
    // SAFETY: reports the activity string of this process in pg_stat_activity.
    let activity = std::ffi::CString::new(format!("pg_recsys job {id}")).unwrap_or_default();
    unsafe { pg_sys::pgstat_report_activity(pg_sys::BackendState::STATE_RUNNING, activity.as_ptr()) };
    // SAFETY: as in in_transaction; the error path aborts the transaction instead of committing.
    unsafe {
        pg_sys::SetCurrentStatementStartTimestamp();
        pg_sys::StartTransactionCommand();
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
    }
    let outcome: Result<(), (String, String)> = PgTryBuilder::new(|| {
        match run(id) {
            Ok(version) => {
                // Done commits with the version.
                match mark(id, "state = 'done', finished = clock_timestamp(), version = $2", "true", vec![version.into()]) {
                    Ok(_) => Ok(()),
                    Err(e) => {
                        e.report(PgLogLevel::ERROR);
                        unreachable!("an ERROR does not return")
                    }
                }
            }
            // Raised, so that it is caught below with its SQLSTATE.
            Err(e) => {
                e.report(PgLogLevel::ERROR);
                unreachable!("an ERROR does not return")
            }
        }
    })
    .catch_others(|e| {
        let report = match e {
            CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) | CaughtError::RustPanic { ereport: r, .. } => r,
        };
        Err((report.message().to_string(), sqlstate(report.sql_error_code())))
    })
    .execute();
    match outcome {
        Ok(()) => {
            // SAFETY: as in in_transaction.
            unsafe {
                pg_sys::PopActiveSnapshot();
                pg_sys::CommitTransactionCommand();
            }
        }
        Err((message, code)) => {
            // SAFETY: the failed transaction is rolled back (no partial version); cancel and
            // interrupt flags are cleared so the failure can be recorded.
            unsafe {
                pg_sys::AbortCurrentTransaction();
                pg_sys::QueryCancelPending = 0;
            }
            let state = if code == "57014" { "cancelled" } else { "failed" };
            in_transaction(|| {
                let _ = mark(
                    id,
                    "state = $2, finished = clock_timestamp(), error = $3, sqlstate = $4",
                    "true",
                    vec![state.into(), message.as_str().into(), code.as_str().into()],
                );
            });
        }
    }
    CURRENT.set(0);
}

const SIGINT: i32 = 2;
const SIGTERM: i32 = 15;

extern "C-unwind" {
    // PostgreSQL's own signal handlers (pg_sys wraps them as Rust functions; pqsignal needs the
    // C symbols).
    fn die(signal: i32);
    fn StatementCancelHandler(signal: i32);
}
