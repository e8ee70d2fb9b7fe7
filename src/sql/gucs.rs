//! `recsys.*` settings.
//!
//! Limits belong to the administrator: `recsys.memory_ceiling_mb`, `recsys.threads_ceiling` and
//! `recsys.model_cache_mb` can be set only by a superuser (postgresql.conf, ALTER SYSTEM, ALTER
//! ROLE/DATABASE ... SET, or SET in a superuser's session). A session may lower its own
//! `recsys.max_memory_mb` and `recsys.max_threads`, never raise them above the ceiling: a value
//! above it is refused when it is set (SET, ALTER ROLE ... SET), and the ceiling wins at use
//! time too, so lowering the ceiling later also lowers every session.

use std::ffi::{c_int, c_void, CString};

use pgrx::{pg_guard, pg_sys, GucContext, GucFlags, GucRegistry, GucSetting};

use crate::engine::neural::DeviceChoice;

pub static MEMORY_CEILING_MB: GucSetting<i32> = GucSetting::<i32>::new(4096);
pub static MAX_MEMORY_MB: GucSetting<i32> = GucSetting::<i32>::new(0);
pub static THREADS_CEILING: GucSetting<i32> = GucSetting::<i32>::new(0);
pub static MAX_THREADS: GucSetting<i32> = GucSetting::<i32>::new(0);
pub static MODEL_CACHE_MB: GucSetting<i32> = GucSetting::<i32>::new(256);
pub static MAX_JOBS: GucSetting<i32> = GucSetting::<i32>::new(2);
pub static DEFAULT_MODEL: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static DEVICE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"cpu"));

/// Refuse a session's value above the administrator's ceiling, as 42501 with the ceiling in the
/// detail. Values from postgresql.conf or the command line (the administrator's own) are not
/// checked here: they may come in any order, and the ceiling is applied at use time anyway.
unsafe fn refuse_above(newval: c_int, ceiling: c_int, source: pg_sys::GucSource::Type, what: &str) -> bool {
    if source < pg_sys::GucSource::PGC_S_DATABASE || newval <= ceiling {
        return true;
    }
    let detail = CString::new(format!("{what} is {ceiling} (set by a superuser); a session may only lower this limit"))
        .unwrap_or_default();
    unsafe {
        pg_sys::GUC_check_errcode(pgrx::PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE as c_int);
        pg_sys::GUC_check_errdetail_string = pg_sys::pstrdup(detail.as_ptr());
    }
    false
}

#[pg_guard]
unsafe extern "C-unwind" fn check_max_memory(newval: *mut c_int, _extra: *mut *mut c_void, source: pg_sys::GucSource::Type) -> bool {
    unsafe { refuse_above(*newval, MEMORY_CEILING_MB.get(), source, "recsys.memory_ceiling_mb") }
}

#[pg_guard]
unsafe extern "C-unwind" fn check_max_threads(newval: *mut c_int, _extra: *mut *mut c_void, source: pg_sys::GucSource::Type) -> bool {
    unsafe { refuse_above(*newval, threads_ceiling() as c_int, source, "the thread ceiling (recsys.threads_ceiling, 0 = one per core)") }
}

