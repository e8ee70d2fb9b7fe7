//! `recsys.*` settings.

use std::ffi::CString;

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};

use crate::engine::neural::DeviceChoice;

pub static MAX_THREADS: GucSetting<i32> = GucSetting::<i32>::new(0);
pub static DEFAULT_MODEL: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static MODEL_CACHE_SIZE: GucSetting<i32> = GucSetting::<i32>::new(8);
pub static MAX_MEMORY_MB: GucSetting<i32> = GucSetting::<i32>::new(4096);
pub static DEVICE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"cpu"));

pub fn init() {
    GucRegistry::define_int_guc(
        c"recsys.max_threads",
        c"Threads used by training and evaluation (0: one per CPU core).",
        c"Each call builds its own pool of this size; workers never touch PostgreSQL.",
        &MAX_THREADS,
        0,
        1024,
        GucContext::Userset,
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
    GucRegistry::define_int_guc(
        c"recsys.model_cache_size",
        c"Trained models kept decoded in each backend (0 disables the cache).",
        c"Keyed by model version: a new version is never served from an old entry.",
        &MODEL_CACHE_SIZE,
        0,
        1024,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"recsys.max_memory_mb",
        c"Training refuses to start when its estimated memory exceeds this.",
        c"The estimate covers the interaction matrix and the algorithm's working set.",
        &MAX_MEMORY_MB,
        1,
        i32::MAX,
        GucContext::Userset,
        GucFlags::UNIT_MB,
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
    unsafe { pgrx::pg_sys::MarkGUCPrefixReserved(c"recsys".as_ptr()) };
}

pub fn threads() -> usize {
    match MAX_THREADS.get() {
        t if t > 0 => t as usize,
        _ => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
    }
}

pub fn default_model() -> Option<String> {
    DEFAULT_MODEL.get().and_then(|c| c.into_string().ok()).filter(|s| !s.is_empty())
}

pub fn model_cache_size() -> usize {
    MODEL_CACHE_SIZE.get().max(0) as usize
}

pub fn max_memory_bytes() -> usize {
    MAX_MEMORY_MB.get().max(1) as usize * 1024 * 1024
}

/// recsys.device, checked when a neural model trains (an unknown name is ERROR 22023 then).
pub fn device() -> crate::engine::Result<DeviceChoice> {
    let name = DEVICE.get().and_then(|c| c.into_string().ok()).unwrap_or_else(|| "cpu".to_string());
    DeviceChoice::parse(name.trim().to_ascii_lowercase().as_str())
}