pub fn init() {
    GucRegistry::define_int_guc(
        c"recsys.memory_ceiling_mb",
        c"The most memory one pg_recsys call may use; only a superuser can change it.",
        c"Sessions may lower recsys.max_memory_mb below it, never raise it above.",
        &MEMORY_CEILING_MB,
        1,
        i32::MAX,
        GucContext::Suset,
        GucFlags::UNIT_MB,
    );
    // SAFETY: the hooks are #[pg_guard]ed, read only GUC values and set GUC_check_* as guc.h asks.
    unsafe {
        GucRegistry::define_int_guc_with_hooks(
            c"recsys.max_memory_mb",
            c"This session's memory cap for one call (0: recsys.memory_ceiling_mb).",
            c"Training refuses to start (ERROR 54000) when its estimate exceeds it; it cannot be set above recsys.memory_ceiling_mb.",
            &MAX_MEMORY_MB,
            0,
            i32::MAX,
            GucContext::Userset,
            GucFlags::UNIT_MB,
            Some(check_max_memory),
            None,
            None,
        );
    }
    GucRegistry::define_int_guc(
        c"recsys.threads_ceiling",
        c"The most threads one pg_recsys call may use (0: one per CPU core); only a superuser can change it.",
        c"Sessions may lower recsys.max_threads below it, never raise it above.",
        &THREADS_CEILING,
        0,
        1024,
        GucContext::Suset,
        GucFlags::default(),
    );
    // SAFETY: as above.
    unsafe {
        GucRegistry::define_int_guc_with_hooks(
            c"recsys.max_threads",
            c"Threads used by training and evaluation in this session (0: the ceiling).",
            c"Each call builds its own pool of this size; workers never touch PostgreSQL.",
            &MAX_THREADS,
            0,
            1024,
            GucContext::Userset,
            GucFlags::default(),
            Some(check_max_threads),
            None,
            None,
        );
    }
    GucRegistry::define_int_guc(
        c"recsys.model_cache_mb",
        c"Memory for decoded models kept in each backend (0 disables the cache); only a superuser can change it.",
        c"Measured by each model's stored size; least recently used models are evicted first.",
        &MODEL_CACHE_MB,
        0,
        i32::MAX,
        GucContext::Suset,
        GucFlags::UNIT_MB,
    );
    GucRegistry::define_int_guc(
        c"recsys.max_jobs",
        c"How many recsys.train_async jobs may train at once in one database; only a superuser can change it.",
        c"Further jobs wait in state queued (each holding a background worker slot) until one ends.",
        &MAX_JOBS,
        1,
        64,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"recsys.default_model",
        c"Model used when a serving function gets model => NULL.",
        c"When unset, the only deployed model is used.",
        &DEFAULT_MODEL,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"recsys.device",
        c"Where neural models (ncf, sequential, two_tower) train: cpu, cuda or auto.",
        c"cuda needs a build with the cuda feature; auto uses CUDA when built with it and a GPU answers. Serving runs on the CPU.",
        &DEVICE,
        GucContext::Userset,
        GucFlags::default(),
    );
    // SAFETY: called once from _PG_init on the backend thread with a static C string.
    unsafe { pg_sys::MarkGUCPrefixReserved(c"recsys".as_ptr()) };
}

fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

fn threads_ceiling() -> usize {
    match THREADS_CEILING.get() {
        t if t > 0 => t as usize,
        _ => cores(),
    }
}

/// Threads for one call's pool: the session's value, never above the ceiling.
pub fn threads() -> usize {
    let ceiling = threads_ceiling();
    match MAX_THREADS.get() {
        t if t > 0 => (t as usize).min(ceiling),
        _ => ceiling,
    }
}

/// Background training jobs allowed to run at once per database.
pub fn max_jobs() -> i32 {
    MAX_JOBS.get().max(1)
}

pub fn default_model() -> Option<String> {
    DEFAULT_MODEL.get().and_then(|c| c.into_string().ok()).filter(|s| !s.is_empty())
}

pub fn model_cache_bytes() -> usize {
    (MODEL_CACHE_MB.get().max(0) as usize) << 20
}

/// The memory cap of one call in MB: the session's value, never above the ceiling.
pub fn max_memory_mb() -> usize {
    let ceiling = MEMORY_CEILING_MB.get().max(1) as usize;
    match MAX_MEMORY_MB.get() {
        m if m > 0 => (m as usize).min(ceiling),
        _ => ceiling,
    }
}

pub fn max_memory_bytes() -> usize {
    max_memory_mb() << 20
}

/// recsys.device, checked when a neural model trains (an unknown name is ERROR 22023 then).
pub fn device() -> crate::engine::Result<DeviceChoice> {
    let name = DEVICE.get().and_then(|c| c.into_string().ok()).unwrap_or_else(|| "cpu".to_string());
    DeviceChoice::parse(name.trim().to_ascii_lowercase().as_str())
}

/// ERROR 54000 before allocating: `what` needs about `needed` bytes, over this call's cap. The
/// detail says how the estimate was made and which limit applies.
pub fn over_memory_cap(what: &str, needed: u128, how: &str) -> crate::engine::RecsysError {
    let ceiling = MEMORY_CEILING_MB.get().max(1);
    let limit = match MAX_MEMORY_MB.get() {
        m if m > 0 && m < ceiling => format!("recsys.max_memory_mb is {m} MB"),
        _ => format!("recsys.memory_ceiling_mb is {ceiling} MB"),
    };
    crate::engine::RecsysError::new(crate::engine::ErrorKind::TooLarge, format!("{what} needs about {} MB, over this call's memory cap", needed >> 20))
        .with_detail(format!("estimated {needed} bytes ({} MB) {how}; {limit}", needed >> 20))
        .with_hint("use less (a view over a subset, smaller params); only a superuser can raise recsys.memory_ceiling_mb")
}
